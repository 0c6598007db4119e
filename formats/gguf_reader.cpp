#include "formats/gguf_reader.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/error.hpp"

// Everything below is written from the specification, on purpose without razerq's own
// half-float helpers or packers: this file is the independent check of the writer.

namespace razerq::formats::gguf {
namespace {

// ggml_type ids (ggml/include/ggml.h).
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
                   kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15, kIQ4_NL = 20,
                   kIQ4_XS = 23, kI8 = 24, kI16 = 25, kI32 = 26, kI64 = 27, kF64 = 28, kBF16 = 30, kMXFP4 = 39,
                   kNVFP4 = 40;

}  // namespace

double fp16_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  double v;
  if (exp == 0)
    v = std::ldexp(static_cast<double>(man), -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<double>(1024 + man), exp - 25);
  return sign ? -v : v;
}

namespace {

double bf16_value(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

// E2M1 values doubled (ggml-common.h kvalues_mxfp4): index = the 4-bit code, bit 3 = sign.
constexpr int kFp4Doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// UE4M3 as ggml reads it (ggml-impl.h ggml_ue4m3_to_fp32): the sign bit is ignored, 0 and
// 0x7F read as 0, and the result is halved to pair with the doubled E2M1 table.
double ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7F) return 0.0;
  const int exp = (x >> 3) & 0xF, man = x & 7;
  const double raw = exp == 0 ? std::ldexp(static_cast<double>(man), -9) : std::ldexp(1.0 + man / 8.0, exp - 7);
  return raw * 0.5;
}

// Q4_K 6-bit scale and min of sub-block j (ggml-quants.c get_scale_min_k4).
void q4k_scale_min(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t n, const std::string& path) : p_(p), n_(n), path_(path) {}
  uint64_t pos() const { return pos_; }
  const uint8_t* take(uint64_t k, const char* what) {
    if (k > n_ - pos_)
      throw_error(ErrorKind::kMalformedInput, path_, "truncated: %s needs %llu bytes at offset %llu, file has %llu", what,
                  static_cast<unsigned long long>(k), static_cast<unsigned long long>(pos_),
                  static_cast<unsigned long long>(n_));
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint8_t u8(const char* w) { return *take(1, w); }
  uint16_t u16(const char* w) { return le16(take(2, w)); }
  uint32_t u32(const char* w) { return le32(take(4, w)); }
  uint64_t u64(const char* w) {
    const uint8_t* b = take(8, w);
    return static_cast<uint64_t>(le32(b)) | (static_cast<uint64_t>(le32(b + 4)) << 32);
  }
  std::string str(const char* w) {
    const uint64_t len = u64(w);
    const uint8_t* b = take(len, w);
    return std::string(reinterpret_cast<const char*>(b), len);
  }

 private:
  const uint8_t* p_;
  uint64_t n_, pos_ = 0;
  const std::string& path_;
};

Value read_value(Cursor& c, ValueType t, const std::string& path, const std::string& key, int depth) {
  Value v;
  v.type = t;
  const char* w = "metadata value";
  switch (t) {
    case ValueType::kU8: v.u = c.u8(w); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI8: v.i = static_cast<int8_t>(c.u8(w)); v.u = static_cast<uint64_t>(v.i); break;
    case ValueType::kU16: v.u = c.u16(w); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI16: v.i = static_cast<int16_t>(c.u16(w)); v.u = static_cast<uint64_t>(v.i); break;
    case ValueType::kU32: v.u = c.u32(w); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI32: v.i = static_cast<int32_t>(c.u32(w)); v.u = static_cast<uint64_t>(v.i); break;
    case ValueType::kU64: v.u = c.u64(w); v.i = static_cast<int64_t>(v.u); break;
    case ValueType::kI64: v.i = static_cast<int64_t>(c.u64(w)); v.u = static_cast<uint64_t>(v.i); break;
    case ValueType::kF32: {
      const uint32_t b = c.u32(w);
      float f;
      std::memcpy(&f, &b, 4);
      v.f = f;
      break;
    }
    case ValueType::kF64: {
      const uint64_t b = c.u64(w);
      std::memcpy(&v.f, &b, 8);
      break;
    }
    case ValueType::kBool: {
      const uint8_t b = c.u8(w);
      if (b > 1) throw_error(ErrorKind::kMalformedInput, path, "key '%s': bool value %u (expected 0 or 1)", key.c_str(), b);
      v.u = b;
      v.i = b;
      break;
    }
    case ValueType::kString: v.s = c.str(w); break;
    case ValueType::kArray: {
      if (depth > 0) throw_error(ErrorKind::kUnsupported, path, "key '%s': nested arrays", key.c_str());
      const uint32_t et = c.u32(w);
      if (et > 12) throw_error(ErrorKind::kMalformedInput, path, "key '%s': array element type %u (expected 0..12)", key.c_str(), et);
      v.elem_type = static_cast<ValueType>(et);
      const uint64_t n = c.u64(w);
      if (n > (uint64_t(1) << 32)) throw_error(ErrorKind::kMalformedInput, path, "key '%s': array of %llu elements", key.c_str(), static_cast<unsigned long long>(n));
      v.elems.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.elems.push_back(read_value(c, v.elem_type, path, key, depth + 1));
      break;
    }
  }
  return v;
}

}  // namespace

uint64_t TensorInfo::rows() const {
  uint64_t r = 1;
  for (size_t k = 1; k < ne.size(); ++k) r *= ne[k];
  return r;
}

std::string type_name(uint32_t t) {
  switch (t) {
    case kF32: return "F32";
    case kF16: return "F16";
    case kQ4_0: return "Q4_0";
    case kQ4_1: return "Q4_1";
    case kQ5_0: return "Q5_0";
    case kQ5_1: return "Q5_1";
    case kQ8_0: return "Q8_0";
    case kQ8_1: return "Q8_1";
    case kQ2_K: return "Q2_K";
    case kQ3_K: return "Q3_K";
    case kQ4_K: return "Q4_K";
    case kQ5_K: return "Q5_K";
    case kQ6_K: return "Q6_K";
    case kQ8_K: return "Q8_K";
    case kIQ4_NL: return "IQ4_NL";
    case kIQ4_XS: return "IQ4_XS";
    case kI8: return "I8";
    case kI16: return "I16";
    case kI32: return "I32";
    case kI64: return "I64";
    case kF64: return "F64";
    case kBF16: return "BF16";
    case kMXFP4: return "MXFP4";
    case kNVFP4: return "NVFP4";
    default: return "type" + std::to_string(t);
  }
}

std::pair<int, int> block_layout(uint32_t t) {
  switch (t) {
    case kF32: return {1, 4};
    case kF16: return {1, 2};
    case kBF16: return {1, 2};
    case kQ4_0: return {32, 2 + 16};
    case kQ4_1: return {32, 2 + 2 + 16};
    case kQ5_0: return {32, 2 + 4 + 16};
    case kQ5_1: return {32, 2 + 2 + 4 + 16};
    case kQ8_0: return {32, 2 + 32};
    case kQ4_K: return {256, 2 + 2 + 12 + 128};
    case kMXFP4: return {32, 1 + 16};
    case kNVFP4: return {64, 4 + 32};
    default: return {0, 0};
  }
}

void decode_block(uint32_t type, const uint8_t* b, double* y) {
  switch (type) {
    case kF32: {
      const uint32_t u = le32(b);
      float f;
      std::memcpy(&f, &u, 4);
      y[0] = f;
      return;
    }
    case kF16: y[0] = fp16_value(le16(b)); return;
    case kBF16: y[0] = bf16_value(le16(b)); return;
    case kQ4_0: {  // fp16 d, 16 bytes: element j low nibble, j + 16 high; w = d (q - 8)
      const double d = fp16_value(le16(b));
      for (int j = 0; j < 16; ++j) {
        y[j] = ((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = ((b[2 + j] >> 4) - 8) * d;
      }
      return;
    }
    case kQ4_1: {  // fp16 d, fp16 m, 16 bytes; w = d q + m
      const double d = fp16_value(le16(b)), m = fp16_value(le16(b + 2));
      for (int j = 0; j < 16; ++j) {
        y[j] = (b[4 + j] & 0xF) * d + m;
        y[j + 16] = (b[4 + j] >> 4) * d + m;
      }
      return;
    }
    case kQ5_0: {  // fp16 d, u32 high bits (bit i = element i), 16 bytes low nibbles; w = d (q - 16)
      const double d = fp16_value(le16(b));
      const uint32_t qh = le32(b + 2);
      for (int j = 0; j < 16; ++j) {
        const int q0 = (b[6 + j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
        const int q1 = (b[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = (q0 - 16) * d;
        y[j + 16] = (q1 - 16) * d;
      }
      return;
    }
    case kQ5_1: {  // fp16 d, fp16 m, u32 high bits, 16 bytes; w = d q + m
      const double d = fp16_value(le16(b)), m = fp16_value(le16(b + 2));
      const uint32_t qh = le32(b + 4);
      for (int j = 0; j < 16; ++j) {
        const int q0 = (b[8 + j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
        const int q1 = (b[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
        y[j] = q0 * d + m;
        y[j + 16] = q1 * d + m;
      }
      return;
    }
    case kQ8_0: {  // fp16 d, 32 int8; w = d q
      const double d = fp16_value(le16(b));
      for (int j = 0; j < 32; ++j) y[j] = static_cast<int8_t>(b[2 + j]) * d;
      return;
    }
    case kQ4_K: {  // fp16 d, fp16 dmin, 12 bytes of 6-bit (scale, min) x 8, 128 bytes of nibbles
      const double d = fp16_value(le16(b)), dmin = fp16_value(le16(b + 2));
      const uint8_t* sc = b + 4;
      const uint8_t* q = b + 16;
      for (int c = 0; c < 4; ++c) {  // 64 elements: 32 bytes, low nibbles then high nibbles
        int s1, m1, s2, m2;
        q4k_scale_min(2 * c, sc, s1, m1);
        q4k_scale_min(2 * c + 1, sc, s2, m2);
        for (int l = 0; l < 32; ++l) {
          y[64 * c + l] = d * s1 * (q[32 * c + l] & 0xF) - dmin * m1;
          y[64 * c + 32 + l] = d * s2 * (q[32 * c + l] >> 4) - dmin * m2;
        }
      }
      return;
    }
    case kMXFP4: {  // E8M0 e, 16 bytes as Q4_0; w = kvalues[q] * 2^(e - 128) (doubled table, halved scale)
      const double d = std::ldexp(1.0, static_cast<int>(b[0]) - 128);
      for (int j = 0; j < 16; ++j) {
        y[j] = kFp4Doubled[b[1 + j] & 0xF] * d;
        y[j + 16] = kFp4Doubled[b[1 + j] >> 4] * d;
      }
      return;
    }
    case kNVFP4: {  // 4 UE4M3 sub-scales, then per 16-element sub-block 8 bytes: element j low, j + 8 high
      for (int s = 0; s < 4; ++s) {
        const double d = ue4m3_half(b[s]);
        const uint8_t* q = b + 4 + 8 * s;
        for (int j = 0; j < 8; ++j) {
          y[16 * s + j] = kFp4Doubled[q[j] & 0xF] * d;
          y[16 * s + j + 8] = kFp4Doubled[q[j] >> 4] * d;
        }
      }
      return;
    }
    default:
      throw_error(ErrorKind::kUnsupported, "gguf", "cannot decode tensor type %s", type_name(type).c_str());
  }
}

File::File(File&& o) noexcept { *this = std::move(o); }
File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (map_) munmap(map_, size_);
    path_ = std::move(o.path_);
    map_ = o.map_;
    size_ = o.size_;
    version_ = o.version_;
    alignment_ = o.alignment_;
    data_start_ = o.data_start_;
    kv_ = std::move(o.kv_);
    tensors_ = std::move(o.tensors_);
    kv_index_ = std::move(o.kv_index_);
    tensor_index_ = std::move(o.tensor_index_);
    o.map_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}
File::~File() {
  if (map_) munmap(map_, size_);
}

File File::open(const std::string& path) {
  File f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw_error(ErrorKind::kIo, path, "cannot open: %s", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw_error(ErrorKind::kIo, path, "cannot stat: %s", std::strerror(e));
  }
  f.size_ = static_cast<uint64_t>(st.st_size);
  if (f.size_ < 24) {
    ::close(fd);
    throw_error(ErrorKind::kMalformedInput, path, "%llu bytes: too short for a GGUF header (24 bytes)",
                static_cast<unsigned long long>(f.size_));
  }
  void* m = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw_error(ErrorKind::kIo, path, "cannot map: %s", std::strerror(errno));
  f.map_ = static_cast<uint8_t*>(m);

  Cursor c(f.map_, f.size_, f.path_);
  const uint8_t* magic = c.take(4, "magic");
  if (std::memcmp(magic, "GGUF", 4) != 0)
    throw_error(ErrorKind::kMalformedInput, path, "not a GGUF file (magic %02x %02x %02x %02x, expected 'GGUF')", magic[0],
                magic[1], magic[2], magic[3]);
  f.version_ = c.u32("version");
  if (f.version_ != 2 && f.version_ != 3)
    throw_error(ErrorKind::kUnsupported, path, "GGUF version %u (this reader handles 2 and 3)", f.version_);
  const uint64_t n_tensors = c.u64("tensor count"), n_kv = c.u64("metadata count");
  if (n_tensors > f.size_ || n_kv > f.size_)
    throw_error(ErrorKind::kMalformedInput, path, "implausible counts: %llu tensors, %llu metadata entries",
                static_cast<unsigned long long>(n_tensors), static_cast<unsigned long long>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("metadata key");
    const uint32_t t = c.u32("metadata type");
    if (t > 12) throw_error(ErrorKind::kMalformedInput, path, "key '%s': value type %u (expected 0..12)", key.c_str(), t);
    if (f.kv_index_.count(key)) throw_error(ErrorKind::kMalformedInput, path, "duplicate metadata key '%s'", key.c_str());
    Value v = read_value(c, static_cast<ValueType>(t), path, key, 0);
    f.kv_index_[key] = f.kv_.size();
    f.kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const Value* a = f.find("general.alignment")) {
    if (a->type != ValueType::kU32 || a->u == 0 || (a->u & (a->u - 1)) != 0)
      throw_error(ErrorKind::kMalformedInput, path, "general.alignment must be a power-of-two u32");
    f.alignment_ = a->u;
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.name = c.str("tensor name");
    const uint32_t nd = c.u32("tensor n_dims");
    if (nd == 0 || nd > 4) throw_error(ErrorKind::kMalformedInput, path, "tensor '%s': %u dimensions (expected 1..4)", t.name.c_str(), nd);
    for (uint32_t d = 0; d < nd; ++d) t.ne.push_back(c.u64("tensor dims"));
    t.type = c.u32("tensor type");
    t.offset = c.u64("tensor offset");
    const auto [blk, bytes] = block_layout(t.type);
    if (blk == 0)
      throw_error(ErrorKind::kUnsupported, path, "tensor '%s': type %s is not known to this reader", t.name.c_str(),
                  type_name(t.type).c_str());
    if (t.ne[0] % static_cast<uint64_t>(blk) != 0)
      throw_error(ErrorKind::kMalformedInput, path, "tensor '%s': ne[0] = %llu is not a multiple of the %s block (%d)",
                  t.name.c_str(), static_cast<unsigned long long>(t.ne[0]), type_name(t.type).c_str(), blk);
    t.nbytes = t.rows() * (t.ne[0] / static_cast<uint64_t>(blk)) * static_cast<uint64_t>(bytes);
    if (f.tensor_index_.count(t.name)) throw_error(ErrorKind::kMalformedInput, path, "duplicate tensor '%s'", t.name.c_str());
    f.tensor_index_[t.name] = f.tensors_.size();
    f.tensors_.push_back(std::move(t));
  }
  f.data_start_ = (c.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (const TensorInfo& t : f.tensors_) {
    if (t.offset % f.alignment_ != 0)
      throw_error(ErrorKind::kMalformedInput, path, "tensor '%s': offset %llu is not a multiple of the alignment %llu",
                  t.name.c_str(), static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(f.alignment_));
    if (f.data_start_ > f.size_ || t.offset > f.size_ - f.data_start_ || t.nbytes > f.size_ - f.data_start_ - t.offset)
      throw_error(ErrorKind::kMalformedInput, path, "tensor '%s': data [%llu, +%llu) runs past the end of the file (%llu bytes)",
                  t.name.c_str(), static_cast<unsigned long long>(f.data_start_ + t.offset),
                  static_cast<unsigned long long>(t.nbytes), static_cast<unsigned long long>(f.size_));
  }
  return f;
}

const Value* File::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v || v->type != ValueType::kString)
    throw_error(ErrorKind::kMalformedInput, path_, "key '%s': %s (expected a string)", key.c_str(), v ? "wrong type" : "missing");
  return v->s;
}

int64_t File::get_int(const std::string& key) const {
  const Value* v = find(key);
  const bool is_int = v && v->type != ValueType::kF32 && v->type != ValueType::kF64 && v->type != ValueType::kString &&
                      v->type != ValueType::kArray && v->type != ValueType::kBool;
  if (!is_int)
    throw_error(ErrorKind::kMalformedInput, path_, "key '%s': %s (expected an integer)", key.c_str(), v ? "wrong type" : "missing");
  return v->i;
}

double File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v || (v->type != ValueType::kF32 && v->type != ValueType::kF64))
    throw_error(ErrorKind::kMalformedInput, path_, "key '%s': %s (expected a float)", key.c_str(), v ? "wrong type" : "missing");
  return v->f;
}

const uint8_t* File::data(const TensorInfo& t) const { return map_ + data_start_ + t.offset; }

void File::decode_row(const TensorInfo& t, uint64_t row, double* out) const {
  const auto [blk, bytes] = block_layout(t.type);
  if (row >= t.rows())
    throw_error(ErrorKind::kInvalidArgument, path_, "tensor '%s': row %llu of %llu", t.name.c_str(),
                static_cast<unsigned long long>(row), static_cast<unsigned long long>(t.rows()));
  const uint64_t nb = t.ne[0] / static_cast<uint64_t>(blk);
  const uint8_t* p = data(t) + row * nb * static_cast<uint64_t>(bytes);
  for (uint64_t b = 0; b < nb; ++b) decode_block(t.type, p + b * static_cast<uint64_t>(bytes), out + b * static_cast<uint64_t>(blk));
}

}  // namespace razerq::formats::gguf
