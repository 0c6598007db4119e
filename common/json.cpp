#include "common/json.hpp"

#include "common/error.hpp"
#include "common/file.hpp"

namespace razerq {

nlohmann::json parse_json_object(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();  // drop nlohmann's "[json.exception.parse_error.101] " prefix
    if (!what.empty() && what[0] == '[' && what.find("] ") != std::string::npos) what = what.substr(what.find("] ") + 2);
    throw_error(ErrorKind::kMalformedInput, path, "invalid JSON: %s", what.c_str());
  }
  if (!j.is_object()) throw_error(ErrorKind::kMalformedInput, path, "expected a JSON object, got %s", j.type_name());
  return j;
}

nlohmann::json read_json_object(const std::string& path) { return parse_json_object(read_file(path), path); }

}  // namespace razerq
