#pragma once
// The one exception type of the razerq libraries. apps/ catches it once and maps the
// kind to an exit code. Messages follow "where: what (expected ...)", lower-case start,
// no final period, e.g.
//   model-00002.safetensors: tensor 'model.layers.7.mlp.up_proj.weight': data ends at byte 9437184, file has 9437000
#include <cstdarg>
#include <stdexcept>
#include <string>

namespace razerq {

enum class ErrorKind {
  kInvalidArgument,  // a bad option or argument from the user
  kMalformedInput,   // a file whose bytes or structure are wrong
  kIo,               // open/read/write/rename failed
  kUnsupported,      // valid input we do not handle (yet)
  kInternal,         // a broken invariant: a bug
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string where, const std::string& message);
  ErrorKind kind() const { return kind_; }
  const std::string& where() const { return where_; }
  const std::string& message() const { return message_; }

 private:
  ErrorKind kind_;
  std::string where_;
  std::string message_;
};

// printf-style formatting into a std::string (no fmt: libtorch bundles its own).
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrprintf(const char* fmt, va_list args);

[[noreturn]] void throw_error(ErrorKind kind, const std::string& where, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace razerq

// Internal invariant: throws ErrorKind::kInternal with file:line.
#define RAZERQ_CHECK(cond, ...)                                                         \
  do {                                                                                  \
    if (!(cond))                                                                        \
      ::razerq::throw_error(::razerq::ErrorKind::kInternal,                             \
                            std::string(__FILE__) + ":" + std::to_string(__LINE__),     \
                            __VA_ARGS__);                                               \
  } while (0)
