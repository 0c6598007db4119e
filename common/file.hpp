#pragma once
// Whole-file reads for small text inputs (config.json, tokenizer.json, evaluation text).
#include <string>

namespace razerq {

// The bytes of `path`; failures throw razerq::Error(kIo) naming the path and the reason.
std::string read_file(const std::string& path);

}  // namespace razerq
