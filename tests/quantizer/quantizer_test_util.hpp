#pragma once
// Helpers shared by the quantizer tests.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.hpp"

namespace razerq::test {

inline nlohmann::json load_json(const std::string& rel) {
  std::ifstream in(src_path(rel));
  if (!in) throw std::runtime_error("missing test fixture " + src_path(rel));
  return nlohmann::json::parse(in);
}

// W = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32), written by
// tests/golden/make_goldens.py.
inline std::vector<float> load_rng0_matrix() {
  std::vector<float> w(256 * 1024);
  std::FILE* f = std::fopen(src_path("golden/rng0_256x1024.f32").c_str(), "rb");
  if (!f) throw std::runtime_error("missing tests/golden/rng0_256x1024.f32");
  const size_t n = std::fread(w.data(), sizeof(float), w.size(), f);
  std::fclose(f);
  if (n != w.size()) throw std::runtime_error("short read of rng0_256x1024.f32");
  return w;
}

// LLM-like weights: N(0, 0.02^2) plus a few N(0, 0.15^2) outliers per row (razer.md section 10).
inline std::vector<float> llm_like(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> body(0.f, 0.02f), out(0.f, 0.15f);
  std::uniform_int_distribution<int64_t> col(0, cols - 1);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = body(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < 4; ++i) w[static_cast<size_t>(r * cols + col(rng))] = out(rng);
  return w;
}

inline uint32_t seed_from_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string s = std::string(info->test_suite_name()) + "." + info->name();
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  return h;
}

}  // namespace razerq::test
