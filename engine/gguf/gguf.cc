// The GGUF reader (gguf.h). About 520 lines, over the ~500 the project aims for, on
// purpose: every offset, size and count check of an untrusted file sits in this one file,
// next to the parsing it guards (split, the checks would drift from what they protect).
#include "engine/gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pice::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
// Limits that keep a hostile header from making us allocate without bound. Real
// files stay far below them (a 150k vocabulary has 150k strings of a few bytes).
constexpr uint64_t kMaxKv = 1 << 20;
constexpr uint64_t kMaxTensors = 1 << 20;
constexpr uint64_t kMaxArray = uint64_t{1} << 28;
constexpr uint64_t kMaxString = uint64_t{1} << 30;
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian cursor over the file image.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  template <typename T>
  bool Read(T* out) {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(std::string* out) {
    uint64_t len;
    if (!Read(&len) || len > kMaxString || len > remaining()) return false;
    out->assign(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    pos_ += n;
    return true;
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

size_t ScalarSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
    default: return 0;
  }
}

bool ReadScalarInt(Reader& r, ValueType t, int64_t* out) {
  switch (t) {
    case ValueType::kUint8: { uint8_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kInt8: { int8_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kBool: { uint8_t v; if (!r.Read(&v)) return false; *out = v != 0; return true; }
    case ValueType::kUint16: { uint16_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kInt16: { int16_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kUint32: { uint32_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kInt32: { int32_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    case ValueType::kUint64: { uint64_t v; if (!r.Read(&v)) return false; *out = static_cast<int64_t>(v); return true; }
    case ValueType::kInt64: { int64_t v; if (!r.Read(&v)) return false; *out = v; return true; }
    default: return false;
  }
}

bool ReadScalarFloat(Reader& r, ValueType t, double* out) {
  if (t == ValueType::kFloat32) { float v; if (!r.Read(&v)) return false; *out = v; return true; }
  if (t == ValueType::kFloat64) { double v; if (!r.Read(&v)) return false; *out = v; return true; }
  return false;
}

bool IsIntType(ValueType t) {
  return ScalarSize(t) != 0 && t != ValueType::kFloat32 && t != ValueType::kFloat64;
}
bool IsFloatType(ValueType t) { return t == ValueType::kFloat32 || t == ValueType::kFloat64; }
bool ValidType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

// Reads a value of type `t` into `v`. Returns an error message or "" on success.
std::string ReadValue(Reader& r, ValueType t, Value* v, int depth) {
  v->type = t;
  if (IsIntType(t)) return ReadScalarInt(r, t, &v->i) ? "" : "truncated value";
  if (IsFloatType(t)) return ReadScalarFloat(r, t, &v->f) ? "" : "truncated value";
  if (t == ValueType::kString) return r.ReadString(&v->s) ? "" : "truncated or oversized string";
  if (t != ValueType::kArray) return "unknown value type";
  if (depth >= kMaxArrayDepth) return "arrays nested too deeply";
  uint32_t at;
  uint64_t n;
  if (!r.Read(&at) || !r.Read(&n)) return "truncated array header";
  if (!ValidType(at)) return absl::StrCat("unknown array element type ", at);
  if (n > kMaxArray) return absl::StrCat("array of ", n, " elements is too large");
  v->array_type = static_cast<ValueType>(at);
  // Every element takes at least one byte (a string at least 8): reject counts the
  // remaining bytes cannot hold before reserving memory for them.
  size_t min_elem = v->array_type == ValueType::kString ? 8
                    : v->array_type == ValueType::kArray ? 12
                                                         : ScalarSize(v->array_type);
  if (n > r.remaining() / min_elem) return absl::StrCat("array of ", n, " elements runs past the end of the file");
  if (IsIntType(v->array_type)) {
    v->ints.resize(n);
    for (uint64_t k = 0; k < n; ++k)
      if (!ReadScalarInt(r, v->array_type, &v->ints[k])) return "truncated array";
  } else if (IsFloatType(v->array_type)) {
    v->floats.resize(n);
    for (uint64_t k = 0; k < n; ++k)
      if (!ReadScalarFloat(r, v->array_type, &v->floats[k])) return "truncated array";
  } else if (v->array_type == ValueType::kString) {
    v->strings.resize(n);
    for (uint64_t k = 0; k < n; ++k)
      if (!r.ReadString(&v->strings[k])) return "truncated or oversized string in array";
  } else {
    v->arrays.resize(n);
    for (uint64_t k = 0; k < n; ++k) {
      std::string err = ReadValue(r, ValueType::kArray, &v->arrays[k], depth + 1);
      if (!err.empty()) return err;
    }
  }
  return "";
}

const char* ValueTypeName(ValueType t) {
  static const char* kNames[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                 "bool", "string", "array", "uint64", "int64", "float64"};
  uint32_t i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "unknown";
}

}  // namespace

namespace {
struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block;  // elements per block
  int64_t bytes;  // bytes per block
  bool supported;
};
// ggml's numbering (ggml.h); the unsupported ones are named for clearer errors.
constexpr TypeInfo kTypes[] = {
    {0, "f32", 1, 4, true},       {1, "f16", 1, 2, true},       {2, "q4_0", 32, 18, true},
    {3, "q4_1", 32, 20, true},    {6, "q5_0", 32, 22, true},    {7, "q5_1", 32, 24, true},
    {8, "q8_0", 32, 34, true},    {9, "q8_1", 32, 36, false},   {10, "q2_K", 256, 84, false},
    {11, "q3_K", 256, 110, false}, {12, "q4_K", 256, 144, true}, {13, "q5_K", 256, 176, true},
    {14, "q6_K", 256, 210, true}, {15, "q8_K", 256, 292, false}, {16, "iq2_xxs", 256, 66, false},
    {17, "iq2_xs", 256, 74, false}, {18, "iq3_xxs", 256, 98, false}, {19, "iq1_s", 256, 50, false},
    {20, "iq4_nl", 32, 18, false}, {21, "iq3_s", 256, 110, false}, {22, "iq2_s", 256, 82, false},
    {23, "iq4_xs", 256, 136, false}, {29, "iq1_m", 256, 56, false}, {30, "bf16", 1, 2, true},
};
const TypeInfo* FindType(uint32_t id) {
  for (const TypeInfo& t : kTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}
}  // namespace

std::string GgmlTypeName(uint32_t type) {
  const TypeInfo* t = FindType(type);
  return t ? t->name : absl::StrCat("type", type);
}

bool IsSupportedType(uint32_t type) {
  const TypeInfo* t = FindType(type);
  return t && t->supported;
}

const char* SupportedTypeNames() {
  return "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K";
}

int64_t BlockSize(GgmlType type) {
  const TypeInfo* t = FindType(static_cast<uint32_t>(type));
  return t ? t->block : 1;
}

int64_t TypeSize(GgmlType type) {
  const TypeInfo* t = FindType(static_cast<uint32_t>(type));
  return t ? t->bytes : 0;
}

int64_t RowBytes(GgmlType type, int64_t n) { return n / BlockSize(type) * TypeSize(type); }

bool Value::IsInteger() const { return IsIntType(type); }
bool Value::IsFloat() const { return IsFloatType(type); }
size_t Value::ArraySize() const {
  return ints.size() + floats.size() + strings.size() + arrays.size();
}

GgufFile::~GgufFile() {
  if (mapped_ && base_ != nullptr) munmap(const_cast<uint8_t*>(base_), size_);
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    f->base_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
    // Weights are read front to back on every token: ask for read-ahead. No huge-page
    // mappings: reading one tensor in place would map the whole 2 MB around it, and with
    // it the pages of a neighbour whose packed copy already replaced them (Release).
    madvise(p, f->size_, MADV_WILLNEED);
    madvise(p, f->size_, MADV_NOHUGEPAGE);
  }
  f->fd_ = fd;
  absl::Status s = f->ParseImpl();
  if (!s.ok()) return s;
  return f;
}

void GgufFile::Release(const void* p, size_t n) const {
  if (!mapped_ || n == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t b = reinterpret_cast<uintptr_t>(p), e = b + n;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(base_), hi = lo + size_;
  if (b < lo || e > hi) return;
  b = (b + page - 1) / page * page;  // whole pages inside only
  e = e / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

void GgufFile::CopyOut(const void* p, size_t n, void* dst) const {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  if (mapped_ && fd_ >= 0 && b >= base_ && b + n <= base_ + size_) {
    size_t done = 0;
    while (done < n) {
      const ssize_t r = pread(fd_, static_cast<uint8_t*>(dst) + done, n - done,
                              static_cast<off_t>(b - base_ + done));
      if (r <= 0) break;  // cannot happen for a regular file we mapped; fall back below
      done += static_cast<size_t>(r);
    }
    if (done == n) return;
  }
  std::memcpy(dst, p, n);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::string_view bytes,
                                                          const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  f->owned_.assign(bytes.data(), bytes.size());
  f->base_ = reinterpret_cast<const uint8_t*>(f->owned_.data());
  f->size_ = f->owned_.size();
  absl::Status s = f->ParseImpl();
  if (!s.ok()) return s;
  return f;
}

absl::Status GgufFile::Error(absl::StatusCode code, std::string_view msg) const {
  return absl::Status(code, absl::StrCat(path_, ": ", std::string(msg)));
}

absl::Status GgufFile::ParseImpl() {
  auto bad = [this](std::string_view msg) {
    return Error(absl::StatusCode::kInvalidArgument, absl::StrCat("invalid GGUF: ", std::string(msg)));
  };
  Reader r(base_, size_);
  uint32_t magic;
  if (!r.Read(&magic)) return bad("file too short for a GGUF header");
  if (magic != kMagic) return bad("bad magic (not a GGUF file)");
  if (!r.Read(&version_)) return bad("truncated header");
  if (version_ < 2 || version_ > 3) return bad(absl::StrCat("unsupported version ", version_));
  uint64_t n_tensors, n_kv;
  if (!r.Read(&n_tensors) || !r.Read(&n_kv)) return bad("truncated header");
  if (n_kv > kMaxKv) return bad(absl::StrCat("metadata count ", n_kv, " is too large"));
  if (n_tensors > kMaxTensors) return bad(absl::StrCat("tensor count ", n_tensors, " is too large"));

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    if (!r.ReadString(&key)) return bad(absl::StrCat("truncated key of metadata entry ", k));
    uint32_t t;
    if (!r.Read(&t)) return bad(absl::StrCat("truncated type of key '", key, "'"));
    if (!ValidType(t)) return bad(absl::StrCat("key '", key, "' has unknown value type ", t));
    Value v;
    std::string err = ReadValue(r, static_cast<ValueType>(t), &v, 0);
    if (!err.empty()) return bad(absl::StrCat("key '", key, "': ", err));
    if (kv_.count(key)) return bad(absl::StrCat("duplicate key '", key, "'"));
    kv_.emplace(std::move(key), std::move(v));
  }

  if (const Value* a = Find("general.alignment")) {
    if (!a->IsInteger() || a->i <= 0 || a->i > (1 << 20) || (a->i & (a->i - 1)) != 0) {
      return bad("general.alignment must be a power of two");
    }
    alignment_ = static_cast<uint64_t>(a->i);
  }

  tensors_.reserve(std::min<uint64_t>(n_tensors, r.remaining() / 24));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo ti;
    if (!r.ReadString(&ti.name)) return bad(absl::StrCat("truncated name of tensor ", k));
    uint32_t nd;
    if (!r.Read(&nd)) return bad(absl::StrCat("tensor '", ti.name, "': truncated"));
    if (nd < 1 || nd > 4) return bad(absl::StrCat("tensor '", ti.name, "': ", nd, " dimensions (1..4 allowed)"));
    ti.n_dims = static_cast<int>(nd);
    uint64_t total = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t ne;
      if (!r.Read(&ne)) return bad(absl::StrCat("tensor '", ti.name, "': truncated shape"));
      if (ne == 0 || ne > (uint64_t{1} << 40)) return bad(absl::StrCat("tensor '", ti.name, "': bad dimension ", ne));
      if (total > (uint64_t{1} << 42) / ne) return bad(absl::StrCat("tensor '", ti.name, "': element count overflows"));
      total *= ne;
      ti.ne[d] = static_cast<int64_t>(ne);
    }
    uint32_t type;
    if (!r.Read(&type) || !r.Read(&ti.offset)) return bad(absl::StrCat("tensor '", ti.name, "': truncated"));
    if (!IsSupportedType(type)) {
      return Error(absl::StatusCode::kUnimplemented,
                   absl::StrCat("tensor '", ti.name, "' has type ", GgmlTypeName(type),
                                "; supported: ", SupportedTypeNames()));
    }
    ti.type = static_cast<GgmlType>(type);
    if (ti.ne[0] % BlockSize(ti.type) != 0) {
      return bad(absl::StrCat("tensor '", ti.name, "': row length ", ti.ne[0],
                              " is not a multiple of the ", GgmlTypeName(type), " block"));
    }
    ti.nbytes = static_cast<size_t>(RowBytes(ti.type, ti.ne[0]) * ti.NumRows());
    if (tensor_index_.count(ti.name)) return bad(absl::StrCat("duplicate tensor '", ti.name, "'"));
    tensor_index_.emplace(ti.name, tensors_.size());
    tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment.
  uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_) return bad("tensor data section starts past the end of the file");
  for (TensorInfo& ti : tensors_) {
    if (ti.offset % alignment_ != 0) {
      return bad(absl::StrCat("tensor '", ti.name, "': offset ", ti.offset, " is not aligned to ", alignment_));
    }
    uint64_t avail = size_ - data_start;
    if (ti.offset > avail || ti.nbytes > avail - ti.offset) {
      return bad(absl::StrCat("tensor '", ti.name, "': data (offset ", ti.offset, ", ", ti.nbytes,
                              " bytes) runs past the end of the file"));
    }
    ti.data = base_ + data_start + ti.offset;
  }
  return absl::OkStatus();
}

const Value* GgufFile::Find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
absl::Status WrongType(const GgufFile& f, std::string_view key, const Value& v, const char* want) {
  return f.Error(absl::StatusCode::kInvalidArgument,
                 absl::StrCat("metadata key '", std::string(key), "' is ", ValueTypeName(v.type), ", expected ", want));
}
}  // namespace

#define PICE_GGUF_FIND(key)                                                             \
  const Value* v = Find(key);                                                           \
  if (v == nullptr)                                                                     \
    return Error(absl::StatusCode::kNotFound, absl::StrCat("metadata key '", std::string(key), "' is missing"));

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (v->type != ValueType::kString) return WrongType(*this, key, *v, "string");
  return v->s;
}
absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (!v->IsInteger()) return WrongType(*this, key, *v, "an integer");
  return v->i;
}
absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (v->IsFloat()) return v->f;
  if (v->IsInteger()) return static_cast<double>(v->i);
  return WrongType(*this, key, *v, "a number");
}
absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (!v->IsInteger()) return WrongType(*this, key, *v, "bool");
  return v->i != 0;
}
absl::StatusOr<const std::vector<std::string>*> GgufFile::GetStringArray(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (v->type != ValueType::kArray || v->array_type != ValueType::kString)
    return WrongType(*this, key, *v, "an array of strings");
  return &v->strings;
}
absl::StatusOr<const std::vector<int64_t>*> GgufFile::GetIntArray(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (v->type != ValueType::kArray || !IsIntType(v->array_type))
    return WrongType(*this, key, *v, "an array of integers");
  return &v->ints;
}
absl::StatusOr<const std::vector<double>*> GgufFile::GetFloatArray(std::string_view key) const {
  PICE_GGUF_FIND(key);
  if (v->type != ValueType::kArray || !IsFloatType(v->array_type))
    return WrongType(*this, key, *v, "an array of floats");
  return &v->floats;
}
#undef PICE_GGUF_FIND

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key, std::string def) const {
  if (!Has(key)) return def;
  return GetString(key);
}
absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key, int64_t def) const {
  if (!Has(key)) return def;
  return GetInt(key);
}
absl::StatusOr<double> GgufFile::GetFloat(std::string_view key, double def) const {
  if (!Has(key)) return def;
  return GetFloat(key);
}
absl::StatusOr<bool> GgufFile::GetBool(std::string_view key, bool def) const {
  if (!Has(key)) return def;
  return GetBool(key);
}

// ---- writer ---------------------------------------------------------------------

namespace {
template <typename T>
void Append(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void AppendString(std::string* out, const std::string& s) {
  Append<uint64_t>(out, s.size());
  out->append(s);
}
}  // namespace

void GgufWriter::Put(const std::string& key, std::string encoded) {
  for (Kv& kv : kv_) {
    if (kv.key == key) {
      kv.encoded = std::move(encoded);
      return;
    }
  }
  kv_.push_back({key, std::move(encoded)});
}

void GgufWriter::SetString(const std::string& key, const std::string& v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kString));
  AppendString(&e, v);
  Put(key, std::move(e));
}
void GgufWriter::SetUint32(const std::string& key, uint32_t v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kUint32));
  Append(&e, v);
  Put(key, std::move(e));
}
void GgufWriter::SetInt32(const std::string& key, int32_t v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kInt32));
  Append(&e, v);
  Put(key, std::move(e));
}
void GgufWriter::SetFloat32(const std::string& key, float v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kFloat32));
  Append(&e, v);
  Put(key, std::move(e));
}
void GgufWriter::SetBool(const std::string& key, bool v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kBool));
  Append<uint8_t>(&e, v ? 1 : 0);
  Put(key, std::move(e));
}
void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kArray));
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kString));
  Append<uint64_t>(&e, v.size());
  for (const auto& s : v) AppendString(&e, s);
  Put(key, std::move(e));
}
void GgufWriter::SetFloat32Array(const std::string& key, const std::vector<float>& v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kArray));
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kFloat32));
  Append<uint64_t>(&e, v.size());
  for (float x : v) Append(&e, x);
  Put(key, std::move(e));
}
void GgufWriter::SetInt32Array(const std::string& key, const std::vector<int32_t>& v) {
  std::string e;
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kArray));
  Append<uint32_t>(&e, static_cast<uint32_t>(ValueType::kInt32));
  Append<uint64_t>(&e, v.size());
  for (int32_t x : v) Append(&e, x);
  Put(key, std::move(e));
}

void GgufWriter::AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                           std::string data) {
  tensors_.push_back({name, type, std::move(ne), std::move(data)});
}

std::string GgufWriter::Serialize() const {
  constexpr uint64_t kAlign = 32;
  std::string out;
  Append<uint32_t>(&out, kMagic);
  Append<uint32_t>(&out, 3);
  Append<uint64_t>(&out, tensors_.size());
  Append<uint64_t>(&out, kv_.size());
  for (const Kv& kv : kv_) {
    AppendString(&out, kv.key);
    out.append(kv.encoded);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    AppendString(&out, t.name);
    Append<uint32_t>(&out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Append<uint64_t>(&out, static_cast<uint64_t>(d));
    Append<uint32_t>(&out, static_cast<uint32_t>(t.type));
    Append<uint64_t>(&out, offset);
    offset += (t.data.size() + kAlign - 1) / kAlign * kAlign;
  }
  out.resize((out.size() + kAlign - 1) / kAlign * kAlign, '\0');
  for (const Tensor& t : tensors_) {
    out.append(t.data);
    out.resize((out.size() + kAlign - 1) / kAlign * kAlign, '\0');
  }
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create"));
  std::string bytes = Serialize();
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace pice::gguf
