#pragma once
// Shared helpers for the test suites: where the data lives, temporary directories.
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

namespace razerq::test {

// ../shared/data, or $RAZERQ_DATA when set.
inline std::string data_dir() {
  if (const char* env = std::getenv("RAZERQ_DATA"); env && *env) return env;
  return RAZERQ_DATA_DIR;
}
inline std::string data_path(const std::string& rel) { return data_dir() + "/" + rel; }

// Folder of tests/ sources (fixtures committed next to the tests).
inline std::string src_path(const std::string& rel) {
  return std::string(RAZERQ_TEST_SRC_DIR) + "/" + rel;
}

// A fresh empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("razerq-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& rel = "") const {
    return rel.empty() ? path_.string() : (path_ / rel).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace razerq::test
