#pragma once
// Whole-file reads for small text inputs (config.json, tokenizer.json, evaluation text), and
// directory-tree removal.
#include <cstdint>
#include <string>
#include <system_error>

namespace razerq {

// The bytes of `path`; failures throw razerq::Error(kIo) naming the path and the reason.
std::string read_file(const std::string& path);

// Removes `path` and everything under it (symbolic links are removed, not followed); a path
// that does not exist is not an error. Returns the number of entries removed; on failure sets
// `ec` and stops. Use this instead of std::filesystem::remove_all: PyTorch's pip libtorch.so
// (2.11) exports its own std::filesystem::remove_all, which wins symbol resolution in any
// binary linking it and crashes there (a call through a null pointer, seen on the GPU machine).
uintmax_t remove_tree(const std::string& path, std::error_code& ec) noexcept;

}  // namespace razerq
