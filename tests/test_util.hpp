#pragma once
// Shared helpers for the test suites: where the data lives, temporary directories.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "common/error.hpp"
#include "common/file.hpp"

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
    razerq::remove_tree(path_, ec);
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

// Runs f, which must throw razerq::Error, and returns the error (a test failure otherwise).
template <typename F>
Error catch_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected razerq::Error, got std::exception: " << e.what();
    return Error(ErrorKind::kInternal, "", "wrong exception type");
  }
  ADD_FAILURE() << "expected razerq::Error, nothing was thrown";
  return Error(ErrorKind::kInternal, "", "nothing thrown");
}

inline ::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

}  // namespace razerq::test
