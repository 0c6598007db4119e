// eval/ on CUDA (ctest label "gpu"; every test skips with the reason where libtorch sees no
// CUDA device): llama-14m's float16 and float32 goldens of ../shared/data/golden (PyTorch +
// transformers on an H100), a packed RaZeR W4 g128 checkpoint giving the CPU's perplexity on
// CUDA (weights dequantized by our CUDA kernel, bit-equal to the CPU reference), its KL against
// the base model, the transformers fixtures on CUDA, stories260K's greedy text, and the static
// decode step (CUDA graphs; its decode kernels against libtorch's ops).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "calib/awq.hpp"
#include "calib/datasets.hpp"
#include "calib/gptq_sequential.hpp"
#include "calib/lwc.hpp"
#include "calib/tokenizer.hpp"
#include "common/file.hpp"
#include "common/json.hpp"
#include "eval/decode.hpp"
#include "eval/model.hpp"
#include "eval/perplexity.hpp"
#include "formats/packed_checkpoint.hpp"
#include "formats/quantize_model.hpp"
#include "kernels/cpu/dequant.hpp"
#include "quantizer/format.hpp"
#include "tests/eval/eval_test_util.hpp"
#include "tests/eval/gptq_device_check.hpp"
#include "tests/eval/sim_eval_util.hpp"
#include "tests/eval/transformers_fixtures.hpp"

namespace razerq::eval {
namespace {

using namespace razerq::eval::testing;

constexpr const char* kGolden = "golden/llama-14m.golden_hf.json";

#define RAZERQ_REQUIRE_CUDA()                                                                   \
  do {                                                                                         \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible to libtorch";   \
  } while (0)

ModelOptions cuda_opts(torch::ScalarType dt) {
  ModelOptions o;
  o.device = torch::Device(torch::kCUDA, 0);
  o.dtype = dt;
  return o;
}

// GPTQ with the Hessian, its factorisation (cuSOLVER) and the trailing updates on the GPU
// against the host path (LAPACK, Eigen) on the same Hessian.
TEST(GptqCuda, DeviceHessianMatchesHost) {
  RAZERQ_REQUIRE_CUDA();
  check_device_hessian_matches_host(torch::Device(torch::kCUDA, 0));
}

// --calib-offload: the calibration activations in pinned host memory between forwards give the
// same GPTQ, AWQ and LWC results as keeping them on the GPU (the same operations on the same
// values): stories260K on CUDA fp32, 8 C4 windows of 256. GPTQ and AWQ bit for bit; LWC trains
// through autograd, whose attention backward on the GPU need not be deterministic: 99.9 % of its
// code words.
TEST(GptqCuda, OffloadedActivationsGiveTheSameResults) {
  RAZERQ_REQUIRE_CUDA();
  RAZERQ_REQUIRE_DATA(kStories);
  const std::string dir = test::data_path(kStories);
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(dir);
  const std::vector<std::vector<int32_t>> cal = calib::calibration_windows("c4", 8, 256, 0, *tok, test::data_dir());
  const quantizer::FormatConfig cfg = quantizer::make_format_config("razer", 4, 64);
  auto same = [](const std::map<std::string, quantizer::QuantizedTensor>& a,
                 const std::map<std::string, quantizer::QuantizedTensor>& b, bool exact) {
    EXPECT_EQ(a.size(), b.size());
    EXPECT_FALSE(a.empty());
    size_t words = 0, equal = 0;
    for (const auto& [name, q] : a) {
      ASSERT_TRUE(b.count(name)) << name;
      const quantizer::QuantizedTensor& o = b.at(name);
      ASSERT_EQ(q.codes.size(), o.codes.size()) << name;
      for (size_t i = 0; i < q.codes.size(); ++i) equal += q.codes[i] == o.codes[i];
      words += q.codes.size();
      if (exact) {
        EXPECT_EQ(q.codes, o.codes) << name;
        EXPECT_EQ(q.scales16, o.scales16) << name;
      }
    }
    EXPECT_GE(static_cast<double>(equal), 0.999 * static_cast<double>(words));
  };
  std::map<std::string, quantizer::QuantizedTensor> r[3][2];
  for (int off = 0; off < 2; ++off) {
    {
      Model m = Model::load(dir, cuda_opts(torch::kFloat32));
      calib::SequentialOptions so;
      so.batch = 4, so.offload = off;
      r[0][off] = calib::gptq_sequential(m, cal, cfg, so);
    }
    {
      Model m = Model::load(dir, cuda_opts(torch::kFloat32));
      calib::AwqOptions ao;
      ao.batch = 4, ao.offload = off;
      r[1][off] = calib::awq_apply(m, cal, cfg, ao).clipped;
    }
    {
      Model m = Model::load(dir, cuda_opts(torch::kFloat32));
      calib::LwcOptions lo;
      lo.batch = 4, lo.offload = off, lo.epochs = 1;
      r[2][off] = calib::lwc_apply(m, cal, cfg, lo);
    }
  }
  for (int st = 0; st < 3; ++st) {
    SCOPED_TRACE(st == 0 ? "gptq" : st == 1 ? "awq" : "lwc");
    same(r[st][0], r[st][1], st < 2);
  }
}

// The eight GPTQ-convention figures of a dtype ("float16/wikitext2/2048" -> ppl).
TEST(EvalGpuLlama14m, GoldensFloat16AndFloat32) {
  RAZERQ_REQUIRE_CUDA();
  RAZERQ_REQUIRE_DATA(kLlama14m);
  RAZERQ_REQUIRE_DATA(kGolden);
  const nlohmann::json golden = read_json_object(test::data_path(kGolden))["ppl"];
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kLlama14m));
  struct Case {
    torch::ScalarType dt;
    const char* label;
    double tol;
  };
  for (const Case& c : {Case{torch::kFloat16, "float16", 1e-3}, Case{torch::kFloat32, "float32", 5e-4}}) {
    const Model model = Model::load(test::data_path(kLlama14m), cuda_opts(c.dt));
    for (int seqlen : {2048, 512})
      for (const char* ds : {"wikitext2", "ptb", "ptb-new", "c4-new"}) {
        const std::string key = std::string(c.label) + "/" + ds + "/" + std::to_string(seqlen);
        SCOPED_TRACE(key);
        ASSERT_TRUE(golden.contains(key));
        const calib::EvalSet set = calib::gptq_eval_set(ds, *tok, seqlen, test::data_dir());
        EvalOptions eo;
        eo.batch_size = seqlen == 512 ? 8 : 2;
        const PerplexityResult r = perplexity(model, set.windows, eo);
        const double g = golden[key]["gptq_ppl"].get<double>();
        std::printf("  llama-14m %-24s cuda: %.6f  golden %.6f  diff %+.4f %%  (%lld windows, %.2f s)\n", key.c_str(), r.ppl,
                    g, 100 * (r.ppl / g - 1), static_cast<long long>(r.windows), r.seconds);
        EXPECT_EQ(r.windows, golden[key]["windows"].get<int64_t>());
        EXPECT_NEAR(r.ppl / g, 1.0, c.tol);
      }
  }
}

// A packed RaZeR W4 g128 checkpoint of llama-14m, quantized once for the tests below.
class EvalGpuPackedRazer4 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!torch::cuda::is_available() || !have_data(kLlama14m)) return;
    tmp_ = new test::TempDir();
    dir_ = quantize_packed(test::data_path(kLlama14m), tmp_->str("razer4"), quantizer::make_format_config("razer", 4, 128));
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    RAZERQ_REQUIRE_CUDA();
    RAZERQ_REQUIRE_DATA(kLlama14m);
    ASSERT_FALSE(dir_.empty());
  }
  static test::TempDir* tmp_;
  static std::string dir_;
};
test::TempDir* EvalGpuPackedRazer4::tmp_ = nullptr;
std::string EvalGpuPackedRazer4::dir_;

// CUDA fp16 weights come from our CUDA dequant kernel: equal to the CPU reference rounded once
// to fp16, bit for bit; CUDA fp32 weights equal the CPU model's.
TEST_F(EvalGpuPackedRazer4, CudaWeightsEqualCpuReference) {
  const Model g16 = Model::load(dir_, cuda_opts(torch::kFloat16));
  const Model g32 = Model::load(dir_, cuda_opts(torch::kFloat32));
  const Model cpu = Model::load(dir_);
  const formats::PackedCheckpoint pc = formats::PackedCheckpoint::open(dir_);
  int64_t checked = 0;
  for (const formats::TensorRecord& r : pc.tensors()) {
    if (!r.quantized) continue;
    const quantizer::QuantizedTensor qt = pc.load_quantized(r.name);
    torch::Tensor want = torch::empty({qt.rows, qt.cols}, torch::kInt16);
    kernels::dequantize_to_fp16(qt, reinterpret_cast<uint16_t*>(want.data_ptr<int16_t>()));
    EXPECT_TRUE(torch::equal(g16.tensor(r.name).cpu().view(torch::kInt16), want)) << r.name;
    EXPECT_TRUE(torch::equal(g32.tensor(r.name).cpu(), cpu.tensor(r.name))) << r.name;
    ++checked;
  }
  EXPECT_EQ(checked, 56);
}

// Perplexity on CPU (fp32) equals CUDA fp32 and fp16 within 0.05 % (first 12 WikiText-2 windows;
// scripts/gpu/run_eval_gpu.sh compares the whole set through the CLI).
TEST_F(EvalGpuPackedRazer4, PerplexitySameOnCpuAndCuda) {
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kLlama14m));
  const calib::EvalSet set = calib::gptq_eval_set("wikitext2", *tok, 2048, test::data_dir());
  const Windows first(set.windows.begin(), set.windows.begin() + 12);
  const Model cpu = Model::load(dir_);
  const Model g32 = Model::load(dir_, cuda_opts(torch::kFloat32));
  const Model g16 = Model::load(dir_, cuda_opts(torch::kFloat16));
  const PerplexityResult pc_cpu = perplexity(cpu, first), pc_32 = perplexity(g32, first), pc_16 = perplexity(g16, first);
  std::printf("  razer4/g128 wikitext2/2048, first 12 windows: cpu fp32 %.6f, cuda fp32 %.6f, cuda fp16 %.6f\n", pc_cpu.ppl,
              pc_32.ppl, pc_16.ppl);
  EXPECT_NEAR(pc_32.ppl / pc_cpu.ppl, 1.0, 5e-4);
  EXPECT_NEAR(pc_16.ppl / pc_cpu.ppl, 1.0, 5e-4);
}

// Mean next-token NLL of ids [B, T] from logits [B, T, V] (positions 0 .. T-2 predict 1 .. T-1).
double mean_nll(const torch::Tensor& logits, const torch::Tensor& ids) {
  const int64_t T = ids.size(1);
  const torch::Tensor lp = torch::log_softmax(logits.slice(1, 0, T - 1).to(torch::kFloat64).cpu(), -1);
  const torch::Tensor tgt = ids.slice(1, 1, T).cpu().to(torch::kLong).unsqueeze(-1);
  return -lp.gather(-1, tgt).mean().item<double>();
}

// Token-by-token decoding with the KV cache (1, 4 and 16 rows of x per product) runs the fused
// GEMV on the packed weights; its perplexity equals the prefill path's (dense weights from the
// dequant kernel, cuBLAS) and the CPU float32 reference's within fp16 noise (5e-4), and the
// decode logits equal those of the same decode with the fused GEMV turned off within 4 fp16
// ulps of the largest logit (fp16 outputs of different summation orders).
TEST_F(EvalGpuPackedRazer4, DecodePathRunsFusedGemvAndMatchesPrefill) {
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kLlama14m));
  const calib::EvalSet set = calib::gptq_eval_set("wikitext2", *tok, 2048, test::data_dir());
  const Model g16 = Model::load(dir_, cuda_opts(torch::kFloat16));
  ModelOptions dense_opts = cuda_opts(torch::kFloat16);
  dense_opts.fused_gemv = false;
  const Model d16 = Model::load(dir_, dense_opts);
  const Model cpu = Model::load(dir_);
  EXPECT_EQ(g16.fused_gemv_tensors(), 56);
  EXPECT_EQ(d16.fused_gemv_tensors(), 0);
  constexpr int64_t T = 160;
  for (int64_t B : {1, 4, 16}) {
    std::vector<torch::Tensor> rows;
    for (int64_t b = 0; b < B; ++b)
      rows.push_back(torch::tensor(std::vector<int64_t>(set.windows[b].begin(), set.windows[b].begin() + T)));
    const torch::Tensor ids = torch::stack(rows).to(torch::Device(torch::kCUDA, 0));
    torch::NoGradGuard ng;
    const int64_t calls0 = Model::fused_gemv_calls();
    const torch::Tensor prefill = g16.forward(ids);  // B x T rows: the dense path
    EXPECT_EQ(Model::fused_gemv_calls(), calls0) << "prefill must not use the GEMV";
    auto decode = [&](const Model& m) {
      KVCache cache;
      std::vector<torch::Tensor> steps;
      for (int64_t t = 0; t < T; ++t) steps.push_back(m.forward(ids.slice(1, t, t + 1), &cache));
      return torch::cat(steps, 1);
    };
    const torch::Tensor fused = decode(g16);
    // Per layer: q/k/v as one product, o, gate/up as one, down.
    EXPECT_EQ(Model::fused_gemv_calls() - calls0, T * g16.num_layers() * 4) << "B = " << B;
    const torch::Tensor dense = decode(d16);
    const double nll_pre = mean_nll(prefill, ids), nll_fused = mean_nll(fused, ids), nll_dense = mean_nll(dense, ids);
    const double nll_cpu = mean_nll(cpu.forward(ids.cpu()), ids);
    const double dmax = (fused - dense).abs().max().item<double>();
    const double bound = std::ldexp(dense.abs().max().item<double>(), -8);
    std::printf("  razer4 decode B=%lld T=%lld: ppl cpu fp32 %.5f, prefill fp16 %.5f, decode fused %.5f, decode dense %.5f; "
                "max |logit fused - dense| %.2e\n",
                static_cast<long long>(B), static_cast<long long>(T), std::exp(nll_cpu), std::exp(nll_pre),
                std::exp(nll_fused), std::exp(nll_dense), dmax);
    EXPECT_NEAR(std::exp(nll_fused - nll_cpu), 1.0, 5e-4);
    EXPECT_NEAR(std::exp(nll_fused - nll_pre), 1.0, 5e-4);
    EXPECT_LE(dmax, bound);
  }
}

// Decode-sized products on CUDA run q/k/v and gate/up as one linear each. Against the separate
// linears (layer_with with no replacement drops the fused ones): the packed fused GEMV on the
// concatenated rows is the same arithmetic per row, so equal bit for bit; the fp16 model's
// fused cuBLAS product may split the sums otherwise, so within 2^-9 of the largest output.
TEST_F(EvalGpuPackedRazer4, FusedQkvAndGateUpEqualTheSeparateLinears) {
  const Model packed = Model::load(dir_, cuda_opts(torch::kFloat16));
  const Model dense = Model::load(test::data_path(kLlama14m), cuda_opts(torch::kFloat16));
  // The packed rows are on the device once: the parts of q/k/v and gate/up are views of the
  // fused rows. razer4/g128 is 4.125 bits per weight; allocations round each array up to 256
  // bytes (a few KiB over the 56 linears + 16 fused ones); a second copy of q/k/v and gate/up
  // would add about 70 % more.
  const ModelConfig& c = packed.config();
  const int64_t weights = c.num_layers * (c.hidden_size * c.num_heads * c.head_dim * 2 +
                                          c.hidden_size * c.num_kv_heads * c.head_dim * 2 + 3 * c.hidden_size * c.intermediate_size);
  const double payload = static_cast<double>(weights) * 4.125 / 8;
  std::printf("  packed device bytes %lld for a payload of %.0f\n", static_cast<long long>(packed.fused_gemv_bytes()), payload);
  EXPECT_GE(static_cast<double>(packed.fused_gemv_bytes()), payload);
  EXPECT_LT(static_cast<double>(packed.fused_gemv_bytes()), payload * 1.05);
  torch::NoGradGuard ng;
  torch::manual_seed(7);
  for (int64_t B : {1, 3, 16}) {
    const torch::Tensor h = torch::randn({B, 1, packed.config().hidden_size}).to(torch::Device(torch::kCUDA, 0), torch::kFloat16);
    for (int64_t i : {0, 5}) {
      const int64_t calls0 = Model::fused_gemv_calls();
      const torch::Tensor fused = packed.layer(i, h);
      EXPECT_EQ(Model::fused_gemv_calls() - calls0, 4) << "layer " << i << " B = " << B;
      const torch::Tensor separate = packed.layer_with(i, h, {});
      EXPECT_EQ((fused != separate).sum().item<int64_t>(), 0) << "packed layer " << i << " B = " << B;
      const torch::Tensor df = dense.layer(i, h), ds = dense.layer_with(i, h, {});
      const double dmax = (df - ds).abs().max().item<double>(), bound = std::ldexp(ds.abs().max().item<double>(), -9);
      std::printf("  layer %lld B=%lld: fp16 fused vs separate max |diff| %.3g (bound %.3g)\n", static_cast<long long>(i),
                  static_cast<long long>(B), dmax, bound);
      EXPECT_LE(dmax, bound) << "dense layer " << i << " B = " << B;
    }
  }
}

// KL(base || razer4) over the whole WikiText-2 set on CUDA fp16 lies in (0, 0.05).
TEST_F(EvalGpuPackedRazer4, KlAgainstBaseOnCuda) {
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kLlama14m));
  const calib::EvalSet set = calib::gptq_eval_set("wikitext2", *tok, 2048, test::data_dir());
  const Model base16 = Model::load(test::data_path(kLlama14m), cuda_opts(torch::kFloat16));
  const Model g16 = Model::load(dir_, cuda_opts(torch::kFloat16));
  EvalOptions eo;
  eo.batch_size = 4;
  const KlResult kl = kl_divergence(base16, g16, set.windows, eo);
  std::printf("  razer4/g128 vs fp16 base, cuda, all %lld windows: %s\n", static_cast<long long>(kl.windows),
              format_result(kl).c_str());
  EXPECT_GT(kl.mean_kl, 0.0);
  EXPECT_LT(kl.mean_kl, 0.05);
}

// Simulated custom-precision arithmetic on CUDA (kernels/cuda/sim_gemm.cu in the 56 quantized
// linears): the first WikiText-2 window's perplexity against the CPU's. The simulated products
// are bit for bit the same on the same operands (tests/kernels, Fc1EqualsFloat64EmulationOnCuda
// below), but the rest of the forward (attention, norms) differs by summation order, and narrow
// formats turn those last-bit differences into rounding flips that grow layer by layer: measured
// on the H100, e5m10/e5m10 CUDA 9.932589 vs CPU 9.932086 (5e-5), e4m3/e8m7 9.910032 vs 9.960591
// (0.5 %; the format itself moves the perplexity by 0.3 %). So: e8m23/e8m23 within 1e-5 of the
// ordinary CUDA fp32 forward, e5m10/e5m10 within 5e-4 of the CPU, e4m3/e8m7 within 2 %; fp16
// models run it too (inputs and results in fp16).
TEST_F(EvalGpuPackedRazer4, SimulatedArithmeticOnCudaMatchesCpu) {
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kLlama14m));
  const calib::EvalSet set = calib::gptq_eval_set("wikitext2", *tok, 2048, test::data_dir());
  const Windows first(set.windows.begin(), set.windows.begin() + 1);
  const double plain = perplexity(Model::load(dir_, cuda_opts(torch::kFloat32)), first).ppl;
  for (const kernels::SimArith a : {kernels::SimArith{{8, 23}, {8, 23}}, kernels::SimArith{{5, 10}, {5, 10}},
                                    kernels::SimArith{{4, 3}, {8, 7}}}) {
    ModelOptions oc = cuda_opts(torch::kFloat32), oh;
    oc.sim = oh.sim = a;
    const Model g = Model::load(dir_, oc), c = Model::load(dir_, oh);
    EXPECT_EQ(g.simulated_linears(), 56);
    const PerplexityResult pg = perplexity(g, first), pc = perplexity(c, first);
    std::printf("  razer4 first window, %s: cuda %.6f (%.1f s), cpu %.6f (%.1f s), ordinary cuda fp32 %.6f\n",
                kernels::sim_arith_name(a).c_str(), pg.ppl, pg.seconds, pc.ppl, pc.seconds, plain);
    EXPECT_NEAR(pg.ppl / pc.ppl, 1.0, a.mul.man_bits >= 10 ? 5e-4 : 0.02);
    if (a.mul.man_bits == 23 && a.acc.man_bits == 23) {
      EXPECT_NEAR(pg.ppl / plain, 1.0, 1e-5);
    }
  }
  ModelOptions o16 = cuda_opts(torch::kFloat16);
  o16.sim = kernels::SimArith{{5, 10}, {5, 10}};
  const double p16 = perplexity(Model::load(dir_, o16), first).ppl;
  std::printf("  razer4 first window, cuda fp16 with mul e5m10, acc e5m10: %.6f\n", p16);
  EXPECT_NEAR(p16 / plain, 1.0, 0.02);
}

// Inside a CUDA model the simulated product (kernels/cuda/sim_gemm.cu) equals the float64
// emulation bit for bit: the OPT fixture with only fc1 quantized, fc2's input against
// relu(ref_dot + b) (tests/eval/sim_eval_util.hpp), fp32.
TEST(EvalGpuSimulated, Fc1EqualsFloat64EmulationOnCuda) {
  RAZERQ_REQUIRE_CUDA();
  test::TempDir tmp;
  const std::string packed = pack_opt_fc1_only(tmp.str("opt-fc1"));
  if (packed.empty()) GTEST_SKIP() << "no transformers fixture opt-pre";
  for (const kernels::SimArith a : {kernels::SimArith{{5, 10}, {5, 10}}, kernels::SimArith{{4, 3}, {8, 7}},
                                    kernels::SimArith{{8, 23}, {8, 23}}, kernels::SimArith{{2, 1}, {5, 2}}}) {
    ModelOptions o = cuda_opts(torch::kFloat32);
    o.sim = a;
    EXPECT_EQ(fc1_mismatches(packed, o), 0) << kernels::sim_arith_name(a);
  }
}

TEST(EvalGpuTransformers, LogitsEqualTransformersOnCuda) {
  RAZERQ_REQUIRE_CUDA();
  const std::vector<std::string> names = transformers_fixtures();
  if (names.empty()) GTEST_SKIP() << "no fixtures in " << transformers_fixture_dir();
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const TransformersReference ref = read_reference(name);
    const Model model = Model::load(transformers_fixture_dir() + "/" + name, cuda_opts(torch::kFloat32));
    const torch::Tensor logits = model.forward(ref.ids.cuda()).cpu();
    const double r = max_rel(logits, ref.logits_f64);
    std::printf("  %-9s cuda fp32: max rel diff vs transformers fp64 %.2e (vs fp32 %.2e)\n", name.c_str(), r,
                max_rel(logits, ref.logits_f32));
    EXPECT_LT(r, 1e-4);
  }
}

// eval::StaticDecoder on CUDA fp16 (B = 1 and 4, a 16-token random prompt, 32 steps, capacity
// 64): the CUDA-graph replay, one replay at a time, gives the same greedy tokens as the static
// step run eagerly, and logits equal to those of the eager steps within 2 fp16 ulps of the
// largest logit (the same kernels on the same buffers: expected equal); both against
// Model::forward with the dynamic KVCache fed the same tokens, within 16 fp16 ulps of the
// largest logit (fp16 outputs of a different attention kernel: with the decode kernels (the
// default) our split-K kernel over slots 0 .. pos, without them the memory-efficient one with an
// additive mask over the whole capacity, instead of flash over the cached length, through 8
// layers; a bound to be narrowed with the measured figure the test prints). The share of greedy
// tokens the dynamic decoding agrees on is printed, not required (near-ties can flip in fp16).
// Returns the fused-GEMV products counted while building the graph (warm-up and capture).
int64_t check_static_decode_cuda(const Model& m, const std::string& what) {
  torch::NoGradGuard ng;
  constexpr int64_t P = 16, steps = 32, cap = 64;
  int64_t fused = 0;
  for (int64_t B : {1, 4}) {
    torch::manual_seed(7);
    const torch::Tensor prompt = torch::randint(m.config().vocab_size, {B, P}, torch::kLong).cuda();
    StaticDecoder eager(m, B, cap, false), graph(m, B, cap, true);
    const torch::Tensor f_e = eager.prefill(prompt), f_g = graph.prefill(prompt);
    EXPECT_TRUE(torch::equal(f_e, f_g)) << what;
    const int64_t calls0 = Model::fused_gemv_calls();
    graph.capture();
    fused += Model::fused_gemv_calls() - calls0;
    if (!graph.captured()) {
      ADD_FAILURE() << what << ": no graph after capture()";
      return fused;
    }
    std::vector<torch::Tensor> le, lg;
    for (int64_t s = 0; s < steps; ++s) {
      le.push_back(eager.step().clone());
      graph.replay(1);
      lg.push_back(graph.logits().clone());
    }
    const torch::Tensor Le = torch::cat(le, 1), Lg = torch::cat(lg, 1);  // [B, steps, V]
    const torch::Tensor te = eager.tokens(), tg = graph.tokens();
    EXPECT_EQ(tg.sizes(), (std::vector<int64_t>{B, P + steps + 1})) << what;
    EXPECT_TRUE(torch::equal(te, tg)) << what << " B=" << B << ": graph replay tokens differ from the eager static steps";
    // The dynamic cache, teacher-forced with the static decoder's tokens.
    KVCache cache;
    std::vector<torch::Tensor> ld;
    const torch::Tensor tcuda = te.cuda();
    const torch::Tensor first_dyn = m.forward(prompt, &cache).select(1, P - 1).argmax(-1);
    int64_t agree = torch::equal(first_dyn, f_e) ? 1 : 0;
    for (int64_t s = 0; s < steps; ++s) {
      const torch::Tensor lgd = m.forward(tcuda.slice(1, P + s, P + s + 1), &cache);
      agree += torch::equal(lgd.select(1, 0).argmax(-1), tcuda.select(1, P + s + 1)) ? 1 : 0;
      ld.push_back(lgd);
    }
    const torch::Tensor Ld = torch::cat(ld, 1);
    const double top = Ld.abs().max().item<double>();
    const double d_ge = (Lg - Le).abs().max().item<double>(), d_ed = (Le - Ld).abs().max().item<double>();
    std::printf("  %s B=%lld: max |logit graph - eager static| %.3g, |eager static - dynamic| %.3g (max |logit| %.3g); "
                "dynamic greedy agrees on %lld of %lld tokens\n",
                what.c_str(), static_cast<long long>(B), d_ge, d_ed, top, static_cast<long long>(agree),
                static_cast<long long>(steps + 1));
    EXPECT_LE(d_ge, std::ldexp(top, -9)) << what << " B=" << B;
    EXPECT_LE(d_ed, std::ldexp(top, -6)) << what << " B=" << B;
  }
  return fused;
}

TEST(StaticDecodeCuda, Llama14mFloat16GraphMatchesEagerAndDynamic) {
  RAZERQ_REQUIRE_CUDA();
  RAZERQ_REQUIRE_DATA(kLlama14m);
  const Model m = Model::load(test::data_path(kLlama14m), cuda_opts(torch::kFloat16));
  check_static_decode_cuda(m, "llama-14m fp16");
}

// The packed checkpoint: every linear of the captured step runs the fused GEMV on the packed
// weights (on the capture stream; 4 products per layer and step: q/k/v, o, gate/up, down), the
// graph replays them.
TEST_F(EvalGpuPackedRazer4, StaticDecodeGraphMatchesEagerAndDynamic) {
  const Model m = Model::load(dir_, cuda_opts(torch::kFloat16));
  ASSERT_EQ(m.fused_gemv_tensors(), 56);
  const int64_t fused = check_static_decode_cuda(m, "razer4 fp16");
  EXPECT_GT(fused, 0) << "the captured step did not run the fused GEMV";
  EXPECT_EQ(fused % (4 * m.num_layers()), 0);
}

// Replays two captured static decoders (dk: the step under test, dl: the reference) one step at a
// time for `steps` steps after a P-token prompt and compares them: the logits within 2^-tol_exp of
// the largest reference logit up to and including the first step whose greedy token differs, and
// a token difference only where the reference's top two logits are within twice that bound.
// Prints the measured figures.
void compare_replays(StaticDecoder& dk, StaticDecoder& dl, int64_t B, int64_t P, int64_t steps, int tol_exp,
                     const std::string& what) {
  std::vector<torch::Tensor> lk, ll;
  for (int64_t s = 0; s < steps; ++s) {
    dk.replay(1);
    dl.replay(1);
    lk.push_back(dk.logits().clone());
    ll.push_back(dl.logits().clone());
  }
  const torch::Tensor Lk = torch::cat(lk, 1).cpu(), Ll = torch::cat(ll, 1).cpu();  // [B, steps, V]
  const torch::Tensor tk = dk.tokens(), tl = dl.tokens();                          // [B, P + steps + 1]
  ASSERT_EQ(tk.sizes(), tl.sizes()) << what;
  const double top = Ll.abs().max().item<double>(), tol = std::ldexp(top, -tol_exp);
  double worst = 0;
  int64_t same_rows = 0, compared = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t first = steps;  // the first step whose greedy token differs
    for (int64_t s = 0; s < steps; ++s)
      if (tk[b][P + 1 + s].item<int64_t>() != tl[b][P + 1 + s].item<int64_t>()) {
        first = s;
        break;
      }
    same_rows += first == steps;
    for (int64_t s = 0; s <= std::min(first, steps - 1); ++s) {
      worst = std::max(worst, (Lk[b][s] - Ll[b][s]).abs().max().item<double>());
      ++compared;
    }
    if (first < steps) {
      const torch::Tensor top2 = std::get<0>(Ll[b][first].topk(2));
      const double gap = (top2[0] - top2[1]).item<double>();
      std::printf("  %s B=%lld row %lld: tokens part at step %lld (reference top-2 gap %.4g)\n", what.c_str(),
                  static_cast<long long>(B), static_cast<long long>(b), static_cast<long long>(first), gap);
      EXPECT_LE(gap, 2 * tol) << what << " B=" << B << " row " << b << ": tokens differ at step " << first
                              << " where the reference logits are no near-tie";
    }
  }
  std::printf("  %s B=%lld: max |logit - reference| %.3g over %lld row-steps (max |logit| %.3g, bound %.3g); "
              "%lld of %lld rows decode the same %lld tokens\n",
              what.c_str(), static_cast<long long>(B), worst, static_cast<long long>(compared), top, tol,
              static_cast<long long>(same_rows), static_cast<long long>(B), static_cast<long long>(steps));
  EXPECT_LE(worst, tol) << what << " B=" << B;
  EXPECT_GT(compared, 0) << what;
}

// The static decode step through the decode kernels (ModelOptions::fused_decode_ops, the default:
// kernels/cuda/decode_ops_cuda.hpp) against the same step through libtorch's ops, both replayed
// from CUDA graphs: B = 1 and 4, a random 16-token prompt, 48 steps, capacity 72. The two compute
// the same arithmetic, rounded at the same places, except attention (ours: split-K over slots
// 0 .. pos with fp32 scores, softmax and sums; libtorch: the memory-efficient SDPA kernel over the
// masked capacity) and the fp32 summation order of the norms: logits within 2^-tol_exp of the
// largest logit (fp16: 2^-6, the bound of static vs dynamic decoding above, whose attention
// kernels differ the same way; bf16: 2^-3, three fewer mantissa bits). Tokens: every row decodes
// the same greedy tokens, or parts where the libtorch step's top two logits are within twice that
// bound (a near-tie that either order may break); logits are compared up to and including the
// first step whose token differs (later steps see different inputs). Prints the measured figures.
void check_decode_kernels_match_libtorch(const std::string& dir, torch::ScalarType dt, int tol_exp, const std::string& what) {
  torch::NoGradGuard ng;
  ModelOptions ok = cuda_opts(dt), ol = cuda_opts(dt);
  ok.device = torch::Device(torch::kCUDA);  // no index, as `--device cuda` gives (its buffers are on cuda:0)
  ol.fused_decode_ops = false;
  const Model mk = Model::load(dir, ok), ml = Model::load(dir, ol);
  ASSERT_TRUE(mk.decode_kernels()) << what << ": " << mk.describe();
  ASSERT_FALSE(ml.decode_kernels()) << what;
  constexpr int64_t P = 16, steps = 48, cap = 72;
  for (int64_t B : {1, 4}) {
    torch::manual_seed(11);
    const torch::Tensor prompt = torch::randint(mk.config().vocab_size, {B, P}, torch::kLong).cuda();
    StaticDecoder dk(mk, B, cap, true), dl(ml, B, cap, true);
    EXPECT_TRUE(torch::equal(dk.prefill(prompt), dl.prefill(prompt))) << what << ": the prefill is the same eager forward";
    const int64_t k0 = Model::decode_kernel_steps();
    dk.capture();
    const int64_t k1 = Model::decode_kernel_steps();
    dl.capture();
    EXPECT_GT(k1, k0) << what << ": the captured step did not run the decode kernels";
    EXPECT_EQ(Model::decode_kernel_steps(), k1) << what << ": the libtorch model ran the decode kernels";
    compare_replays(dk, dl, B, P, steps, tol_exp, what);
  }
}

TEST(StaticDecodeCuda, Llama14mDecodeKernelsMatchLibtorchOps) {
  RAZERQ_REQUIRE_CUDA();
  RAZERQ_REQUIRE_DATA(kLlama14m);
  check_decode_kernels_match_libtorch(test::data_path(kLlama14m), torch::kFloat16, 6, "llama-14m fp16");
  check_decode_kernels_match_libtorch(test::data_path(kLlama14m), torch::kBFloat16, 3, "llama-14m bf16");
}

// The packed checkpoint: the products run the fused GEMV in both (same Linear calls).
TEST_F(EvalGpuPackedRazer4, DecodeKernelsMatchLibtorchOps) {
  check_decode_kernels_match_libtorch(dir_, torch::kFloat16, 6, "razer4 fp16");
}

// The gate/up product's SiLU epilogue (ModelOptions::silu_epilogue, the default) against the
// product followed by the SiLU kernel: graph-replayed logits and greedy tokens equal bit for bit
// at B = 1, 4 and 16 (llama-14m's gate/up product has no split tail, kernels/cuda/gemv_cuda.hpp).
TEST_F(EvalGpuPackedRazer4, SiluEpilogueEqualsSeparateSiluKernel) {
  torch::NoGradGuard ng;
  ModelOptions oe = cuda_opts(torch::kFloat16), os = cuda_opts(torch::kFloat16);
  ASSERT_TRUE(oe.silu_epilogue) << "the epilogue is the default";
  os.silu_epilogue = false;
  const Model me = Model::load(dir_, oe), ms = Model::load(dir_, os);
  ASSERT_TRUE(me.decode_kernels());
  for (int64_t B : {1, 4, 16}) {
    torch::manual_seed(5);
    const torch::Tensor prompt = torch::randint(me.config().vocab_size, {B, 16}, torch::kLong).cuda();
    StaticDecoder de(me, B, 64, true), ds(ms, B, 64, true);
    EXPECT_TRUE(torch::equal(de.prefill(prompt), ds.prefill(prompt))) << "B=" << B;
    const int64_t e0 = Model::silu_epilogue_calls();
    de.capture();
    const int64_t e1 = Model::silu_epilogue_calls();
    ds.capture();
    EXPECT_GT(e1, e0) << "B=" << B << ": the captured step did not run the SiLU epilogue";
    EXPECT_EQ((e1 - e0) % me.num_layers(), 0) << "B=" << B << ": one epilogue product per layer and step";
    EXPECT_EQ(Model::silu_epilogue_calls(), e1) << "B=" << B << ": silu_epilogue = false ran the epilogue";
    int64_t equal = 0;
    constexpr int64_t kSteps = 32;
    for (int64_t s = 0; s < kSteps; ++s) {
      de.replay(1);
      ds.replay(1);
      equal += torch::equal(de.logits(), ds.logits());
    }
    EXPECT_EQ(equal, kSteps) << "B=" << B << ": steps with bit-equal logits";
    EXPECT_TRUE(torch::equal(de.tokens(), ds.tokens())) << "B=" << B;
  }
}

// The norm epilogues (ModelOptions::norm_epilogue, off by default) against the norm kernels
// between the products (the default), both graph-replayed: B = 1, 4 and 8 take them (4 L - 2
// products per step: the o and gate/up products of every layer, q/k/v and down of all but the
// first and the last), B = 16 does not (M > 8). The normalisation enters after the product instead
// of before x's rounding, so logits within 2^-6 of the largest (the bound of the kernels against
// libtorch's ops above) and tokens as there.
TEST_F(EvalGpuPackedRazer4, NormEpilogueWithinBoundOfNormKernels) {
  torch::NoGradGuard ng;
  ModelOptions oe = cuda_opts(torch::kFloat16), os = cuda_opts(torch::kFloat16);
  ASSERT_FALSE(os.norm_epilogue) << "the norm kernels are the default";
  oe.norm_epilogue = true;
  const Model me = Model::load(dir_, oe), ms = Model::load(dir_, os);
  ASSERT_TRUE(me.decode_kernels());
  const int64_t per_step = 4 * me.num_layers() - 2;
  constexpr int64_t P = 16, steps = 32;
  for (int64_t B : {1, 4, 8, 16}) {
    torch::manual_seed(7);
    const torch::Tensor prompt = torch::randint(me.config().vocab_size, {B, P}, torch::kLong).cuda();
    StaticDecoder de(me, B, P + steps + 8, true), ds(ms, B, P + steps + 8, true);
    EXPECT_TRUE(torch::equal(de.prefill(prompt), ds.prefill(prompt))) << "B=" << B;
    const int64_t n0 = Model::norm_epilogue_calls();
    de.capture();
    const int64_t n1 = Model::norm_epilogue_calls();
    ds.capture();
    EXPECT_EQ(Model::norm_epilogue_calls(), n1) << "B=" << B << ": norm_epilogue = false ran the epilogues";
    if (B <= 8) {
      EXPECT_GT(n1, n0) << "B=" << B << ": the captured step did not run the norm epilogues";
      EXPECT_EQ((n1 - n0) % per_step, 0) << "B=" << B << ": " << n1 - n0 << " epilogue products";
    } else {
      EXPECT_EQ(n1, n0) << "B=" << B << ": M > 8 ran the norm epilogues";
    }
    compare_replays(de, ds, B, P, steps, 6, "razer4 fp16 norm epilogues");
  }
}

TEST(EvalGpuStories260K, Greedy200OnCuda) {
  RAZERQ_REQUIRE_CUDA();
  RAZERQ_REQUIRE_DATA(kStories);
  RAZERQ_REQUIRE_DATA(kGreedy);
  const Model model = Model::load(test::data_path(kStories), cuda_opts(torch::kFloat32));
  KVCache cache;
  std::vector<int32_t> out;
  int64_t token = 1;
  for (int step = 0; step < 200; ++step) {
    const torch::Tensor logits = model.forward(torch::tensor({{token}}).cuda(), &cache);
    const int64_t next = logits[0][0].argmax().item<int64_t>();
    if (next == 1) break;
    out.push_back(static_cast<int32_t>(next));
    token = next;
  }
  const std::unique_ptr<calib::Tokenizer> tok = calib::load_tokenizer(test::data_path(kStories));
  EXPECT_EQ(tok->decode(out), read_file(test::data_path(kGreedy)));
}

}  // namespace
}  // namespace razerq::eval
