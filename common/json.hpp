#pragma once
// JSON files that must hold an object (config.json, model.safetensors.index.json,
// tokenizer.json, tokenizer_config.json), with errors located at the file.
#include <nlohmann/json.hpp>
#include <string>

namespace razerq {

// Parses `text` read from `path`; invalid JSON or a non-object throws kMalformedInput naming path.
nlohmann::json parse_json_object(const std::string& text, const std::string& path);
// read_file(path) then parse_json_object.
nlohmann::json read_json_object(const std::string& path);

}  // namespace razerq
