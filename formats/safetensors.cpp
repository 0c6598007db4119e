#include "formats/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/error.hpp"
#include "common/half.hpp"

// The format is little-endian; read_float()/data() hand out raw bytes of the mapping.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "razerq_formats assumes a little-endian host");

namespace razerq::formats {
namespace {

using json = nlohmann::json;
using ull = unsigned long long;

// Headers larger than this are rejected as corrupt (the limit of the reference implementation).
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},          {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},   {DType::kI16, "I16", 2},        {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kU32, "U32", 4},        {DType::kI32, "I32", 4},
    {DType::kF32, "F32", 4},   {DType::kU64, "U64", 8},        {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},   {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

const DTypeEntry& dtype_entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  throw_error(ErrorKind::kInternal, "formats", "invalid DType value %d", static_cast<int>(dtype));
}

std::string expected_dtypes() {
  std::string s;
  for (const auto& e : kDTypes) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

// Product of the dims times the element size, or false on a negative dim or 64-bit overflow.
bool checked_nbytes(const std::vector<int64_t>& shape, DType dtype, uint64_t* nbytes) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  // numel() is an int64_t: keep the element count representable too.
  if (n / dtype_size(dtype) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return false;
  *nbytes = n;
  return true;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON value for an error message: compact and short. Only scalars and flat arrays are
// dumped (dumping is recursive, and a hostile header may nest millions of levels deep).
std::string brief(const json& j) {
  bool flat = j.is_primitive();
  if (j.is_array() && j.size() <= 16) {
    flat = true;
    for (const json& e : j) flat = flat && e.is_primitive();
  }
  if (!flat) return strprintf("%s of %zu elements", j.type_name(), j.size());
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// nlohmann's what() starts with "[json.exception.parse_error.101] "; keep the useful part.
std::string strip_json_prefix(const char* what) {
  std::string s = what;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find("] ");
    if (close != std::string::npos) s = s.substr(close + 2);
  }
  return s;
}

std::string tensor_where(const std::string& name) { return "tensor '" + name + "'"; }

// Closes a file descriptor on scope exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

}  // namespace

// ---------------------------------------------------------------------------------------
// DType, TensorInfo

const char* dtype_name(DType dtype) { return dtype_entry(dtype).name; }

size_t dtype_size(DType dtype) { return dtype_entry(dtype).size; }

DType parse_dtype(const std::string& s, const std::string& where) {
  for (const auto& e : kDTypes)
    if (s == e.name) return e.dtype;
  throw_error(ErrorKind::kMalformedInput, where, "unknown dtype '%s' (expected one of %s)",
              s.c_str(), expected_dtypes().c_str());
}

int64_t TensorInfo::numel() const {
  uint64_t n = 1;  // unsigned: a hand-made, unvalidated shape wraps instead of being UB
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;

  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) throw_error(ErrorKind::kIo, path, "cannot open: %s", std::strerror(errno));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0)
    throw_error(ErrorKind::kIo, path, "cannot stat: %s", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw_error(ErrorKind::kIo, path, "not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8)
    throw_error(ErrorKind::kMalformedInput, path,
                "file is truncated: %llu bytes, expected at least 8 (the header length)",
                ull(size));

  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (m == MAP_FAILED)
    throw_error(ErrorKind::kIo, path, "cannot map %llu bytes: %s", ull(size), std::strerror(errno));
  f.map_ = static_cast<const uint8_t*>(m);
  f.map_size_ = size;

  f.parse_header();  // on error, f's destructor unmaps
  return f;
}

void SafetensorsFile::parse_header() {
  const std::string& where = path_;
  const uint64_t n = read_le64(map_);
  const uint64_t avail = map_size_ - 8;
  if (n > kMaxHeaderSize)
    throw_error(ErrorKind::kMalformedInput, where,
                "header length %llu is larger than the %llu-byte limit (corrupt, or not a "
                "safetensors file)",
                ull(n), ull(kMaxHeaderSize));
  if (n > avail)
    throw_error(ErrorKind::kMalformedInput, where,
                "header length %llu runs past the end of the file (%llu bytes)", ull(n),
                ull(map_size_));
  header_size_ = n;
  data_size_ = avail - n;

  // Parse, noting a key repeated at the top level (nlohmann would silently keep the last).
  std::string duplicate;
  std::unordered_set<std::string> seen;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(map_ + 8);
  json header;
  try {
    header = json::parse(text, text + n, on_event);
  } catch (const json::exception& e) {
    throw_error(ErrorKind::kMalformedInput, where, "header is not valid JSON: %s",
                strip_json_prefix(e.what()).c_str());
  }
  if (!header.is_object())
    throw_error(ErrorKind::kMalformedInput, where, "header is not a JSON object (got %s)",
                header.type_name());
  if (!duplicate.empty())
    throw_error(ErrorKind::kMalformedInput, where, "header lists '%s' twice", duplicate.c_str());

  tensors_.reserve(header.size());
  for (const auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      if (!val.is_object())
        throw_error(ErrorKind::kMalformedInput, where,
                    "'__metadata__' must be an object of strings, got %s", val.type_name());
      for (const auto& [mk, mv] : val.items()) {
        if (!mv.is_string())
          throw_error(ErrorKind::kMalformedInput, where,
                      "'__metadata__' entry '%s' must be a string, got %s", mk.c_str(),
                      brief(mv).c_str());
        metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }

    const std::string tw = tensor_where(key);
    const char* tn = tw.c_str();
    if (!val.is_object())
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: entry must be an object with dtype, shape and data_offsets, got %s", tn,
                  brief(val).c_str());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!val.contains(field))
        throw_error(ErrorKind::kMalformedInput, where, "%s: missing '%s'", tn, field);

    TensorInfo t;
    t.name = key;

    const json& dt = val.at("dtype");
    if (!dt.is_string())
      throw_error(ErrorKind::kMalformedInput, where, "%s: 'dtype' must be a string, got %s", tn,
                  brief(dt).c_str());
    t.dtype = parse_dtype(dt.get<std::string>(), where + ": " + tw);

    const json& sh = val.at("shape");
    if (!sh.is_array())
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: 'shape' must be an array of integers, got %s", tn, brief(sh).c_str());
    for (const json& d : sh) {
      if (!d.is_number_integer())
        throw_error(ErrorKind::kMalformedInput, where,
                    "%s: 'shape' must be an array of integers, got %s", tn, brief(sh).c_str());
      if (d.is_number_unsigned()) {
        if (d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          throw_error(ErrorKind::kMalformedInput, where, "%s: dim %llu in shape %s is too large",
                      tn, ull(d.get<uint64_t>()), brief(sh).c_str());
      } else if (d.get<int64_t>() < 0) {
        throw_error(ErrorKind::kMalformedInput, where, "%s: negative dim %lld in shape %s", tn,
                    static_cast<long long>(d.get<int64_t>()), brief(sh).c_str());
      }
      t.shape.push_back(d.get<int64_t>());
    }

    const json& off = val.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: 'data_offsets' must be [begin, end] with non-negative integers, got %s", tn,
                  brief(off).c_str());
    t.data_begin = off[0].get<uint64_t>();
    t.data_end = off[1].get<uint64_t>();
    if (t.data_begin > t.data_end)
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: data_offsets [%llu, %llu]: begin is after end", tn, ull(t.data_begin),
                  ull(t.data_end));
    if (t.data_end > data_size_)
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: data ends at byte %llu, data section has %llu bytes", tn, ull(t.data_end),
                  ull(data_size_));

    uint64_t need = 0;
    if (!checked_nbytes(t.shape, t.dtype, &need))
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: shape %s of %s overflows a 64-bit byte count", tn,
                  shape_string(t.shape).c_str(), dtype_name(t.dtype));
    if (need != t.nbytes())
      throw_error(ErrorKind::kMalformedInput, where,
                  "%s: shape %s of %s needs %llu bytes, data_offsets give %llu", tn,
                  shape_string(t.shape).c_str(), dtype_name(t.dtype), ull(need), ull(t.nbytes()));
    tensors_.push_back(std::move(t));
  }

  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.data_begin != b.data_begin) return a.data_begin < b.data_begin;
    if (a.data_end != b.data_end) return a.data_end < b.data_end;
    return a.name < b.name;
  });

  // Overlaps: in begin order, each non-empty range must start at or after the furthest end
  // seen so far. Empty ranges hold no bytes and cannot overlap anything.
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo& t : tensors_) {
    if (t.nbytes() == 0) continue;
    if (furthest && t.data_begin < furthest->data_end)
      throw_error(ErrorKind::kMalformedInput, where,
                  "tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap",
                  furthest->name.c_str(), ull(furthest->data_begin), ull(furthest->data_end),
                  t.name.c_str(), ull(t.data_begin), ull(t.data_end));
    if (!furthest || t.data_end > furthest->data_end) furthest = &t;
  }

  index_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      header_size_(other.header_size_),
      data_size_(other.data_size_),
      tensors_(std::move(other.tensors_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    header_size_ = other.header_size_;
    data_size_ = other.data_size_;
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

bool SafetensorsFile::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw_error(ErrorKind::kMalformedInput, path_,
                "no tensor '%s' in this file (it has %zu tensors)", name.c_str(), tensors_.size());
  return tensors_[it->second];
}

void SafetensorsFile::check_range(const TensorInfo& t) const {
  if (!map_ || t.data_begin > t.data_end || t.data_end > data_size_)
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': bytes %llu..%llu lie outside the data section (%llu bytes); is it "
                "from another file?",
                t.name.c_str(), ull(t.data_begin), ull(t.data_end), ull(data_size_));
}

const uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  check_range(t);
  return map_ + 8 + header_size_ + t.data_begin;
}

namespace {

// Converts n elements of a floating dtype at p into out.
template <typename T>
bool convert_float(DType dtype, const uint8_t* p, size_t n, T* out) {
  switch (dtype) {
    case DType::kF32:
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<T>(v);
      }
      return true;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = static_cast<T>(fp16_to_float(h));
      }
      return true;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, p + 2 * i, 2);
        out[i] = static_cast<T>(bf16_to_float(b));
      }
      return true;
    case DType::kF64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<T>(v);
      }
      return true;
    default:
      return false;
  }
}

}  // namespace

void SafetensorsFile::read_float(const TensorInfo& t, float* out) const {
  const uint8_t* p = data(t);
  const size_t n = t.nbytes() / dtype_size(t.dtype);
  if (n * dtype_size(t.dtype) != t.nbytes() || static_cast<int64_t>(n) != t.numel())
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': shape %s does not match its %llu bytes", t.name.c_str(),
                shape_string(t.shape).c_str(), ull(t.nbytes()));
  if (!convert_float(t.dtype, p, n, out))
    throw_error(ErrorKind::kUnsupported, path_,
                "tensor '%s': cannot read %s as float (supported: F32, F16, BF16, F64)",
                t.name.c_str(), dtype_name(t.dtype));
}

std::vector<float> SafetensorsFile::read_float(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  read_float(t, out.data());
  return out;
}

void SafetensorsFile::read_double(const TensorInfo& t, double* out) const {
  const uint8_t* p = data(t);
  const size_t n = t.nbytes() / dtype_size(t.dtype);
  if (n * dtype_size(t.dtype) != t.nbytes() || static_cast<int64_t>(n) != t.numel())
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': shape %s does not match its %llu bytes", t.name.c_str(),
                shape_string(t.shape).c_str(), ull(t.nbytes()));
  if (!convert_float(t.dtype, p, n, out))
    throw_error(ErrorKind::kUnsupported, path_,
                "tensor '%s': cannot read %s as double (supported: F32, F16, BF16, F64)",
                t.name.c_str(), dtype_name(t.dtype));
}

void SafetensorsFile::release(const TensorInfo& t) const {
  if (t.nbytes() == 0) return;
  const uint8_t* p = data(t);
  // Round outwards to whole pages. Pages shared with neighbouring tensors are dropped too,
  // which is harmless: the mapping is private and never written, so a later access simply
  // reads the page back from the file. The mapping covers whole pages, so the rounded range
  // stays inside it. Failure is ignored: this is only a hint.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + t.nbytes() + page - 1) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------------------
// SafetensorsWriter

SafetensorsWriter::SafetensorsWriter(std::string path) : path_(std::move(path)) {
  if (path_.empty())
    throw_error(ErrorKind::kInvalidArgument, "safetensors writer", "empty output path");
  tmp_path_ = path_ + ".data.tmp";
  out_tmp_path_ = path_ + ".tmp";
  tmp_ = std::fopen(tmp_path_.c_str(), "w+b");
  if (!tmp_) throw_error(ErrorKind::kIo, tmp_path_, "cannot create: %s", std::strerror(errno));
}

SafetensorsWriter::~SafetensorsWriter() { cleanup(); }

void SafetensorsWriter::cleanup() noexcept {
  if (tmp_) std::fclose(tmp_);
  tmp_ = nullptr;
  if (!finished_) {
    std::remove(tmp_path_.c_str());
    if (output_started_) std::remove(out_tmp_path_.c_str());
  }
}

void SafetensorsWriter::set_metadata(const std::map<std::string, std::string>& md) {
  if (finished_ || !tmp_)
    throw_error(ErrorKind::kInvalidArgument, path_, "set_metadata() after finish()");
  try {
    (void)json(md).dump();  // throws on invalid UTF-8, which JSON cannot carry
  } catch (const json::exception&) {
    throw_error(ErrorKind::kInvalidArgument, path_, "metadata keys and values must be valid UTF-8");
  }
  metadata_ = md;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* bytes, size_t nbytes) {
  if (finished_ || !tmp_)
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': add() after finish() or after a write error", name.c_str());
  if (name.empty()) throw_error(ErrorKind::kInvalidArgument, path_, "empty tensor name");
  if (name == "__metadata__")
    throw_error(ErrorKind::kInvalidArgument, path_,
                "'__metadata__' is reserved and cannot name a tensor");
  try {
    (void)json(name).dump();
  } catch (const json::exception&) {
    throw_error(ErrorKind::kInvalidArgument, path_, "tensor name '%s' is not valid UTF-8",
                name.c_str());
  }
  if (names_.count(name))
    throw_error(ErrorKind::kInvalidArgument, path_, "tensor '%s' was already added", name.c_str());
  for (int64_t d : shape)
    if (d < 0)
      throw_error(ErrorKind::kInvalidArgument, path_, "tensor '%s': negative dim in shape %s",
                  name.c_str(), shape_string(shape).c_str());
  uint64_t need = 0;
  if (!checked_nbytes(shape, dtype, &need))
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': shape %s of %s overflows a 64-bit byte count", name.c_str(),
                shape_string(shape).c_str(), dtype_name(dtype));
  if (need != nbytes)
    throw_error(ErrorKind::kInvalidArgument, path_,
                "tensor '%s': shape %s of %s needs %llu bytes, got %zu", name.c_str(),
                shape_string(shape).c_str(), dtype_name(dtype), ull(need), nbytes);
  if (nbytes > 0 && !bytes)
    throw_error(ErrorKind::kInvalidArgument, path_, "tensor '%s': null data pointer", name.c_str());

  if (nbytes > 0 && std::fwrite(bytes, 1, nbytes, tmp_) != nbytes) {
    const int err = errno;
    // The side file is now in an unknown state: refuse any further use.
    std::fclose(tmp_);
    tmp_ = nullptr;
    throw_error(ErrorKind::kIo, tmp_path_, "cannot write tensor '%s' (%zu bytes): %s", name.c_str(),
                nbytes, std::strerror(err));
  }
  TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = shape;
  t.data_begin = data_size_;
  t.data_end = data_size_ + nbytes;
  data_size_ = t.data_end;
  tensors_.push_back(std::move(t));
  names_.insert(name);
}

void SafetensorsWriter::finish() {
  if (finished_ || !tmp_)
    throw_error(ErrorKind::kInvalidArgument, path_, "finish() called twice or after a write error");

  // Header: "__metadata__" first, then the tensors in the order they were added. Built as
  // text, entry by entry, to stay linear in the number of tensors.
  std::string text = "{";
  if (!metadata_.empty()) text += "\"__metadata__\":" + json(metadata_).dump();
  for (const TensorInfo& t : tensors_) {
    if (text.size() > 1) text += ',';
    text += json(t.name).dump();
    text += ':';
    // ordered_json keeps the reference implementation's key order.
    text += nlohmann::ordered_json{{"dtype", dtype_name(t.dtype)},
                                   {"shape", t.shape},
                                   {"data_offsets", {t.data_begin, t.data_end}}}
                .dump();
  }
  text += '}';
  text.append((8 - text.size() % 8) % 8, ' ');

  if (std::fflush(tmp_) != 0)
    throw_error(ErrorKind::kIo, tmp_path_, "cannot flush: %s", std::strerror(errno));
  if (std::fseek(tmp_, 0, SEEK_SET) != 0)
    throw_error(ErrorKind::kIo, tmp_path_, "cannot seek: %s", std::strerror(errno));

  // Written next to the target and renamed over it at the end: "<path>" is never seen half
  // written, and a reader that still maps an older "<path>" keeps its (unlinked) file.
  FilePtr out(std::fopen(out_tmp_path_.c_str(), "wb"));
  if (!out) throw_error(ErrorKind::kIo, out_tmp_path_, "cannot create: %s", std::strerror(errno));
  output_started_ = true;

  uint8_t len[8];
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (std::fwrite(len, 1, 8, out.get()) != 8 ||
      std::fwrite(text.data(), 1, text.size(), out.get()) != text.size())
    throw_error(ErrorKind::kIo, out_tmp_path_, "cannot write header: %s", std::strerror(errno));

  std::vector<uint8_t> buf(size_t(4) << 20);
  uint64_t copied = 0;
  while (true) {
    const size_t got = std::fread(buf.data(), 1, buf.size(), tmp_);
    if (got > 0 && std::fwrite(buf.data(), 1, got, out.get()) != got)
      throw_error(ErrorKind::kIo, out_tmp_path_, "cannot write data: %s", std::strerror(errno));
    copied += got;
    if (got < buf.size()) break;
  }
  if (std::ferror(tmp_))
    throw_error(ErrorKind::kIo, tmp_path_, "cannot read back: %s", std::strerror(errno));
  if (copied != data_size_)
    throw_error(ErrorKind::kIo, tmp_path_, "holds %llu bytes, expected %llu", ull(copied),
                ull(data_size_));
  if (std::fclose(out.release()) != 0)
    throw_error(ErrorKind::kIo, out_tmp_path_, "cannot close: %s", std::strerror(errno));
  if (std::rename(out_tmp_path_.c_str(), path_.c_str()) != 0)
    throw_error(ErrorKind::kIo, path_, "cannot rename %s to it: %s", out_tmp_path_.c_str(),
                std::strerror(errno));

  std::fclose(tmp_);
  tmp_ = nullptr;
  std::remove(tmp_path_.c_str());
  finished_ = true;
}

}  // namespace razerq::formats
