#include "common/error.hpp"

#include <cstdio>
#include <vector>

namespace razerq {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kMalformedInput: return "malformed input";
    case ErrorKind::kIo: return "i/o error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

static std::string join_where(const std::string& where, const std::string& message) {
  return where.empty() ? message : where + ": " + message;
}

Error::Error(ErrorKind kind, std::string where, const std::string& message)
    : std::runtime_error(join_where(where, message)),
      kind_(kind),
      where_(std::move(where)),
      message_(message) {}

std::string vstrprintf(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return fmt;
  std::vector<char> buf(static_cast<size_t>(n) + 1);
  std::vsnprintf(buf.data(), buf.size(), fmt, args);
  return std::string(buf.data(), static_cast<size_t>(n));
}

std::string strprintf(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string s = vstrprintf(fmt, args);
  va_end(args);
  return s;
}

void throw_error(ErrorKind kind, const std::string& where, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string msg = vstrprintf(fmt, args);
  va_end(args);
  throw Error(kind, where, msg);
}

}  // namespace razerq
