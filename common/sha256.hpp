#pragma once
// SHA-256 (FIPS 180-4), streaming. Used for the manifest's checksums of source files.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace razerq {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::array<uint8_t, 32> digest();  // finalises; the object must not be updated after
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t n);
// Hashes a whole file (streamed); throws razerq::Error naming the file on failure.
std::string sha256_file(const std::string& path);

}  // namespace razerq
