// razerq export --to gguf: block layouts against blocks computed by hand from ggml's spec,
// the RoPE row permutation against NumPy, round trips of every exact mapping on the real
// test models (quantized here), the tokenizer keys against independent copies of the
// vocabularies, the refusal without --requant and the reported --requant Q4_K error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "formats/export_gguf.hpp"
#include "formats/gguf_reader.hpp"
#include "formats/gguf_vocab.hpp"
#include "formats/packed_checkpoint.hpp"
#include "quantizer/pack.hpp"
#include "tests/formats/pack_test_util.hpp"
#include "tests/test_util.hpp"

namespace razerq::formats {
namespace {

namespace fs = std::filesystem;
using test::Contains;
using test::TempDir;
using json = nlohmann::json;

// ggml type ids (ggml.h), spelled out here.
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kMXFP4 = 39, kNVFP4 = 40;

std::string llama14m() { return test::data_path("models/llama-14m"); }
std::string stories() { return test::data_path("models/stories260K/hf"); }

std::string quantize(const std::string& model, const std::string& out, const char* fmt, int bits, int group, bool asym) {
  return test::quantize_packed(model, out, quantizer::make_format_config(fmt, bits, group, asym), {}, 2);
}

// ---- hand-computed blocks (ggml-common.h layouts, ggml-quants.c dequantize_row_*) ----

TEST(GgufBlocks, Q4_0) {
  uint8_t b[18] = {0x00, 0x38};  // d = fp16 0x3800 = 0.5
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  double y[32];
  gguf::decode_block(kQ4_0, b, y);
  EXPECT_EQ(y[0], -4.0);   // (0 - 8) * 0.5
  EXPECT_EQ(y[5], -1.5);   // (5 - 8) * 0.5
  EXPECT_EQ(y[15], 3.5);   // (15 - 8) * 0.5
  EXPECT_EQ(y[16], 3.5);   // high nibble of byte 0 = 15
  EXPECT_EQ(y[31], -4.0);  // high nibble of byte 15 = 0
}

TEST(GgufBlocks, Q4_1) {
  uint8_t b[20] = {0x00, 0x3C, 0x00, 0xC0};  // d = 1, m = -2
  for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | (j << 4));
  double y[32];
  gguf::decode_block(kQ4_1, b, y);
  EXPECT_EQ(y[0], -2.0);
  EXPECT_EQ(y[7], 5.0);
  EXPECT_EQ(y[16], -2.0);
  EXPECT_EQ(y[31], 13.0);
}

TEST(GgufBlocks, Q5_0) {
  uint8_t b[22] = {0x00, 0x34, 0x01, 0x00, 0x00, 0x80};  // d = 0.25, qh bits 0 and 31
  b[6 + 0] = 0x0F;
  b[6 + 15] = 0xF0;
  double y[32];
  gguf::decode_block(kQ5_0, b, y);
  EXPECT_EQ(y[0], 3.75);    // 15 | 16 = 31 -> (31 - 16) * 0.25
  EXPECT_EQ(y[15], -4.0);   // 0 -> -16 * 0.25
  EXPECT_EQ(y[16], -4.0);
  EXPECT_EQ(y[31], 3.75);   // high nibble 15 | qh bit 31
}

TEST(GgufBlocks, Q8_0) {
  uint8_t b[34] = {0x00, 0x40};  // d = 2
  for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  double y[32];
  gguf::decode_block(kQ8_0, b, y);
  EXPECT_EQ(y[0], -32.0);
  EXPECT_EQ(y[31], 30.0);
}

TEST(GgufBlocks, Q4_K) {
  // d = 1, dmin = 0.5; sub-block scales 1,2,3,4,33,34,35,63 and mins 0,1,2,3,16,17,18,63
  // packed by hand as get_scale_min_k4 reads them; every quant byte 0x5A (low 10, high 5).
  uint8_t b[144] = {0x00, 0x3C, 0x00, 0x38, 0x81, 0x82, 0x83, 0xC4, 0x40, 0x41, 0x42, 0xC3, 0x01, 0x12, 0x23, 0xFF};
  std::memset(b + 16, 0x5A, 128);
  double y[256];
  gguf::decode_block(kQ4_K, b, y);
  // sub-block i: d*sc*q - dmin*m, q = 10 for even i (low nibbles), 5 for odd i
  const double expect[8] = {10, 9.5, 29, 18.5, 322, 161.5, 341, 283.5};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(y[32 * i], expect[i]) << "sub-block " << i;
    EXPECT_EQ(y[32 * i + 31], expect[i]) << "sub-block " << i;
  }
}

TEST(GgufBlocks, MXFP4) {
  uint8_t b[17] = {130};  // 2^(130-127) = 8 on the E2M1 values
  for (int j = 0; j < 16; ++j) b[1 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  double y[32];
  gguf::decode_block(kMXFP4, b, y);
  const double e2m1[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, 0, -.5, -1, -1.5, -2, -3, -4, -6};
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 8 * e2m1[j]);
    EXPECT_EQ(y[j + 16], 8 * e2m1[15 - j]);
  }
}

TEST(GgufBlocks, NVFP4) {
  // UE4M3 sub-scales: 0x38 = 1, 0x08 = 2^-6, 0x01 = 2^-9 (subnormal), 0x7E = 448; codes 0x71:
  // element j of a sub-block = low nibble 1 (0.5), element j + 8 = high nibble 7 (6).
  uint8_t b[36] = {0x38, 0x08, 0x01, 0x7E};
  std::memset(b + 4, 0x71, 32);
  double y[64];
  gguf::decode_block(kNVFP4, b, y);
  const double sc[4] = {1, 1.0 / 64, 1.0 / 512, 448};
  for (int s = 0; s < 4; ++s)
    for (int j = 0; j < 8; ++j) {
      EXPECT_EQ(y[16 * s + j], 0.5 * sc[s]);
      EXPECT_EQ(y[16 * s + 8 + j], 6 * sc[s]);
    }
}

TEST(GgufBlocks, Fp16Values) {
  EXPECT_EQ(gguf::fp16_value(0x3C00), 1.0);
  EXPECT_EQ(gguf::fp16_value(0xC000), -2.0);
  EXPECT_EQ(gguf::fp16_value(0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(gguf::fp16_value(0x7BFF), 65504.0);
  EXPECT_TRUE(std::isinf(gguf::fp16_value(0x7C00)));
}

// ---- RoPE permutation ----

TEST(GgufRope, MatchesNumPy) {
  // convert_hf_to_gguf.py LlamaModel.permute, computed with NumPy:
  //   w.reshape(n_head, 2, w.shape[0] // n_head // 2).swapaxes(1, 2).reshape(w.shape)
  // on np.arange(rows): permute(arange(12), 2), permute(arange(16), n_head 8 -> n_head_kv 4),
  // permute(arange(24), 3).
  EXPECT_EQ(gguf_rope_row_order(12, 2), (std::vector<int64_t>{0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}));
  EXPECT_EQ(gguf_rope_row_order(16, 4), (std::vector<int64_t>{0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15}));
  EXPECT_EQ(gguf_rope_row_order(24, 3), (std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15, 16, 20,
                                                              17, 21, 18, 22, 19, 23}));
}

TEST(GgufNames, LlamaTensors) {
  EXPECT_EQ(gguf_tensor_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.3.self_attn.o_proj.weight"), "blk.3.attn_output.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.11.post_attention_layernorm.weight"), "blk.11.ffn_norm.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
  EXPECT_EQ(gguf_tensor_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq"), "");
  EXPECT_EQ(test::catch_error([] { gguf_tensor_name("model.layers.0.cross_attn.q.weight"); }).kind(),
            ErrorKind::kUnsupported);
}

// ---- round trips ----

struct Case {
  const char* fmt;
  int bits, group;
  bool asym;
  uint32_t type;  // expected GGUF type of the quantized tensors whose width fits the block
};

// Exports `packed`, then re-reads the file here (independently of the exporter's own check):
// every tensor of the checkpoint is present, quantized ones as `type` (or F32 when the width
// does not fit the block), and decodes to the float64 reference dequantization; Q/K rows in
// llama.cpp's RoPE order.
void check_round_trip(const std::string& packed, const std::string& out, uint32_t type) {
  const ExportReport rep = export_gguf(packed, out, {}, nullptr);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  const PackedCheckpoint ck = PackedCheckpoint::open(packed);
  // Everything is lossless except 2-D unquantized F32 tensors (stories260K's embedding), which
  // the default --dtype fp16 rounds, and says so.
  for (const TensorVerdict& v : rep.tensors) {
    const TensorRecord& r = ck.record(v.name);
    if (!r.quantized && r.shape.size() == 2 && r.source_dtype == "F32")
      EXPECT_TRUE(Contains(v.note, "F32 rounded to F16")) << v.name;
    else
      EXPECT_TRUE(v.lossless) << v.name << " " << v.note;
  }
  const gguf::File f = gguf::File::open(out);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("general.quantization_version"), 2);
  const json cfg = read_json_object(packed + "/config.json");
  const int64_t heads = cfg["num_attention_heads"], kv = cfg.value("num_key_value_heads", heads);
  int quantized = 0;
  for (const TensorRecord& r : ck.tensors()) {
    if (!r.quantized) continue;
    ++quantized;
    const std::string gname = gguf_tensor_name(r.name);
    const gguf::TensorInfo* t = f.find_tensor(gname);
    ASSERT_NE(t, nullptr) << gname;
    const int block = type == kNVFP4 ? 64 : 32;
    EXPECT_EQ(t->type, r.shape[1] % block == 0 ? type : kF32) << gname;
    ASSERT_EQ(t->ne.size(), 2u);
    EXPECT_EQ(t->ne[0], static_cast<uint64_t>(r.shape[1]));
    EXPECT_EQ(t->ne[1], static_cast<uint64_t>(r.shape[0]));
    double ts = 1;  // NVFP4 (also when written as F32): llama.cpp multiplies by "<name>.scale"
    const gguf::TensorInfo* st = f.find_tensor(gname.substr(0, gname.size() - 7) + ".scale");
    EXPECT_EQ(st != nullptr, type == kNVFP4) << gname;
    if (st) f.decode_row(*st, 0, &ts);
    const quantizer::QuantizedTensor q = ck.load_quantized(r.name);
    std::vector<double> ref(static_cast<size_t>(q.rows * q.cols)), row(static_cast<size_t>(q.cols));
    quantizer::dequantize_ref(q, ref.data());
    const bool is_q = gname.find("attn_q") != std::string::npos, is_k = gname.find("attn_k") != std::string::npos;
    const std::vector<int64_t> order =
        is_q || is_k ? gguf_rope_row_order(q.rows, is_q ? heads : kv) : std::vector<int64_t>();
    int64_t bad = 0;
    double max_dm = 0;
    for (int64_t g = 0; g < q.rows; ++g) {
      f.decode_row(*t, static_cast<uint64_t>(g), row.data());
      const int64_t src = order.empty() ? g : order[static_cast<size_t>(g)];
      for (int64_t k = 0; k < q.cols; ++k) {
        const double d = row[static_cast<size_t>(k)] * ts - ref[static_cast<size_t>(src * q.cols + k)];
        if (t->type == kQ4_1) max_dm = std::max(max_dm, std::fabs(d));  // m's fp16 rounding only
        else bad += d != 0;
      }
    }
    EXPECT_EQ(bad, 0) << gname;
    // Q4_1: the offset is m's rounding, below half an fp16 ulp of |m| <= 2^4 * 15 * d.
    EXPECT_LE(max_dm, 1e-3) << gname;
  }
  EXPECT_GT(quantized, 0);
}

class GgufRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(GgufRoundTrip, Llama14m) {
  const Case c = GetParam();
  TempDir tmp;
  check_round_trip(quantize(llama14m(), tmp.str("packed"), c.fmt, c.bits, c.group, c.asym), tmp.str("m.gguf"), c.type);
}

TEST_P(GgufRoundTrip, Stories260K) {
  const Case c = GetParam();
  TempDir tmp;
  check_round_trip(quantize(stories(), tmp.str("packed"), c.fmt, c.bits, c.group, c.asym), tmp.str("m.gguf"), c.type);
}

INSTANTIATE_TEST_SUITE_P(Exact, GgufRoundTrip,
                         ::testing::Values(Case{"int", 4, 128, false, kQ4_0}, Case{"int", 4, 32, false, kQ4_0},
                                           Case{"int", 3, 64, false, kQ4_0}, Case{"int", 4, 128, true, kQ4_1},
                                           Case{"int", 4, 64, true, kQ4_1}, Case{"int", 2, 32, true, kQ4_1},
                                           Case{"mxfp4", 4, 32, false, kMXFP4}, Case{"nvfp4", 4, 16, false, kNVFP4}),
                         [](const auto& i) {
                           return std::string(i.param.fmt == std::string("int") ? "int" : i.param.fmt) +
                                  std::to_string(i.param.bits) + (i.param.asym ? "asym" : "sym") + "g" +
                                  std::to_string(i.param.group);
                         });

// Writer bytes checked against the spec directly: the first Q4_0 block of a (not permuted)
// ffn_down row is the fp16 scale followed by codes j | code j+16 << 4.
TEST(GgufExport, Q4_0BytesFromSpec) {
  TempDir tmp;
  const std::string packed = quantize(llama14m(), tmp.str("p"), "int", 4, 64, false);
  export_gguf(packed, tmp.str("m.gguf"), {}, nullptr);
  const gguf::File f = gguf::File::open(tmp.str("m.gguf"));
  const gguf::TensorInfo* t = f.find_tensor("blk.2.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  const quantizer::QuantizedTensor q = PackedCheckpoint::open(packed).load_quantized("model.layers.2.mlp.down_proj.weight");
  const int64_t row = 5, bpr = q.cols / 32;
  for (int64_t blk : {int64_t(0), int64_t(1), int64_t(2), bpr - 1}) {
    const uint8_t* b = f.data(*t) + (row * bpr + blk) * 18;
    const uint16_t d = q.scales16[static_cast<size_t>(row * q.groups_per_row + blk * 32 / 64)];
    EXPECT_EQ(b[0] | (b[1] << 8), d);
    for (int j = 0; j < 16; ++j) {
      const uint32_t lo = quantizer::unpack_one(&q.codes[static_cast<size_t>(row * q.code_words_per_row)], blk * 32 + j, 4);
      const uint32_t hi = quantizer::unpack_one(&q.codes[static_cast<size_t>(row * q.code_words_per_row)], blk * 32 + j + 16, 4);
      EXPECT_EQ(b[2 + j], lo | (hi << 4));
    }
  }
}

TEST(GgufExport, MetadataOfLlama14m) {
  TempDir tmp;
  const std::string packed = quantize(llama14m(), tmp.str("p"), "int", 4, 128, false);
  export_gguf(packed, tmp.str("m.gguf"), {}, nullptr);
  const gguf::File f = gguf::File::open(tmp.str("m.gguf"));
  EXPECT_EQ(f.get_int("llama.block_count"), 8);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 384);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 1024);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 6);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 6);
  EXPECT_EQ(f.get_int("llama.rope.dimension_count"), 64);
  EXPECT_EQ(f.get_int("llama.context_length"), 2048);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.rope.freq_base")), 10000.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(f.get_int("general.file_type"), 2);  // LLAMA_FTYPE_MOSTLY_Q4_0
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  ASSERT_NE(f.find("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->elems.size(), 512u);
  EXPECT_EQ(f.find("tokenizer.ggml.scores")->elems.size(), 512u);
  EXPECT_EQ(f.find("tokenizer.ggml.token_type")->elem_type, gguf::ValueType::kI32);
  EXPECT_EQ(f.find_tensor("output.weight")->type, kF16);  // lm_head kept, F16 as in the source
  EXPECT_EQ(f.find_tensor("token_embd.weight")->type, kF16);
  EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, kF32);
  EXPECT_EQ(f.tensors().size(), 75u);
}

// The sentencepiece vocabulary against llama2.c's tok512.bin, an independent export of the
// same model (tokenizer.py: score, then the piece with U+2581 as ' ', <s>/</s> as "\n<s>\n").
TEST(GgufVocab, SentencepieceMatchesLlama2cExport) {
  const GgufVocab v = read_gguf_vocab(stories(), 512);
  std::ifstream in(test::data_path("models/stories260K/llama2c/tok512.bin"), std::ios::binary);
  ASSERT_TRUE(in.good());
  int32_t max_len = 0;
  in.read(reinterpret_cast<char*>(&max_len), 4);
  ASSERT_EQ(v.tokens.size(), 512u);
  for (size_t i = 0; i < 512; ++i) {
    float score = 0;
    int32_t len = 0;
    in.read(reinterpret_cast<char*>(&score), 4);
    in.read(reinterpret_cast<char*>(&len), 4);
    std::string text(static_cast<size_t>(len), '\0');
    in.read(text.data(), len);
    ASSERT_TRUE(in.good()) << i;
    std::string expect = v.tokens[i];
    for (size_t p; (p = expect.find("\xe2\x96\x81")) != std::string::npos;) expect.replace(p, 3, " ");
    if (i == 1) expect = "\n<s>\n";
    if (i == 2) expect = "\n</s>\n";
    EXPECT_EQ(text, expect) << "token " << i;
    EXPECT_EQ(score, v.scores[i]) << "token " << i;
  }
  EXPECT_EQ(v.types[0], kTokUnknown);
  EXPECT_EQ(v.types[1], kTokControl);
  EXPECT_EQ(v.types[3], kTokByte);  // <0x00>
  EXPECT_EQ(v.tokens[3], "<0x00>");
  EXPECT_EQ(v.add_bos, 1);  // tokenizer_config.json
  EXPECT_EQ(v.add_eos, 0);
}

// Byte-level BPE: GPT-2's tokenizer.json against its vocab.json and merges.txt.
TEST(GgufVocab, BpeMatchesGpt2Files) {
  const std::string dir = test::data_path("tokenizers/gpt2");
  const GgufVocab v = read_gguf_vocab(dir, 50257);
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "gpt-2");
  const json vocab = read_json_object(dir + "/vocab.json");
  ASSERT_EQ(v.tokens.size(), vocab.size());
  for (const auto& [text, id] : vocab.items()) ASSERT_EQ(v.tokens[id.get<size_t>()], text);
  std::ifstream m(dir + "/merges.txt");
  std::string line;
  std::vector<std::string> merges;
  while (std::getline(m, line))
    if (!line.empty() && line.rfind("#version", 0) != 0) merges.push_back(line);
  EXPECT_EQ(v.merges, merges);
  EXPECT_EQ(v.types[50256], kTokControl);
  EXPECT_EQ(v.types[0], kTokNormal);
  EXPECT_EQ(v.bos, 50256);
  EXPECT_EQ(v.eos, 50256);
}

TEST(GgufVocab, MalformedSentencepiece) {
  const Error e = test::catch_error([] { parse_sentencepiece_model(std::string("\x0a\xff\xff", 3), "x.model"); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_TRUE(Contains(e.what(), "x.model"));
}

// ---- refusal and re-quantization ----

TEST(GgufExport, RefusesFormatsWithoutExactType) {
  TempDir tmp;
  for (const char* fmt : {"razer", "nf4"}) {
    const std::string packed = quantize(stories(), tmp.str(std::string("p_") + fmt), fmt, 0, 0, false);
    const std::string out = tmp.str(std::string(fmt) + ".gguf");
    const Error e = test::catch_error([&] { export_gguf(packed, out, {}, nullptr); });
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_TRUE(Contains(e.what(), "no exact GGUF type"));
    EXPECT_TRUE(Contains(e.what(), std::string(fmt) == "razer" ? "razer4/g128" : "nf4/g64"));
    EXPECT_TRUE(Contains(e.what(), "-> Q4_0"));
    EXPECT_TRUE(Contains(e.what(), "mxfp4 -> MXFP4"));
    EXPECT_TRUE(Contains(e.what(), "nvfp4 -> NVFP4"));
    EXPECT_TRUE(Contains(e.what(), "--requant Q4_K"));
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".partial"));
  }
}

TEST(GgufExport, RequantQ4_KReportsItsError) {
  TempDir tmp;
  const std::string packed = quantize(llama14m(), tmp.str("p"), "razer", 4, 128, false);
  GgufExportOptions opt;
  opt.requant = "Q4_K";
  const ExportReport rep = export_gguf(packed, tmp.str("m.gguf"), opt, nullptr);
  const PackedCheckpoint ck = PackedCheckpoint::open(packed);
  const gguf::File f = gguf::File::open(tmp.str("m.gguf"));
  int q4k = 0, q50 = 0;
  for (const TensorVerdict& v : rep.tensors) {
    const TensorRecord& r = ck.record(v.name);
    if (!r.quantized) {
      EXPECT_TRUE(v.lossless) << v.name;
      continue;
    }
    EXPECT_FALSE(v.lossless) << v.name;
    EXPECT_TRUE(Contains(v.note, "re-quantized")) << v.note;
    // llama-14m: K = 1024 (ffn_down) takes Q4_K, K = 384 falls back to Q5_0 as llama-quantize does.
    const uint32_t want = r.shape[1] % 256 == 0 ? kQ4_K : kQ5_0;
    const gguf::TensorInfo* t = f.find_tensor(v.target_name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, want) << v.target_name;
    (want == kQ4_K ? q4k : q50)++;
    // The reported error, recomputed here from the file and the reference dequantization.
    const quantizer::QuantizedTensor q = ck.load_quantized(r.name);
    std::vector<double> ref(static_cast<size_t>(q.rows * q.cols)), row(static_cast<size_t>(q.cols));
    quantizer::dequantize_ref(q, ref.data());
    const bool is_q = v.target_name.find("attn_q") != std::string::npos, is_k = v.target_name.find("attn_k") != std::string::npos;
    const std::vector<int64_t> order = is_q || is_k ? gguf_rope_row_order(q.rows, 6) : std::vector<int64_t>();
    double sse = 0, ssq = 0;
    for (int64_t g = 0; g < q.rows; ++g) {
      f.decode_row(*t, static_cast<uint64_t>(g), row.data());
      const int64_t src = order.empty() ? g : order[static_cast<size_t>(g)];
      for (int64_t k = 0; k < q.cols; ++k) {
        const double y = ref[static_cast<size_t>(src * q.cols + k)];
        sse += (row[static_cast<size_t>(k)] - y) * (row[static_cast<size_t>(k)] - y);
        ssq += y * y;
      }
    }
    EXPECT_NEAR(v.rel_err, std::sqrt(sse / ssq), 1e-12) << v.target_name;
    // 4-5 bit re-quantization of 4-bit values: a few percent, not garbage.
    EXPECT_GT(v.rel_err, 0.005) << v.target_name;
    EXPECT_LT(v.rel_err, want == kQ4_K ? 0.12 : 0.06) << v.target_name;
  }
  EXPECT_EQ(q4k, 8);
  EXPECT_EQ(q50, 48);
  EXPECT_EQ(f.get_int("general.file_type"), 14);  // LLAMA_FTYPE_MOSTLY_Q4_K_S: the requested type
}

TEST(GgufExport, ExistingOutputNeedsForce) {
  TempDir tmp;
  const std::string packed = quantize(stories(), tmp.str("p"), "mxfp4", 4, 32, false);
  std::ofstream(tmp.str("m.gguf")) << "x";
  const Error e = test::catch_error([&] { export_gguf(packed, tmp.str("m.gguf"), {}, nullptr); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "--force"));
  GgufExportOptions opt;
  opt.force = true;
  export_gguf(packed, tmp.str("m.gguf"), opt, nullptr);
  EXPECT_GT(fs::file_size(tmp.str("m.gguf")), 1000u);
}

TEST(GgufReader, RejectsTruncatedAndForeignFiles) {
  TempDir tmp;
  std::ofstream(tmp.str("a.gguf"), std::ios::binary) << std::string("GGML") + std::string(40, '\0');
  EXPECT_TRUE(Contains(test::catch_error([&] { gguf::File::open(tmp.str("a.gguf")); }).what(), "not a GGUF file"));
  const std::string packed = quantize(stories(), tmp.str("p"), "int", 4, 32, false);
  export_gguf(packed, tmp.str("m.gguf"), {}, nullptr);
  const auto size = fs::file_size(tmp.str("m.gguf"));
  fs::resize_file(tmp.str("m.gguf"), size - 100);
  const Error e = test::catch_error([&] { gguf::File::open(tmp.str("m.gguf")); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_TRUE(Contains(e.what(), "runs past the end"));
}

}  // namespace
}  // namespace razerq::formats
