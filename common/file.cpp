#include "common/file.hpp"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.hpp"

namespace razerq {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error(ErrorKind::kIo, path, "cannot open for reading: %s", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw_error(ErrorKind::kIo, path, "cannot read: %s", std::strerror(errno));
  return ss.str();
}


namespace {
std::error_code* g_ec = nullptr;
uintmax_t g_removed = 0;
int remove_entry(const char* p, const struct stat*, int, struct FTW*) {
  if (::remove(p) != 0) {
    *g_ec = std::error_code(errno, std::generic_category());
    return 1;
  }
  ++g_removed;
  return 0;
}
std::mutex g_mu;  // nftw's callback has no context argument
}  // namespace

uintmax_t remove_tree(const std::string& path, std::error_code& ec) noexcept {
  ec.clear();
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) ec = std::error_code(errno, std::generic_category());
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::remove(path.c_str()) != 0) {
      ec = std::error_code(errno, std::generic_category());
      return 0;
    }
    return 1;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  g_ec = &ec;
  g_removed = 0;
  const int rc = ::nftw(path.c_str(), remove_entry, 64, FTW_DEPTH | FTW_PHYS);
  if (rc != 0 && !ec) ec = std::error_code(errno ? errno : EIO, std::generic_category());
  g_ec = nullptr;
  return g_removed;
}

}  // namespace razerq
