// The razerq binary: help lists the registry, exit codes, errors on stderr, output on stdout.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "quantizer/format.hpp"
#include "tests/test_util.hpp"

namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run_cli(const std::string& args) {
  const std::string cmd = std::string(RAZERQ_CLI) + " " + args + " 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, ""};
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST(Cli, HelpListsEveryFormat) {
  const Result r = run_cli("--help");
  EXPECT_EQ(r.code, 0);
  for (const auto& f : razerq::quantizer::all_formats()) EXPECT_NE(r.out.find(f.name), std::string::npos) << f.name;
  EXPECT_NE(run_cli("quantize --help").out.find("--razer-rule"), std::string::npos);
}

TEST(Cli, QuantizeInspectExportOnStories) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("quantize " + model + " --format razer --bits 4 --group 128 -o " + tmp.str("o") + " --compare-reference");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[47/47]"), std::string::npos) << "one progress line per tensor";
  EXPECT_NE(r.out.find("(ref "), std::string::npos) << "both errors per tensor";
  EXPECT_NE(r.out.find("worse than the reference rule: 0 of 35"), std::string::npos) << r.out;
  r = run_cli("inspect " + tmp.str("o") + " --verify");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("razer4/g128"), std::string::npos);
  r = run_cli("export " + tmp.str("o") + " --to dequant -o " + tmp.str("d") + " -q");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(tmp.path() / "d" / "model.safetensors"));
  // Existing output without --force: exit 2, named, untouched.
  r = run_cli("quantize " + model + " -o " + tmp.str("o") + " -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--force"), std::string::npos) << r.out;
}

TEST(Cli, BadArgumentsExitNonZeroWithAReason) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  razerq::test::TempDir tmp;
  Result r = run_cli("quantize " + model + " --format nvfp4 --group 32 -o " + tmp.str("o"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--group 32: nvfp4 needs 16"), std::string::npos) << r.out;
  r = run_cli("quantize " + model + " --format razr -o " + tmp.str("o"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("expected one of"), std::string::npos) << r.out;
  r = run_cli("inspect " + tmp.str("nothing-here"));
  EXPECT_EQ(r.code, 4);
  r = run_cli("quantize /nonexistent-dir -o " + tmp.str("o"));
  EXPECT_NE(r.code, 0);
  r = run_cli("export " + tmp.str("x") + " --to gguf -o " + tmp.str("y"));
  EXPECT_NE(r.code, 0);
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "o"));
}

TEST(Cli, QuantizeStreamsTensorByTensor) {
  // Peak memory stays well under the size of the model's weights (29 MB of fp16, 58 MB as
  // float32): shards are memory-mapped, read one tensor at a time and released, and the output
  // is streamed to disk. The binary reports its own peak resident set (getrusage).
  const std::string model = razerq::test::data_path("models/llama-14m");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  uint64_t weights_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(model))
    if (e.path().extension() == ".safetensors") weights_bytes += e.file_size();
  razerq::test::TempDir tmp;
  const Result r = run_cli("--json -q quantize " + model + " -o " + tmp.str("o"));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto pos = r.out.find("\"peak_rss_mib\":");
  ASSERT_NE(pos, std::string::npos) << r.out;
  const double peak_mib = std::stod(r.out.substr(pos + 15));
  EXPECT_GT(peak_mib, 1.0);
  EXPECT_LT(peak_mib * 1024 * 1024, 0.8 * double(weights_bytes)) << "peak " << peak_mib << " MiB";
}
