// The razerq binary: help lists the registry, exit codes, errors on stderr, output on stdout;
// `razerq eval` when it is built (libtorch found).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/file.hpp"
#include "formats/packed_checkpoint.hpp"
#include "quantizer/format.hpp"
#include "tests/test_util.hpp"

namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run_cli(const std::string& args) {
  // The data directory as the tests see it (eval reads its datasets from $RAZERQ_DATA).
  const std::string cmd = "RAZERQ_DATA='" + razerq::test::data_dir() + "' " + std::string(RAZERQ_CLI) + " " + args + " 2>&1";
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

// export --to gptq|compressed-tensors|bnb-nf4: progress on stderr, one verdict line per converted
// tensor and a total on stdout, the report with --json, refusals with exit 5 naming the targets.
TEST(Cli, ExportQuantizedTargetsPrintTheVerdict) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("-q quantize " + model + " --format int --bits 4 --group 32 --skip mlp -o " + tmp.str("o"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("export " + tmp.str("o") + " --to gptq -o " + tmp.str("g"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[3/47] model.layers.0.self_attn.q_proj.weight [64, 64] int4-sym/g32 -> "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.self_attn.v_proj.weight -> model.layers.4.self_attn.v_proj.{qweight,qzeros,scales,"
                       "g_idx} (GPTQ v1 int4 sym g32): lossless (exact)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("gptq: 20/20 converted tensors lossless; wrote "), std::string::npos) << r.out;
  r = run_cli("export " + tmp.str("o") + " --to compressed-tensors -o " + tmp.str("c") + " --json -q");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["target"], "compressed-tensors");
  EXPECT_EQ(j["lossless"], 20);
  EXPECT_EQ(j["tensors"].size(), 20u);
  r = run_cli("export " + tmp.str("o") + " --to bnb-nf4 -o " + tmp.str("b"));
  EXPECT_EQ(r.code, 5);
  EXPECT_NE(r.out.find("int4-sym/g32 can go to: gptq, compressed-tensors (pack-quantized), gguf (Q4_0), dequant"), std::string::npos)
      << r.out;
  r = run_cli("export " + tmp.str("o") + " --to gptq -o " + tmp.str("g2") + " --dtype bf16");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--dtype: applies to --to dequant and gguf only"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "b"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "g2"));
}

TEST(Cli, QuantizeStreamsTensorByTensor) {
  // Peak memory grows far less than the size of the model's weights (29 MB of fp16, 58 MB as
  // float32): shards are memory-mapped, read one tensor at a time and released, and the output
  // is streamed to disk. The binary reports its own peak resident set (getrusage). The
  // baseline is the same command on stories260K (1 MB): the binary's fixed cost, mostly
  // libtorch's relocations when it is built with `eval` (about 150 MiB here, 13 MiB without).
  const std::string model = razerq::test::data_path("models/llama-14m");
  const std::string tiny = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model) || !std::filesystem::exists(tiny)) GTEST_SKIP() << "no " << model << " or " << tiny;
  uint64_t weights_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(model))
    if (e.path().extension() == ".safetensors") weights_bytes += e.file_size();
  razerq::test::TempDir tmp;
  auto peak_mib = [&](const std::string& m, const std::string& out) {
    const Result r = run_cli("--json -q quantize " + m + " -o " + tmp.str(out));
    EXPECT_EQ(r.code, 0) << r.out;
    const auto pos = r.out.find("\"peak_rss_mib\":");
    EXPECT_NE(pos, std::string::npos) << r.out;
    return pos == std::string::npos ? 0.0 : std::stod(r.out.substr(pos + 15));
  };
  const double base = peak_mib(tiny, "tiny"), peak = peak_mib(model, "o");
  std::printf("  peak RSS: stories260K %.1f MiB, llama-14m %.1f MiB (weights %.1f MiB)\n", base, peak,
              weights_bytes / 1048576.0);
  EXPECT_GT(peak, 1.0);
  EXPECT_LT((peak - base) * 1024 * 1024, 0.8 * double(weights_bytes)) << "peak " << peak << " MiB, baseline " << base;
}

#if defined(RAZERQ_CLI_HAS_EVAL)
// razerq eval on stories260K (golden: 122.372895, PyTorch + transformers, fp32, WikiText-2 at
// seqlen 512, ../shared/data/golden/stories260K_and_tokenizers_golden_hf.json).
TEST(CliEval, Stories260KWikitext2MatchesGolden) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  const Result r = run_cli("eval " + model + " --ppl wikitext2 --seqlen 512 --batch 16 -q");
  ASSERT_EQ(r.code, 0) << r.out;
  // "wikitext2  gptq     seqlen   512  windows 1591  ppl 122.3729  31.0 s (26261 tok/s)"
  EXPECT_NE(r.out.find("windows 1591"), std::string::npos) << r.out;
  const auto pos = r.out.find(" ppl ");
  ASSERT_NE(pos, std::string::npos) << r.out;
  EXPECT_NEAR(std::stod(r.out.substr(pos + 5)) / 122.372895, 1.0, 5e-4) << r.out;
}

TEST(CliEval, JsonKlBaseAndLlamaCppConvention) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("-q quantize " + model + " -o " + tmp.str("q") + " --format razer --bits 4");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("eval " + tmp.str("q") + " --ppl wikitext2 c4-new --seqlen 256 --max-windows 40 --kl-base " + model + " --json -q");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["results"].size(), 2u);
  for (const auto& x : j["results"]) {
    EXPECT_EQ(x["windows"], 40);
    EXPECT_GT(x["windows_in_set"].get<int>(), 40);
    EXPECT_GT(x["mean_kl"].get<double>(), 0.0);
    EXPECT_LT(x["mean_kl"].get<double>(), 1.0);
    EXPECT_GT(x["top1_agreement"].get<double>(), 0.3);
    EXPECT_NEAR(x["ppl_diff"].get<double>(), x["ppl"].get<double>() - x["base_ppl"].get<double>(), 1e-9);
  }
  EXPECT_TRUE(j["packed"].get<bool>());
  EXPECT_GT(j["results"][0]["stream_tokens"].get<int64_t>(), 0);  // for other tools to check their token streams
  EXPECT_EQ(j["results"][0]["stream_sha256"].get<std::string>().size(), 64u);

  // llama.cpp convention on a text file: n_ctx 128, second half scored.
  const std::string txt = tmp.str("t.txt");
  {
    std::ofstream f(txt);
    for (int i = 0; i < 200; ++i) f << "Once upon a time there was a little girl who liked to play in the park.\n";
  }
  r = run_cli("eval " + model + " --convention llamacpp --ppl " + txt + " --seqlen 128 --json -q");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json k = nlohmann::json::parse(r.out)["results"][0];
  EXPECT_EQ(k["convention"], "llamacpp");
  EXPECT_EQ(k["seqlen"], 128);
  EXPECT_GE(k["windows"].get<int>(), 2);
  EXPECT_LT(k["ppl"].get<double>(), 20.0);  // repeated text is easy
}

TEST(CliEval, BadInputsNameTheProblem) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("eval " + model + " --ppl wikitext3");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("wikitext3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c4-new"), std::string::npos) << r.out;  // lists the valid names
  r = run_cli("eval " + tmp.str("none") + " --ppl wikitext2");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("none"), std::string::npos) << r.out;
  r = run_cli("eval " + model + " --ppl wikitext2 --device tpu");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("tpu"), std::string::npos) << r.out;
  r = run_cli("eval " + model + " --ppl wikitext2 --dtype fp8");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run_cli("eval " + model + " --ppl wikitext2 --kl-base " + razerq::test::data_path("models/llama-14m") + " --max-windows 1");
  // Same vocabulary size (512) but a different model: allowed. A missing base is an error.
  EXPECT_EQ(r.code, 0) << r.out;
  r = run_cli("eval " + model + " --ppl wikitext2 --kl-base " + tmp.str("nobase"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("nobase"), std::string::npos) << r.out;
  r = run_cli("eval --help");
  EXPECT_EQ(r.code, 0);
  for (const char* opt : {"--ppl", "--seqlen", "--convention", "--device", "--kl-base", "--batch", "--data-dir"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
}
// razerq eval --sim-mul / --sim-acc: the options reach the quantized linears (JSON names the
// formats and the 35 simulated linears of stories260K), e8m23/e8m23 gives the ordinary fp32
// perplexity up to summation order, and bad formats or a model without quantized linears are
// refused with the option and the expected form named.
TEST(CliEval, SimulatedArithmeticOptions) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("-q quantize " + model + " -o " + tmp.str("q") + " --format razer --bits 4");
  ASSERT_EQ(r.code, 0) << r.out;
  auto ppl = [&](const std::string& extra, nlohmann::json* out) {
    const Result e = run_cli("eval " + tmp.str("q") + " --ppl wikitext2 --seqlen 256 --max-windows 4 --json -q" + extra);
    EXPECT_EQ(e.code, 0) << e.out;
    if (e.code != 0) return 0.0;
    *out = nlohmann::json::parse(e.out)["results"][0];
    return (*out)["ppl"].get<double>();
  };
  nlohmann::json plain, fp32, fp16;
  const double p0 = ppl("", &plain);
  const double p32 = ppl(" --sim-mul e8m23 --sim-acc fp32", &fp32);
  const double p16 = ppl(" --sim-mul fp16 --sim-acc e5m10", &fp16);
  EXPECT_FALSE(plain.contains("sim_mul"));
  EXPECT_EQ(fp32["sim_mul"], "e8m23");
  EXPECT_EQ(fp32["sim_acc"], "e8m23");
  EXPECT_EQ(fp16["sim_mul"], "e5m10");
  EXPECT_EQ(fp16["simulated_linears"], 35);
  EXPECT_NEAR(p32 / p0, 1.0, 1e-6) << p32 << " vs " << p0;
  EXPECT_NE(p16, p0);
  EXPECT_NEAR(p16 / p0, 1.0, 1e-2);

  r = run_cli("eval " + tmp.str("q") + " --ppl wikitext2 --sim-mul e5x10");
  EXPECT_EQ(r.code, 2) << r.out;
  for (const char* part : {"--sim-mul", "e5x10", "eXmY"}) EXPECT_NE(r.out.find(part), std::string::npos) << r.out;
  r = run_cli("eval " + tmp.str("q") + " --ppl wikitext2 --sim-acc e9m3");
  EXPECT_EQ(r.code, 2) << r.out;
  for (const char* part : {"--sim-acc", "e9m3", "2..8"}) EXPECT_NE(r.out.find(part), std::string::npos) << r.out;
  r = run_cli("eval " + model + " --ppl wikitext2 --sim-mul e5m10");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("quantized linears"), std::string::npos) << r.out;
  r = run_cli("eval --help");
  for (const char* opt : {"--sim-mul", "--sim-acc", "eXmY", "round to nearest even"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
}

// razerq bench decode: one row per model and batch, the ratio against the baseline, greedy
// decoding with the cache on the CPU (the CUDA numbers are in bench/decode.md).
TEST(CliBench, DecodeRowsPerBatchWithBaselineRatio) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("-q quantize " + model + " -o " + tmp.str("q") + " --format razer --bits 4");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("--json -q bench decode " + tmp.str("q") + " --baseline " + model +
              " --device cpu --dtype fp32 --batch 1,3 --prompt 12 --tokens 6 --warmup 1");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('[')));
  ASSERT_EQ(j.size(), 4u) << r.out;
  for (const auto& row : j) {
    EXPECT_GT(row["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GT(row["ttft_ms"].get<double>(), 0.0);
    EXPECT_EQ(row["tokens"], 6);
    EXPECT_EQ(row.contains("speedup_vs_baseline"), row["role"] == "model") << row.dump();
    EXPECT_EQ(row["fused_gemv_products"], 0) << "no fused GEMV on the CPU";
    EXPECT_EQ(row["ops"], "libtorch") << "no decode kernels on the CPU";
  }
  EXPECT_EQ(j[0]["batch"], 1);
  EXPECT_EQ(j[1]["batch"], 3);
  r = run_cli("bench decode " + model + " --device cpu --batch 0");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--batch 0"), std::string::npos) << r.out;
  // The static step on the CPU keeps libtorch's ops whatever --decode-ops asks; a bad value is refused.
  r = run_cli("-q bench decode " + model + " --device cpu --dtype fp32 --mode static --decode-ops fused --batch 1 "
              "--prompt 8 --tokens 2 --warmup 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("| static | libtorch | 1 |"), std::string::npos) << r.out;
  r = run_cli("bench decode " + model + " --device cpu --decode-ops cuda");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("expected fused, norm-epilogue, separate-silu or libtorch"), std::string::npos) << r.out;
}

// razerq quantize --gptq: calibration recorded in the manifest; the checkpoint evaluates better
// than round-to-nearest at 3 bits (tests/eval/test_gptq_sequential.cpp has the library figures).
TEST(CliEval, QuantizeGptqRecordsCalibrationAndBeatsRtn) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  Result r = run_cli("-q quantize " + model + " -o " + tmp.str("g") +
                     " --format razer --bits 3 --gptq --nsamples 32 --calib-seqlen 256 --calib-batch 8");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json m = nlohmann::json::parse(razerq::read_file(tmp.str("g") + "/manifest.json"));
  EXPECT_EQ(m["quantization"]["stages"], nlohmann::json::array({"gptq"}));
  EXPECT_EQ(m["quantization"]["calibration"]["source"], "c4");
  EXPECT_EQ(m["quantization"]["calibration"]["n_samples"], 32);
  EXPECT_EQ(m["quantization"]["calibration"]["tokens_sha256"].get<std::string>().size(), 64u);
  r = run_cli("-q quantize " + model + " -o " + tmp.str("r") + " --format razer --bits 3");
  ASSERT_EQ(r.code, 0) << r.out;
  auto ppl = [&](const std::string& dir) {
    const Result e = run_cli("eval " + dir + " --ppl wikitext2 --seqlen 512 --max-windows 120 --batch 16 --json -q");
    EXPECT_EQ(e.code, 0) << e.out;
    return nlohmann::json::parse(e.out)["results"][0]["ppl"].get<double>();
  };
  const double g = ppl(tmp.str("g")), rtn = ppl(tmp.str("r"));
  std::printf("  stories260K razer3: RTN %.3f, GPTQ %.3f (120 windows of 512)\n", rtn, g);
  EXPECT_LT(g, rtn);
  r = run_cli("quantize " + model + " -o " + tmp.str("x") + " --gptq --rule reference");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--gptq"), std::string::npos) << r.out;
}
// razerq quantize --rotate --awq --lwc --gptq: the stages recorded in order, the online Hadamard
// in config.json (razerq eval applies it: tests/eval/test_calib_stages.cpp checks the values),
// combinations that do not make sense refused.
TEST(CliEval, QuantizeStagesRecordedAndRefused) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  const std::string calib = " --format razer --bits 3 --nsamples 8 --calib-seqlen 128 --calib-batch 8";
  Result r = run_cli("-q quantize " + model + " -o " + tmp.str("rg") + calib + " --rotate --awq --gptq");
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json m = nlohmann::json::parse(razerq::read_file(tmp.str("rg") + "/manifest.json"));
  EXPECT_EQ(m["quantization"]["stages"], nlohmann::json::array({"rotate", "awq", "gptq"}));
  EXPECT_EQ(m["quantization"]["rotation"]["residual"], "sylvester(8) x sylvester(8)");
  EXPECT_TRUE(m["quantization"].contains("awq") && m["quantization"].contains("gptq"));
  const nlohmann::json c = nlohmann::json::parse(razerq::read_file(tmp.str("rg") + "/config.json"));
  EXPECT_EQ(c["razerq_online_hadamard"], nlohmann::json::array({"down_proj"}));
  EXPECT_EQ(c["tie_word_embeddings"], false);
  r = run_cli("eval " + tmp.str("rg") + " --ppl wikitext2 --seqlen 512 --max-windows 8 -q");
  EXPECT_EQ(r.code, 0) << r.out;
  r = run_cli("-q quantize " + model + " -o " + tmp.str("l") + calib + " --lwc --lwc-epochs 1");
  ASSERT_EQ(r.code, 0) << r.out;
  m = nlohmann::json::parse(razerq::read_file(tmp.str("l") + "/manifest.json"));
  EXPECT_EQ(m["quantization"]["stages"], nlohmann::json::array({"lwc"}));
  EXPECT_EQ(m["quantization"]["lwc"]["epochs"], 1);
  r = run_cli("quantize " + model + " -o " + tmp.str("x") + calib + " --lwc --gptq");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--lwc"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(tmp.str("x")));
}

// razerq quantize --format lut --sensitivity fisher / act2 end to end on stories260K (2 windows of
// 64 C4 tokens): the manifest's calibration record (stage, sensitivity kind, the dtype the model
// ran in, the tokens' SHA-256), tables that differ from --sensitivity none's (dense only, so the
// k-means weighting is the only difference), a finite perplexity near the unquantized model's;
// --calib-dtype is honoured (fisher in bf16, act2 in bf16) and fisher in fp16 refused.
TEST(CliEval, LutSensitivityStagesEndToEnd) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  const std::string base = "-q quantize " + model + " --format lut --bits 4 --outlier-frac 0 --sensitive-frac 0 -o ";
  const std::string calib = " --nsamples 2 --calib-seqlen 64";
  struct Run {
    const char* dir;
    const char* args;
    const char* kind;   // the record's sensitivity starts with this
    const char* dtype;  // calibration.model_dtype
  } runs[] = {{"none", " --sensitivity none", "none", nullptr},
              {"fisher", " --sensitivity fisher", "fisher", "fp32"},
              {"act2", " --sensitivity act2", "act2", "fp32"},
              {"fisher_bf16", " --sensitivity fisher --calib-dtype bf16", "fisher", "bf16"},
              {"act2_bf16", " --sensitivity act2 --calib-dtype bf16", "act2", "bf16"}};
  std::string sha;
  for (const Run& run : runs) {
    const Result r = run_cli(base + tmp.str(run.dir) + run.args + (run.dtype ? calib : ""));
    ASSERT_EQ(r.code, 0) << run.dir << ": " << r.out;
    ASSERT_TRUE(std::filesystem::exists(tmp.str(run.dir) + "/manifest.json")) << run.dir;
    ASSERT_TRUE(std::filesystem::exists(tmp.str(run.dir) + "/model.safetensors")) << run.dir;
    const nlohmann::json q = nlohmann::json::parse(razerq::read_file(tmp.str(run.dir) + "/manifest.json"))["quantization"];
    EXPECT_EQ(q["format"], "lut") << run.dir;
    EXPECT_EQ(q["sensitivity"].get<std::string>().rfind(run.kind, 0), 0u) << run.dir << ": " << q.dump();
    if (!run.dtype) {
      EXPECT_FALSE(q.contains("calibration")) << q.dump();
      continue;
    }
    EXPECT_EQ(q["stages"], nlohmann::json::array({"sensitivity"})) << run.dir;
    const nlohmann::json& c = q["calibration"];
    EXPECT_EQ(c["source"], "c4") << run.dir;
    EXPECT_EQ(c["n_samples"], 2) << run.dir;
    EXPECT_EQ(c["seqlen"], 64) << run.dir;
    EXPECT_EQ(c["model_dtype"], run.dtype) << run.dir;
    const std::string h = c["tokens_sha256"].get<std::string>();
    EXPECT_EQ(h.size(), 64u) << run.dir;
    EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
    if (sha.empty()) sha = h;
    EXPECT_EQ(h, sha) << run.dir << ": the same windows for every run";
  }

  // Tables: every quantized tensor's tables differ from the unweighted k-means' in some rows.
  using razerq::formats::PackedCheckpoint;
  auto differing_rows = [&](const std::string& dir, const std::string& against) {
    const PackedCheckpoint a = PackedCheckpoint::open(tmp.str(dir)), b = PackedCheckpoint::open(tmp.str(against));
    int64_t diff = 0, rows = 0;
    int tensors = 0, tensors_differing = 0;
    for (const auto& rec : a.tensors()) {
      if (!rec.quantized) continue;
      const razerq::quantizer::QuantizedTensor x = a.load_quantized(rec.name), y = b.load_quantized(rec.name);
      EXPECT_EQ(x.lut.size(), y.lut.size()) << rec.name;
      if (x.lut.size() != y.lut.size()) continue;
      const size_t k = size_t(1) << x.cfg.bits;
      int64_t d = 0;
      for (int64_t r = 0; r < x.rows; ++r)
        d += !std::equal(x.lut.begin() + r * k, x.lut.begin() + (r + 1) * k, y.lut.begin() + r * k);
      diff += d;
      rows += x.rows;
      ++tensors;
      tensors_differing += d > 0;
    }
    std::printf("  %s vs %s: tables differ in %lld of %lld rows, %d of %d tensors\n", dir.c_str(), against.c_str(),
                static_cast<long long>(diff), static_cast<long long>(rows), tensors_differing, tensors);
    EXPECT_EQ(tensors, 35) << dir;
    EXPECT_EQ(tensors_differing, tensors) << dir << " vs " << against;
    return rows ? double(diff) / double(rows) : 0.0;
  };
  EXPECT_GT(differing_rows("fisher", "none"), 0.5);
  EXPECT_GT(differing_rows("act2", "none"), 0.5);
  EXPECT_GT(differing_rows("fisher", "act2"), 0.5);
  EXPECT_GT(differing_rows("fisher_bf16", "none"), 0.5);

  // Perplexity on a few windows: finite and near the unquantized model's.
  auto ppl = [&](const std::string& dir) {
    const Result e = run_cli("eval " + dir + " --ppl wikitext2 --seqlen 256 --max-windows 4 --json -q");
    EXPECT_EQ(e.code, 0) << e.out;
    return e.code == 0 ? nlohmann::json::parse(e.out)["results"][0]["ppl"].get<double>() : NAN;
  };
  const double p0 = ppl(model);
  for (const char* dir : {"none", "fisher", "act2", "fisher_bf16", "act2_bf16"}) {
    const double p = ppl(tmp.str(dir));
    std::printf("  stories260K lut4 dense, sensitivity %s: ppl %.4f (unquantized %.4f; 4 windows of 256)\n", dir, p, p0);
    EXPECT_TRUE(std::isfinite(p)) << dir;
    EXPECT_GT(p, 1.0) << dir;
    EXPECT_LT(p / p0, 1.25) << dir;
  }

  // act2 in fp16: recorded as such where libtorch has fp16 kernels (CUDA); Debian's CPU libtorch
  // 1.13 has no fp16 matmul, which must come out as a clear error with nothing left behind.
  {
    const Result r = run_cli(base + tmp.str("act2_fp16") + " --sensitivity act2 --calib-dtype fp16" + calib);
    if (r.code == 0) {
      const nlohmann::json q = nlohmann::json::parse(razerq::read_file(tmp.str("act2_fp16") + "/manifest.json"))["quantization"];
      EXPECT_EQ(q["calibration"]["model_dtype"], "fp16");
    } else {
      const size_t e = r.out.find("error:");
      std::printf("  act2 fp16 on this build: %s", e == std::string::npos ? r.out.c_str() : r.out.c_str() + e);
      EXPECT_NE(r.out.find("libtorch failed computing the act2 sensitivity (float16 on cpu)"), std::string::npos) << r.out;
      EXPECT_EQ(r.out.find("frame #"), std::string::npos) << "a libtorch backtrace instead of a message: " << r.out;
      EXPECT_FALSE(std::filesystem::exists(tmp.str("act2_fp16")));
      EXPECT_FALSE(std::filesystem::exists(tmp.str("act2_fp16") + ".partial"));
    }
  }

  // fisher in fp16: refused before any work, nothing written.
  const Result r = run_cli(base + tmp.str("fp16") + " --sensitivity fisher --calib-dtype fp16" + calib);
  EXPECT_EQ(r.code, 2) << r.out;
  for (const char* part : {"--calib-dtype fp16", "fp32 or bf16", "underflow", "loss scaling"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << ": " << r.out;
  EXPECT_FALSE(std::filesystem::exists(tmp.str("fp16")));
  EXPECT_FALSE(std::filesystem::exists(tmp.str("fp16") + ".partial"));
  EXPECT_NE(run_cli("quantize --help").out.find("refuses fp16"), std::string::npos);
}
#endif

// OA-CIM int options: argument errors, the offset checkpoint (round-to-nearest; outliers and
// second-level scales need --gptq) through inspect, the exports and eval on the CPU.
TEST(CliOaInt, OptionErrorsAndOffsetCheckpoint) {
  const std::string model = razerq::test::data_path("models/stories260K/hf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "no " << model;
  razerq::test::TempDir tmp;
  const std::string q = "quantize " + model + " -f int -b 4 -g 64 -o " + tmp.str("x") + " ";
  struct Bad {
    const char* args;
    const char* says;
  } bad[] = {{"--asym --offset", "--offset: needs symmetric codes"},
             {"--outliers", "add --gptq"},
             {"--qq-scale-bits 4", "add --gptq"},
             {"--block-size 16", "--block-size: is the outlier block: add --outliers"},
             {"--qq-zero-bits 4", "symmetric int has no zero points"},
             {"--outliers --gptq --act-order", "cannot be combined with --act-order"}};
  for (const Bad& b : bad) {
    const Result r = run_cli(q + b.args);
    EXPECT_EQ(r.code, 2) << b.args << ": " << r.out;
    EXPECT_NE(r.out.find(b.says), std::string::npos) << b.args << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(tmp.path() / "x")) << b.args;
  }
  {
    const Result r = run_cli(q + "--asym --sym");  // CLI11's own parse error (its exit code)
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("--asym excludes --sym"), std::string::npos) << r.out;
  }
  EXPECT_NE(run_cli("quantize --help").out.find("--qq-group-size"), std::string::npos);

  Result r = run_cli(q + "--sym -q");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("quantize " + model + " -f int -b 4 -g 64 --per-out-dim --offset -q -o " + tmp.str("off"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("quantize " + model + " -f int -b 4 -g 64 --offset -q -o " + tmp.str("off64"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("inspect " + tmp.str("off") + " --verify");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("int4-sym/row+off"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 bits of the stored codes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("+ offsets "), std::string::npos) << r.out;
  r = run_cli("export " + tmp.str("off64") + " --to gptq -o " + tmp.str("g") + " -q");
  EXPECT_EQ(r.code, 5) << r.out;
  EXPECT_NE(r.out.find("cannot be exported to gptq"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("can go to: dequant"), std::string::npos) << r.out;
  r = run_cli("export " + tmp.str("off64") + " --to gguf -o " + tmp.str("g.gguf") + " -q");
  EXPECT_NE(r.code, 0) << r.out;
  r = run_cli("export " + tmp.str("off64") + " --to dequant -o " + tmp.str("d") + " -q");
  EXPECT_EQ(r.code, 0) << r.out;
#if defined(RAZERQ_CLI_HAS_EVAL)
  // Offsets are lossless: the CPU evaluation (reference decoder) equals the plain checkpoint's.
  const Result a = run_cli("eval " + tmp.str("x") + " --ppl wikitext2 --seqlen 512 --max-windows 8 --json -q");
  const Result b = run_cli("eval " + tmp.str("off64") + " --ppl wikitext2 --seqlen 512 --max-windows 8 --json -q");
  ASSERT_EQ(a.code, 0) << a.out;
  ASSERT_EQ(b.code, 0) << b.out;
  const auto ppl = [](const std::string& s) { return nlohmann::json::parse(s)["results"][0]["ppl"].get<double>(); };
  EXPECT_EQ(ppl(a.out), ppl(b.out));
#endif
}
