// common/: fp16/bf16 conversions against the CPU's F16C instructions and NumPy's tables,
// SHA-256 against FIPS 180-2 vectors, located errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.hpp"
#include "common/file.hpp"
#include "common/half.hpp"
#include "common/sha256.hpp"
#include "tests/test_util.hpp"

#ifdef __F16C__
#include <immintrin.h>
#endif

using namespace razerq;

TEST(Half, EveryFp16PatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(f)))) << h;
      continue;
    }
    EXPECT_EQ(float_to_fp16(f), h) << "pattern " << h;
  }
}

TEST(Half, Fp16DecodeMatchesNumpyTable) {
  std::ifstream in(test::src_path("golden/dequant_goldens.json"));
  ASSERT_TRUE(in) << "missing tests/golden/dequant_goldens.json";
  const auto j = nlohmann::json::parse(in);
  const auto& t = j["scale_decode"]["fp16"];
  ASSERT_GT(t["bits"].size(), 600u);
  for (size_t i = 0; i < t["bits"].size(); ++i)
    EXPECT_EQ(fp16_to_double(t["bits"][i].get<uint16_t>()), t["values"][i].get<double>()) << t["bits"][i];
  for (const auto& nf : j["scale_decode"]["fp16_nonfinite"]) {
    const float f = fp16_to_float(nf["bits"].get<uint16_t>());
    const std::string kind = nf["kind"];
    if (kind == "nan") EXPECT_TRUE(std::isnan(f));
    else EXPECT_EQ(f, kind == "+inf" ? INFINITY : -INFINITY);
  }
}

#ifdef __F16C__
TEST(Half, FloatToFp16MatchesF16C) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<uint32_t> bits;
  int checked = 0;
  for (int i = 0; i < 2000000; ++i) {
    // Random bit patterns cover subnormals, overflow, ties; restrict exponents to the fp16 neighbourhood half the time.
    uint32_t u = bits(rng);
    if (i & 1) u = (u & 0x807fffffu) | ((100u + (u >> 23) % 50u) << 23);
    const float f = bits_float(u);
    if (std::isnan(f)) continue;
    const uint16_t hw = static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    ASSERT_EQ(float_to_fp16(f), hw) << "float bits " << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 1900000);
}
#endif

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(bits_float(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(bf16_to_float(0xc000), -2.0f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(Sha256, FipsVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two.data(), two.size()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 h;  // one million 'a', fed in uneven pieces
  const std::string chunk(997, 'a');
  size_t left = 1000000;
  while (left) {
    const size_t n = std::min(left, chunk.size());
    h.update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileMatchesPublishedChecksum) {
  // ../shared/data/SHA256SUMS publishes this file's hash.
  EXPECT_EQ(sha256_file(test::data_path("models/stories260K/hf/config.json")),
            "c68b51ee8b0ced4a5988937554571029e76334c847ad5037cfd54f9e9e9aa2b2");
  try {
    sha256_file("/nonexistent/razerq/file");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/razerq/file"), std::string::npos);
  }
}

TEST(Error, WhereComesFirst) {
  const Error e(ErrorKind::kMalformedInput, "a.safetensors", "tensor 'x': bad");
  EXPECT_STREQ(e.what(), "a.safetensors: tensor 'x': bad");
  EXPECT_EQ(e.where(), "a.safetensors");
  EXPECT_EQ(strprintf("%d-%s", 7, "x"), "7-x");
}

TEST(Half, DoubleConversionsRoundOnce) {
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> ex(-30, 17);
  for (int i = 0; i < 200000; ++i) {
    const double d = (i & 1 ? -1 : 1) * std::ldexp(mant(rng), ex(rng));
    // Reference: the nearest fp16 by exhaustive neighbourhood search in double.
    const uint16_t h = double_to_fp16(d);
    const double got = fp16_to_double(h);
    if (std::isinf(got)) {
      ASSERT_GE(std::fabs(d), 65520.0);
      continue;
    }
    const uint16_t up = static_cast<uint16_t>(h + 1), dn = static_cast<uint16_t>(h - 1);
    for (uint16_t n : {up, dn}) {
      const double other = fp16_to_double(n);
      if (std::isnan(other) || std::signbit(other) != std::signbit(got)) continue;
      ASSERT_LE(std::fabs(got - d), std::fabs(other - d)) << d;
      if (std::fabs(got - d) == std::fabs(other - d)) {
        ASSERT_EQ(h & 1, 0) << "tie must go to even: " << d;
      }
    }
    // For doubles that are floats, the float path agrees.
    const float f = static_cast<float>(d);
    ASSERT_EQ(double_to_fp16(static_cast<double>(f)), float_to_fp16(f));
    ASSERT_EQ(double_to_bf16(static_cast<double>(f)), float_to_bf16(f));
  }
  // Double rounding through float would get this one wrong: 1 + 2^-11 + 2^-40 is just above the
  // fp16 midpoint between 1 and 1 + 2^-10, but rounds to the midpoint itself in float.
  const double tricky = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  EXPECT_EQ(double_to_fp16(tricky), 0x3c01);
  EXPECT_EQ(float_to_fp16(static_cast<float>(tricky)), 0x3c00);
}

TEST(RemoveTree, RemovesNestedTreesFilesAndLinksButNotLinkTargets) {
  namespace fs = std::filesystem;
  test::TempDir tmp;
  const fs::path root = tmp.path() / "tree";
  fs::create_directories(root / "a" / "b" / "c");
  std::ofstream(root / "a" / "f1") << "x";
  std::ofstream(root / "a" / "b" / "c" / "f2") << "y";
  const fs::path outside = tmp.path() / "kept";
  fs::create_directories(outside);
  std::ofstream(outside / "keep.txt") << "z";
  fs::create_directory_symlink(outside, root / "a" / "link");  // removed, target untouched
  std::error_code ec;
  EXPECT_EQ(remove_tree(root.string(), ec), 7u);  // tree, a, b, c, f1, f2, link
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(fs::exists(root));
  EXPECT_TRUE(fs::exists(outside / "keep.txt"));
  // A missing path is not an error; a plain file is removed.
  EXPECT_EQ(remove_tree(root.string(), ec), 0u);
  EXPECT_FALSE(ec);
  EXPECT_EQ(remove_tree((outside / "keep.txt").string(), ec), 1u);
  EXPECT_FALSE(fs::exists(outside / "keep.txt"));
}
