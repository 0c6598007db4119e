// SafetensorsFile / SafetensorsWriter: round trips, dtype conversions, and one test per
// kind of malformed file (each built by hand and checked for error kind and message).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/half.hpp"
#include "formats/safetensors.hpp"
#include "tests/test_util.hpp"

namespace razerq::formats {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// ---- helpers ---------------------------------------------------------------------------

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file assembled from a header text and a data section.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  write_bytes(path, le64(header.size()) + header + data);
}

template <typename T>
std::string as_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

using test::catch_error;
using test::Contains;

// Opening `path` must fail as malformed input, naming the file and every string of `parts`.
void expect_malformed(const std::string& path, const std::vector<std::string>& parts) {
  Error e = catch_error([&] { SafetensorsFile::open(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput) << e.what();
  EXPECT_TRUE(Contains(e.what(), path));
  for (const auto& p : parts) EXPECT_TRUE(Contains(e.what(), p));
}

// A valid two-tensor layout: 'alpha' F16 [2, 3] at [0, 12), 'beta' F32 [2] at [12, 20).
const std::string kData(20, '\x01');
std::string header_with(const std::string& alpha, const std::string& beta) {
  return "{\"alpha\":" + alpha + ",\"beta\":" + beta + "}";
}
const std::string kAlpha = R"({"dtype":"F16","shape":[2,3],"data_offsets":[0,12]})";
const std::string kBeta = R"({"dtype":"F32","shape":[2],"data_offsets":[12,20]})";

// ---- dtypes ----------------------------------------------------------------------------

TEST(SafetensorsDType, NamesSizesAndParsingRoundTrip) {
  const std::vector<std::pair<DType, size_t>> all = {
      {DType::kBool, 1}, {DType::kU8, 1},     {DType::kI8, 1},    {DType::kU16, 2},
      {DType::kI16, 2},  {DType::kF16, 2},    {DType::kBF16, 2},  {DType::kU32, 4},
      {DType::kI32, 4},  {DType::kF32, 4},    {DType::kU64, 8},   {DType::kI64, 8},
      {DType::kF64, 8},  {DType::kF8E4M3, 1}, {DType::kF8E5M2, 1}};
  for (const auto& [d, size] : all) {
    EXPECT_EQ(dtype_size(d), size) << dtype_name(d);
    EXPECT_EQ(parse_dtype(dtype_name(d), "test"), d) << dtype_name(d);
  }
  EXPECT_STREQ(dtype_name(DType::kBF16), "BF16");
  EXPECT_STREQ(dtype_name(DType::kF8E4M3), "F8_E4M3");
  EXPECT_STREQ(dtype_name(DType::kBool), "BOOL");
}

TEST(SafetensorsDType, UnknownSpellingListsExpected) {
  Error e = catch_error([] { parse_dtype("f16", "somewhere.safetensors"); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_EQ(e.where(), "somewhere.safetensors");
  EXPECT_TRUE(Contains(e.what(), "'f16'"));
  EXPECT_TRUE(Contains(e.what(), "F16, BF16"));
  EXPECT_TRUE(Contains(e.what(), "F8_E5M2"));
}

// ---- round trips -----------------------------------------------------------------------

TEST(Safetensors, WriterReaderRoundTripAllDtypesWithMetadata) {
  TempDir td;
  const std::string path = td.str("rt.safetensors");
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-20f};
  const std::vector<uint16_t> f16 = {float_to_fp16(1.0f), float_to_fp16(-0.5f),
                                     float_to_fp16(65504.0f), float_to_fp16(1e-6f)};
  const std::vector<uint16_t> bf16 = {float_to_bf16(3.14159f), float_to_bf16(-1e30f),
                                      float_to_bf16(7.0f)};
  const std::vector<uint8_t> u8 = {0, 1, 127, 128, 255};
  const std::vector<int32_t> i32 = {-2147483647 - 1, -1, 0, 2147483647};
  const std::vector<uint32_t> u32 = {0u, 1u, 4294967295u};
  const std::vector<float> scalar = {42.0f};
  const std::map<std::string, std::string> md = {{"format", "pt"},
                                                 {"razerq.note", "round trip \xc3\xa9"}};

  {
    SafetensorsWriter w(path);
    w.set_metadata(md);
    w.add("w.f32", DType::kF32, {2, 3}, f32.data(), f32.size() * 4);
    w.add("w.f16", DType::kF16, {4}, f16.data(), f16.size() * 2);
    w.add("w.bf16", DType::kBF16, {1, 3}, bf16.data(), bf16.size() * 2);
    w.add("w.u8", DType::kU8, {5}, u8.data(), u8.size());
    w.add("w.empty", DType::kF32, {0, 7}, nullptr, 0);
    w.add("w.i32", DType::kI32, {2, 2}, i32.data(), i32.size() * 4);
    w.add("w.u32", DType::kU32, {3}, u32.data(), u32.size() * 4);
    w.add("w.scalar", DType::kF32, {}, scalar.data(), 4);
    w.finish();
    EXPECT_FALSE(fs::exists(w.tmp_path()));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }

  // Layout: u64 LE header length, a multiple of 8, header padded with spaces, then the data.
  const std::string raw = read_bytes(path);
  ASSERT_GE(raw.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);
  const size_t data_bytes = 24 + 8 + 6 + 5 + 0 + 16 + 12 + 4;
  EXPECT_EQ(raw.size(), 8 + n + data_bytes);
  EXPECT_EQ(raw[8], '{');

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), md);
  EXPECT_EQ(f.header_size(), n);
  ASSERT_EQ(f.tensors().size(), 8u);
  // Data-offset order equals add() order here; the empty tensor sorts by its offset.
  const std::vector<std::string> order = {"w.f32",   "w.f16", "w.bf16", "w.u8",
                                          "w.empty", "w.i32", "w.u32",  "w.scalar"};
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(f.tensors()[i].name, order[i]);

  auto check = [&](const std::string& name, DType dtype, std::vector<int64_t> shape,
                   const std::string& bytes) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.has(name));
    const TensorInfo& t = f.info(name);
    EXPECT_EQ(t.dtype, dtype);
    EXPECT_EQ(t.shape, shape);
    EXPECT_EQ(t.nbytes(), bytes.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes()), bytes);
  };
  check("w.f32", DType::kF32, {2, 3}, as_bytes(f32));
  check("w.f16", DType::kF16, {4}, as_bytes(f16));
  check("w.bf16", DType::kBF16, {1, 3}, as_bytes(bf16));
  check("w.u8", DType::kU8, {5}, as_bytes(u8));
  check("w.empty", DType::kF32, {0, 7}, "");
  check("w.i32", DType::kI32, {2, 2}, as_bytes(i32));
  check("w.u32", DType::kU32, {3}, as_bytes(u32));
  check("w.scalar", DType::kF32, {}, as_bytes(scalar));
  EXPECT_EQ(f.info("w.scalar").numel(), 1);
  EXPECT_EQ(f.info("w.empty").numel(), 0);
  EXPECT_EQ(f.read_float("w.f32"), f32);
  EXPECT_FALSE(f.has("w.missing"));
}

TEST(Safetensors, WriterProducesTheReferenceByteLayout) {
  // Byte for byte what the reference (Rust) writer produces for this input: metadata
  // first, compact JSON, padded with spaces to a multiple of 8.
  TempDir td;
  const std::string path = td.str("exact.safetensors");
  const float one = 1.0f;
  {
    SafetensorsWriter w(path);
    w.set_metadata({{"k", "v"}});
    w.add("a", DType::kF32, {1}, &one, 4);
    w.finish();
  }
  const std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} )";
  ASSERT_EQ(header.size(), 80u);
  EXPECT_EQ(read_bytes(path), le64(80) + header + std::string("\x00\x00\x80\x3f", 4));
}

TEST(Safetensors, EmptyWriterGivesAValidEmptyFile) {
  TempDir td;
  const std::string path = td.str("empty.safetensors");
  {
    SafetensorsWriter w(path);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_EQ(f.file_size(), 16u);  // 8 + "{}" padded to 8
}

TEST(Safetensors, ReadFloatF16MatchesHalfConversions) {
  TempDir td;
  const std::string path = td.str("f16.safetensors");
  // 1, -2, smallest subnormal, largest subnormal, 65504, 1/3, -0, +inf, -inf
  const std::vector<uint16_t> bits = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff,
                                      0x3555, 0x8000, 0x7c00, 0xfc00};
  const std::vector<uint16_t> nan = {0x7e00};
  {
    SafetensorsWriter w(path);
    w.add("h", DType::kF16, {3, 3}, bits.data(), bits.size() * 2);
    w.add("nan", DType::kF16, {1}, nan.data(), 2);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  const std::vector<float> got = f.read_float("h");
  std::vector<double> got_d(bits.size());
  f.read_double(f.info("h"), got_d.data());
  ASSERT_EQ(got.size(), bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    EXPECT_EQ(float_bits(got[i]), float_bits(fp16_to_float(bits[i])))
        << "bits 0x" << std::hex << bits[i];
    EXPECT_EQ(got_d[i], fp16_to_double(bits[i])) << "bits 0x" << std::hex << bits[i];
  }
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(got[7]) && got[7] > 0);
  EXPECT_TRUE(std::isnan(f.read_float("nan")[0]));
}

TEST(Safetensors, ReadFloatBF16MatchesHalfConversions) {
  TempDir td;
  const std::string path = td.str("bf16.safetensors");
  const std::vector<float> src = {1.0f, -3.14159f, 1e-30f, 3e38f, 0.1f, -0.0f, 65504.5f};
  std::vector<uint16_t> bits;
  for (float v : src) bits.push_back(float_to_bf16(v));
  {
    SafetensorsWriter w(path);
    w.add("b", DType::kBF16, {static_cast<int64_t>(bits.size())}, bits.data(), bits.size() * 2);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  const std::vector<float> got = f.read_float("b");
  std::vector<double> got_d(bits.size());
  f.read_double(f.info("b"), got_d.data());
  for (size_t i = 0; i < bits.size(); ++i) {
    EXPECT_EQ(float_bits(got[i]), float_bits(bf16_to_float(bits[i])));
    EXPECT_EQ(got[i], round_to_bf16(src[i]));
    EXPECT_EQ(got_d[i], static_cast<double>(bf16_to_float(bits[i])));
  }
}

TEST(Safetensors, ReadFloatAndDoubleFromF32AndF64) {
  TempDir td;
  const std::string path = td.str("f64.safetensors");
  const std::vector<double> f64 = {1.0 / 3.0, -1e300, 2.5};
  const std::vector<float> f32 = {0.125f, -7.0f};
  {
    SafetensorsWriter w(path);
    w.add("d", DType::kF64, {3}, f64.data(), 24);
    w.add("s", DType::kF32, {2}, f32.data(), 8);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  std::vector<double> d(3);
  f.read_double(f.info("d"), d.data());
  EXPECT_EQ(d, f64);  // exact: no float round trip
  const std::vector<float> as_float = f.read_float("d");
  EXPECT_EQ(as_float[0], static_cast<float>(1.0 / 3.0));
  EXPECT_TRUE(std::isinf(as_float[1]));
  std::vector<double> s(2);
  f.read_double(f.info("s"), s.data());
  EXPECT_EQ(s, (std::vector<double>{0.125, -7.0}));
}

TEST(Safetensors, ReadFloatRejectsNonFloatDtypes) {
  TempDir td;
  const std::string path = td.str("ints.safetensors");
  const std::vector<int32_t> v = {1, 2};
  const std::vector<uint8_t> q = {0x38, 0x40};
  {
    SafetensorsWriter w(path);
    w.add("layer.idx", DType::kI32, {2}, v.data(), 8);
    w.add("layer.fp8", DType::kF8E4M3, {2}, q.data(), 2);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  std::vector<float> out(2);
  Error e = catch_error([&] { f.read_float(f.info("layer.idx"), out.data()); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_TRUE(Contains(e.what(), path));
  EXPECT_TRUE(Contains(e.what(), "'layer.idx'"));
  EXPECT_TRUE(Contains(e.what(), "I32"));
  std::vector<double> outd(2);
  e = catch_error([&] { f.read_double(f.info("layer.fp8"), outd.data()); });
  EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  EXPECT_TRUE(Contains(e.what(), "'layer.fp8'"));
  EXPECT_TRUE(Contains(e.what(), "F8_E4M3"));
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  TempDir td;
  const std::string path = td.str("one.safetensors");
  write_raw(path, header_with(kAlpha, kBeta), kData);
  SafetensorsFile f = SafetensorsFile::open(path);
  Error e = catch_error([&] { f.info("model.norm.weight"); });
  EXPECT_EQ(e.kind(), ErrorKind::kMalformedInput);
  EXPECT_TRUE(Contains(e.what(), path));
  EXPECT_TRUE(Contains(e.what(), "'model.norm.weight'"));
  e = catch_error([&] { f.read_float("gamma"); });
  EXPECT_TRUE(Contains(e.what(), "'gamma'"));
}

TEST(Safetensors, ForeignTensorInfoIsRejectedNotReadOutOfBounds) {
  TempDir td;
  const std::string path = td.str("small.safetensors");
  write_raw(path, header_with(kAlpha, kBeta), kData);
  SafetensorsFile f = SafetensorsFile::open(path);
  TensorInfo foreign = f.info("beta");
  foreign.data_begin = 16;
  foreign.data_end = 4096;  // beyond the 20-byte data section
  Error e = catch_error([&] { f.data(foreign); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "'beta'"));
  // A shape that disagrees with the byte range must not write past the caller's buffer.
  TensorInfo wrong_shape = f.info("beta");
  wrong_shape.shape = {4};
  std::vector<float> out(4);
  e = catch_error([&] { f.read_float(wrong_shape, out.data()); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
}

TEST(Safetensors, ReleaseKeepsDataReadable) {
  TempDir td;
  const std::string path = td.str("big.safetensors");
  std::vector<float> a(300000), b(70001);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<float>(i);
  {
    SafetensorsWriter w(path);
    w.add("a", DType::kF32, {300, 1000}, a.data(), a.size() * 4);
    w.add("b", DType::kF32, {70001}, b.data(), b.size() * 4);
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.read_float("a"), a);
  f.release(f.info("a"));  // also drops the page shared with 'b'
  EXPECT_EQ(f.read_float("b"), b);
  f.release(f.info("b"));
  EXPECT_EQ(f.read_float("a"), a);
  EXPECT_EQ(f.read_float("b"), b);
}

TEST(Safetensors, FileIsMovable) {
  TempDir td;
  const std::string path = td.str("mv.safetensors");
  write_raw(path, header_with(kAlpha, kBeta), kData);
  SafetensorsFile f = SafetensorsFile::open(path);
  SafetensorsFile g(std::move(f));
  EXPECT_EQ(g.tensors().size(), 2u);
  EXPECT_EQ(g.data(g.info("beta"))[0], 0x01);
  SafetensorsFile h = SafetensorsFile::open(path);
  h = std::move(g);
  EXPECT_EQ(h.info("alpha").shape, (std::vector<int64_t>{2, 3}));
  std::vector<SafetensorsFile> v;
  v.push_back(std::move(h));
  v.push_back(SafetensorsFile::open(path));
  EXPECT_EQ(v[0].data(v[0].info("alpha"))[11], 0x01);
}

TEST(Safetensors, AcceptsTrailingSpacesHolesAndEmptyHeader) {
  TempDir td;
  const std::string a = td.str("pad.safetensors");
  write_raw(a, header_with(kAlpha, kBeta) + "      ", kData);
  EXPECT_EQ(SafetensorsFile::open(a).tensors().size(), 2u);
  const std::string b = td.str("empty.safetensors");
  write_raw(b, "{}", "");
  EXPECT_TRUE(SafetensorsFile::open(b).tensors().empty());
  // Tensors sorted by offset even when the header lists them otherwise.
  const std::string c = td.str("order.safetensors");
  write_raw(c, "{\"beta\":" + kBeta + ",\"alpha\":" + kAlpha + "}", kData);
  SafetensorsFile fc = SafetensorsFile::open(c);
  EXPECT_EQ(fc.tensors()[0].name, "alpha");
  EXPECT_EQ(fc.tensors()[1].name, "beta");
}

// ---- malformed files -------------------------------------------------------------------

TEST(SafetensorsMalformed, MissingFileIsIoError) {
  TempDir td;
  const std::string path = td.str("absent.safetensors");
  Error e = catch_error([&] { SafetensorsFile::open(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_TRUE(Contains(e.what(), path));
  e = catch_error([&] { SafetensorsFile::open(td.str()); });  // a directory
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
}

TEST(SafetensorsMalformed, ShorterThanEightBytes) {
  TempDir td;
  const std::string path = td.str("tiny.safetensors");
  write_bytes(path, std::string("\x10\x00\x00\x00\x00", 5));
  expect_malformed(path, {"truncated", "5 bytes"});
  write_bytes(path, "");
  expect_malformed(path, {"truncated", "0 bytes"});
}

TEST(SafetensorsMalformed, HeaderLengthRunsPastEnd) {
  TempDir td;
  const std::string path = td.str("len.safetensors");
  write_raw(path, header_with(kAlpha, kBeta), kData);
  std::string raw = read_bytes(path);
  const uint64_t size = raw.size();
  raw.replace(0, 8, le64(size));  // patch the length: header would end past the file
  write_bytes(path, raw);
  expect_malformed(path, {"header length " + std::to_string(size) +
                          " runs past the end of the file (" + std::to_string(size) + " bytes)"});
}

TEST(SafetensorsMalformed, HeaderLengthAbsurd) {
  TempDir td;
  const std::string path = td.str("huge.safetensors");
  write_raw(path, header_with(kAlpha, kBeta), kData);
  std::string raw = read_bytes(path);
  raw.replace(0, 8, le64(uint64_t(1) << 62));
  write_bytes(path, raw);
  expect_malformed(path, {"header length 4611686018427387904", "limit"});
  raw.replace(0, 8, le64(~uint64_t(0)));  // would overflow 8 + N
  write_bytes(path, raw);
  expect_malformed(path, {"header length 18446744073709551615"});
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  TempDir td;
  const std::string path = td.str("json.safetensors");
  write_raw(path, R"({"alpha": {"dtype": "F16", "shape": [2, 3)", kData);
  expect_malformed(path, {"header is not valid JSON", "parse error"});
  write_raw(path, std::string("{\"a\xff\": 1}"), "");  // invalid UTF-8
  expect_malformed(path, {"header is not valid JSON"});
  write_raw(path, "", "");  // zero-length header
  expect_malformed(path, {"header is not valid JSON"});
}

TEST(SafetensorsMalformed, HeaderNotObject) {
  TempDir td;
  const std::string path = td.str("arr.safetensors");
  write_raw(path, "[" + kAlpha + "]", kData);
  expect_malformed(path, {"not a JSON object", "array"});
}

TEST(SafetensorsMalformed, EntryMissingField) {
  TempDir td;
  const std::string path = td.str("missing.safetensors");
  write_raw(path, header_with(kAlpha, R"({"shape":[2],"data_offsets":[12,20]})"), kData);
  expect_malformed(path, {"tensor 'beta'", "missing 'dtype'"});
  write_raw(path, header_with(kAlpha, R"({"dtype":"F32","data_offsets":[12,20]})"), kData);
  expect_malformed(path, {"tensor 'beta'", "missing 'shape'"});
  write_raw(path, header_with(kAlpha, R"({"dtype":"F32","shape":[2]})"), kData);
  expect_malformed(path, {"tensor 'beta'", "missing 'data_offsets'"});
}

TEST(SafetensorsMalformed, EntryWrongJsonTypes) {
  TempDir td;
  const std::string path = td.str("types.safetensors");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([12, 20])", "entry must be an object"},
      {R"({"dtype":4,"shape":[2],"data_offsets":[12,20]})", "'dtype' must be a string"},
      {R"({"dtype":"F32","shape":"2","data_offsets":[12,20]})",
       "'shape' must be an array of integers"},
      {R"({"dtype":"F32","shape":[2.0],"data_offsets":[12,20]})",
       "'shape' must be an array of integers"},
      {R"({"dtype":"F32","shape":[null],"data_offsets":[12,20]})",
       "'shape' must be an array of integers"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":"12-20"})",
       "'data_offsets' must be [begin, end]"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":[12]})", "'data_offsets' must be [begin, end]"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":[12,20,28]})",
       "'data_offsets' must be [begin, end]"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":[-4,4]})",
       "'data_offsets' must be [begin, end]"},
      {R"({"dtype":"F32","shape":[2],"data_offsets":[12.0,20]})",
       "'data_offsets' must be [begin, end]"},
  };
  for (const auto& [beta, expected] : cases) {
    SCOPED_TRACE(beta);
    write_raw(path, header_with(kAlpha, beta), kData);
    expect_malformed(path, {"tensor 'beta'", expected});
  }
}

TEST(SafetensorsMalformed, NegativeDim) {
  TempDir td;
  const std::string path = td.str("neg.safetensors");
  // Two negative dims: a product check alone would accept this (-2 * -3 * 2 bytes = 12).
  write_raw(path, header_with(R"({"dtype":"F16","shape":[-2,-3],"data_offsets":[0,12]})", kBeta),
            kData);
  expect_malformed(path, {"tensor 'alpha'", "negative dim -2"});
}

TEST(SafetensorsMalformed, DimTooLargeAndShapeOverflow) {
  TempDir td;
  const std::string path = td.str("ovf.safetensors");
  write_raw(
      path,
      header_with(R"({"dtype":"F16","shape":[18446744073709551615],"data_offsets":[0,12]})", kBeta),
      kData);
  expect_malformed(path, {"tensor 'alpha'", "too large"});
  // 2^32 * 2^32 * 2 bytes wraps to 0 in 64 bits; must not be accepted as an empty tensor.
  write_raw(
      path,
      header_with(R"({"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,0]})", kBeta),
      kData);
  expect_malformed(path, {"tensor 'alpha'", "shape [4294967296, 4294967296] of F16 overflows"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  TempDir td;
  const std::string path = td.str("dtype.safetensors");
  write_raw(path, header_with(R"({"dtype":"F17","shape":[2,3],"data_offsets":[0,12]})", kBeta),
            kData);
  expect_malformed(path, {"tensor 'alpha'", "unknown dtype 'F17'", "expected one of", "BF16"});
}

TEST(SafetensorsMalformed, DataOffsetsBeginAfterEnd) {
  TempDir td;
  const std::string path = td.str("rev.safetensors");
  write_raw(path, header_with(kAlpha, R"({"dtype":"F32","shape":[2],"data_offsets":[20,12]})"),
            kData);
  expect_malformed(path, {"tensor 'beta'", "data_offsets [20, 12]"});
}

TEST(SafetensorsMalformed, DataEndsBeyondDataSection) {
  TempDir td;
  const std::string path = td.str("end.safetensors");
  write_raw(path, header_with(kAlpha, R"({"dtype":"F32","shape":[2],"data_offsets":[16,24]})"),
            kData);
  expect_malformed(path, {"tensor 'beta'", "data ends at byte 24, data section has 20 bytes"});
}

TEST(SafetensorsMalformed, TruncatedDataSection) {
  TempDir td;
  const std::string path = td.str("cut.safetensors");
  const std::vector<float> v(64, 1.0f);
  {
    SafetensorsWriter w(path);
    w.add("model.layers.0.mlp.up_proj.weight", DType::kF32, {8, 8}, v.data(), 256);
    w.finish();
  }
  fs::resize_file(path, fs::file_size(path) - 3);
  expect_malformed(path, {"tensor 'model.layers.0.mlp.up_proj.weight'",
                          "data ends at byte 256, data section has 253 bytes"});
}

TEST(SafetensorsMalformed, ByteCountMismatch) {
  TempDir td;
  const std::string path = td.str("count.safetensors");
  write_raw(path,
            header_with(R"({"dtype":"F16","shape":[2,3],"data_offsets":[0,10]})",
                        R"({"dtype":"F32","shape":[2],"data_offsets":[10,18]})"),
            kData);
  expect_malformed(path,
                   {"tensor 'alpha'", "shape [2, 3] of F16 needs 12 bytes, data_offsets give 10"});
}

TEST(SafetensorsMalformed, OverlappingTensors) {
  TempDir td;
  const std::string path = td.str("overlap.safetensors");
  write_raw(path, header_with(kAlpha, R"({"dtype":"F32","shape":[2],"data_offsets":[8,16]})"),
            kData);
  expect_malformed(path, {"'alpha'", "'beta'", "overlap"});
  // Overlap with a tensor that is not the immediate predecessor in offset order.
  write_raw(path,
            R"({"big":{"dtype":"U8","shape":[20],"data_offsets":[0,20]},)"
            R"("small":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
            R"("late":{"dtype":"U8","shape":[4],"data_offsets":[10,14]}})",
            kData);
  expect_malformed(path, {"'big'", "'small'", "overlap"});
}

TEST(SafetensorsMalformed, MetadataMustMapStringsToStrings) {
  TempDir td;
  const std::string path = td.str("md.safetensors");
  write_raw(path, R"({"__metadata__":{"format":"pt","step":100},"alpha":)" + kAlpha + "}", kData);
  expect_malformed(path, {"'__metadata__' entry 'step' must be a string"});
  write_raw(path, R"({"__metadata__":["pt"],"alpha":)" + kAlpha + "}", kData);
  expect_malformed(path, {"'__metadata__' must be an object"});
}

TEST(SafetensorsMalformed, DuplicateTensorKey) {
  TempDir td;
  const std::string path = td.str("dup.safetensors");
  write_raw(path, "{\"alpha\":" + kAlpha + ",\"alpha\":" + kAlpha + "}", kData);
  expect_malformed(path, {"'alpha' twice"});
}

TEST(SafetensorsMalformed, DeeplyNestedHeaderDoesNotCrash) {
  TempDir td;
  const std::string path = td.str("deep.safetensors");
  const size_t depth = 200000;
  const std::string nested = std::string(depth, '[') + "2" + std::string(depth, ']');
  write_raw(path, R"({"alpha":{"dtype":"F16","shape":)" + nested + R"(,"data_offsets":[0,12]}})",
            kData);
  expect_malformed(path, {"tensor 'alpha'", "'shape' must be an array of integers"});
  write_raw(path, R"({"alpha":)" + nested + "}", kData);
  expect_malformed(path, {"tensor 'alpha'", "entry must be an object"});
}

TEST(SafetensorsMalformed, RandomCorruptionOnlyEverThrowsRazerqError) {
  // Deterministic mutations of a valid file: every outcome must be a clean open or a
  // razerq::Error; any other exception, crash or sanitizer report fails the test.
  TempDir td;
  const std::string good_path = td.str("good.safetensors");
  const std::vector<float> v(16, 0.5f);
  const std::vector<uint16_t> h(6, 0x3c00);
  {
    SafetensorsWriter w(good_path);
    w.set_metadata({{"format", "pt"}});
    w.add("model.a", DType::kF32, {4, 4}, v.data(), 64);
    w.add("model.b", DType::kF16, {2, 3}, h.data(), 12);
    w.finish();
  }
  const std::string good = read_bytes(good_path);
  const std::string bad_path = td.str("mutant.safetensors");
  std::mt19937 rng(1234);
  const char* const kTokens[] = {"-", "9", "\"", "[",    "]",     "{",
                                 "}", ",", ":",  "\xff", "1e400", " "};
  size_t opened = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string m = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % m.size();
      switch (rng() % 4) {
        case 0:
          m[pos] = static_cast<char>(rng() & 0xff);
          break;  // random byte
        case 1:
          m[pos] = kTokens[rng() % 12][0];
          break;  // JSON-ish byte
        case 2:
          m.resize(pos);
          break;  // truncate
        default:
          m.insert(pos, kTokens[rng() % 12]);
          break;  // insert a token
      }
      if (m.empty()) m = "x";
    }
    write_bytes(bad_path, m);
    try {
      SafetensorsFile f = SafetensorsFile::open(bad_path);
      for (const TensorInfo& t : f.tensors()) {
        ASSERT_LE(t.data_end, f.file_size() - 8 - f.header_size());
        if (t.dtype == DType::kF32 || t.dtype == DType::kF16 || t.dtype == DType::kBF16 ||
            t.dtype == DType::kF64) {
          std::vector<double> out(static_cast<size_t>(t.numel()));
          f.read_double(t, out.data());
        }
      }
      ++opened;
    } catch (const Error& e) {
      ++rejected;
      EXPECT_TRUE(Contains(e.what(), bad_path));
    }
  }
  EXPECT_GT(rejected, 1000u);
  EXPECT_GT(opened, 0u);  // some edits hit only data bytes or padding
}

// ---- writer errors ---------------------------------------------------------------------

TEST(SafetensorsWriterErrors, RejectsDuplicateNameAndKeepsGoing) {
  TempDir td;
  const std::string path = td.str("dup.safetensors");
  const std::vector<float> v = {1.0f, 2.0f};
  {
    SafetensorsWriter w(path);
    w.add("model.norm.weight", DType::kF32, {2}, v.data(), 8);
    Error e = catch_error([&] { w.add("model.norm.weight", DType::kF32, {2}, v.data(), 8); });
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_TRUE(Contains(e.what(), path));
    EXPECT_TRUE(Contains(e.what(), "'model.norm.weight'"));
    w.finish();
  }
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.read_float("model.norm.weight"), v);
}

TEST(SafetensorsWriterErrors, RejectsByteCountMismatchAndBadShapes) {
  TempDir td;
  const std::string path = td.str("count.safetensors");
  const std::vector<uint8_t> buf(64, 0);
  SafetensorsWriter w(path);
  Error e = catch_error([&] { w.add("w", DType::kF16, {2, 3}, buf.data(), 10); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "tensor 'w': shape [2, 3] of F16 needs 12 bytes, got 10"));
  e = catch_error([&] { w.add("w", DType::kF32, {-1, -4}, buf.data(), 16); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "negative dim"));
  e = catch_error([&] { w.add("__metadata__", DType::kU8, {1}, buf.data(), 1); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  e = catch_error([&] { w.add("", DType::kU8, {1}, buf.data(), 1); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  e = catch_error([&] { w.add("bad\xff", DType::kU8, {1}, buf.data(), 1); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  e = catch_error([&] {
    w.add("w", DType::kU8, {int64_t(1) << 40, int64_t(1) << 40}, buf.data(), 1);
  });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  EXPECT_TRUE(Contains(e.what(), "overflows"));
  // Nothing was written by the rejected calls.
  w.finish();
  EXPECT_TRUE(SafetensorsFile::open(path).tensors().empty());
  e = catch_error([&] { w.add("late", DType::kU8, {1}, buf.data(), 1); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
  e = catch_error([&] { w.finish(); });
  EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
}

TEST(SafetensorsWriterErrors, NoOutputWithoutFinish) {
  TempDir td;
  const std::string path = td.str("abandoned.safetensors");
  const std::vector<float> v(1000, 3.0f);
  std::string tmp;
  {
    SafetensorsWriter w(path);
    tmp = w.tmp_path();
    EXPECT_EQ(tmp, path + ".data.tmp");
    w.add("a", DType::kF32, {1000}, v.data(), 4000);
    EXPECT_TRUE(fs::exists(tmp));
    EXPECT_FALSE(fs::exists(path));  // the output appears only in finish()
  }
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_empty(td.path()));
}

TEST(SafetensorsWriterErrors, RewritingAMappedFileLeavesTheOldMappingIntact) {
  TempDir td;
  const std::string path = td.str("model.safetensors");
  const std::vector<float> old_v(5000, 1.0f), new_v(5000, 2.0f);
  {
    SafetensorsWriter w(path);
    w.add("w", DType::kF32, {5000}, old_v.data(), 20000);
    w.finish();
  }
  SafetensorsFile old_file = SafetensorsFile::open(path);
  {
    SafetensorsWriter w(path);  // same path, while old_file maps it
    w.add("w", DType::kF32, {5000}, new_v.data(), 20000);
    w.add("extra", DType::kF32, {1}, new_v.data(), 4);
    w.finish();
  }
  EXPECT_EQ(old_file.read_float("w"), old_v);  // the old inode is still mapped
  SafetensorsFile new_file = SafetensorsFile::open(path);
  EXPECT_EQ(new_file.read_float("w"), new_v);
  EXPECT_TRUE(new_file.has("extra"));
}

TEST(SafetensorsWriterErrors, UnwritableDirectoryIsIoError) {
  TempDir td;
  const std::string path = td.str("no/such/dir/out.safetensors");
  Error e = catch_error([&] { SafetensorsWriter w(path); });
  EXPECT_EQ(e.kind(), ErrorKind::kIo);
  EXPECT_TRUE(Contains(e.what(), path + ".data.tmp"));
}

// ---- real data -------------------------------------------------------------------------

TEST(SafetensorsRealData, CopyOfStories260KIsIdentical) {
  const std::string src_path = test::data_path("models/stories260K/hf/model.safetensors");
  if (!fs::exists(src_path)) GTEST_SKIP() << "no test data at " << src_path;
  SafetensorsFile src = SafetensorsFile::open(src_path);
  EXPECT_EQ(src.tensors().size(), 47u);
  EXPECT_EQ(src.metadata().at("format"), "pt");

  // Stream every tensor through the writer, releasing the source pages as we go.
  TempDir td;
  const std::string copy_path = td.str("copy.safetensors");
  {
    SafetensorsWriter w(copy_path);
    w.set_metadata(src.metadata());
    for (const TensorInfo& t : src.tensors()) {
      w.add(t.name, t.dtype, t.shape, src.data(t), t.nbytes());
      src.release(t);
    }
    w.finish();
  }
  SafetensorsFile copy = SafetensorsFile::open(copy_path);
  EXPECT_EQ(copy.metadata(), src.metadata());
  EXPECT_EQ(fs::file_size(copy_path) - copy.header_size(), src.file_size() - src.header_size());
  ASSERT_EQ(copy.tensors().size(), src.tensors().size());
  for (size_t i = 0; i < src.tensors().size(); ++i) {
    const TensorInfo& a = src.tensors()[i];
    const TensorInfo& b = copy.tensors()[i];
    SCOPED_TRACE(a.name);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dtype, b.dtype);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_EQ(a.data_begin, b.data_begin);
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(std::memcmp(src.data(a), copy.data(b), a.nbytes()), 0);
  }
}

}  // namespace
}  // namespace razerq::formats
