// GGUF v2/v3 reader and writer.
//
// GgufFile maps a file read-only and validates every count, size and offset before
// exposing it: a truncated, corrupted or hostile file yields an error naming the file
// and the problem, never a crash or an out-of-bounds read. The file stays mapped for
// the lifetime of the GgufFile; tensor data pointers point into the mapping.
//
// Thread safety: a GgufFile is immutable after Open() and may be shared freely.
#ifndef PICE_ENGINE_GGUF_GGUF_H_
#define PICE_ENGINE_GGUF_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pice::gguf {

// Tensor element types, numbered as in ggml.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30,
};

// Returns ggml's name ("f32", "q4_K", "bf16"...) or "type<N>".
std::string GgmlTypeName(uint32_t type);
// True for the tensor types this engine can compute with.
bool IsSupportedType(uint32_t type);
// The names of the supported types, for messages: "f32, f16, bf16, q4_0, ...".
const char* SupportedTypeNames();
// Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_0, 256 for the K-quants) and
// bytes per block.
int64_t BlockSize(GgmlType type);
int64_t TypeSize(GgmlType type);
// Bytes of one row of `n` elements; n must be a multiple of BlockSize(type).
int64_t RowBytes(GgmlType type, int64_t n);

// Metadata value types, numbered as in the GGUF specification.
enum class ValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
  kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value. Scalars use `i` (all integer types and bool), `f` (floats) or
// `s` (string). Arrays set `array_type` and fill exactly one of `ints`, `floats`,
// `strings` or `arrays` (nested arrays) according to it.
struct Value {
  ValueType type = ValueType::kUint8;
  int64_t i = 0;  // integers (uint64 values above INT64_MAX wrap) and bool
  double f = 0;
  std::string s;
  ValueType array_type = ValueType::kUint8;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<Value> arrays;

  bool IsInteger() const;  // any integer type or bool
  bool IsFloat() const;    // float32 / float64
  size_t ArraySize() const;
};

struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the row length (contiguous)
  uint64_t offset = 0;           // relative to the start of the data section
  const uint8_t* data = nullptr; // into the mapping; valid while the file lives
  size_t nbytes = 0;

  int64_t NumElements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t NumRows() const { return ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
 public:
  // Maps and validates `path`. Errors name the path and what is wrong.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses an in-memory image (copied); `name` is used in error messages. For tests
  // and fuzzing.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::string_view bytes,
                                                         const std::string& name);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }

  // Metadata access. Find returns nullptr when the key is absent.
  const Value* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }
  const std::map<std::string, Value, std::less<>>& metadata() const { return kv_; }
  // Typed getters: NOT_FOUND when absent, INVALID_ARGUMENT (naming file and key)
  // when present with the wrong type.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // accepts ints too
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  // The same with a default used only when the key is absent.
  absl::StatusOr<std::string> GetString(std::string_view key, std::string def) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key, int64_t def) const;
  absl::StatusOr<double> GetFloat(std::string_view key, double def) const;
  absl::StatusOr<bool> GetBool(std::string_view key, bool def) const;
  // Array getters; a missing key is NOT_FOUND.
  absl::StatusOr<const std::vector<std::string>*> GetStringArray(std::string_view key) const;
  absl::StatusOr<const std::vector<int64_t>*> GetIntArray(std::string_view key) const;
  absl::StatusOr<const std::vector<double>*> GetFloatArray(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

  // Tells the kernel that the mapped bytes [p, p + n) will not be read again soon: the
  // whole pages inside leave this process's resident memory (a later read maps them
  // back from the page cache or the file). No-op for a file not mapped (Parse).
  void Release(const void* p, size_t n) const;
  // Copies the mapped bytes [p, p + n) to `dst` by reading the file (pread) rather than
  // through the mapping, so the pages are not mapped into this process again (what a
  // lookup of a few rows of a large released tensor wants); a memcpy when not mapped.
  void CopyOut(const void* p, size_t n, void* dst) const;

  // Formats an error that names this file: "<path>: <msg>".
  absl::Status Error(absl::StatusCode code, std::string_view msg) const;

 private:
  GgufFile() = default;
  absl::Status ParseImpl();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;     // base_ came from mmap
  int fd_ = -1;             // kept open for CopyOut
  std::string owned_;       // backing store for Parse()
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, Value, std::less<>> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds a GGUF v3 file in memory, for gen-model and tests.
class GgufWriter {
 public:
  void SetString(const std::string& key, const std::string& v);
  void SetUint32(const std::string& key, uint32_t v);
  void SetInt32(const std::string& key, int32_t v);
  void SetFloat32(const std::string& key, float v);
  void SetBool(const std::string& key, bool v);
  void SetStringArray(const std::string& key, const std::vector<std::string>& v);
  void SetFloat32Array(const std::string& key, const std::vector<float>& v);
  void SetInt32Array(const std::string& key, const std::vector<int32_t>& v);
  // `data` must hold RowBytes(type, ne[0]) * rows bytes. Dimensions are ne0 first.
  void AddTensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                 std::string data);
  // Serialises header, metadata, tensor infos and aligned data.
  std::string Serialize() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Kv { std::string key; std::string encoded; };  // type tag + payload
  struct Tensor { std::string name; GgmlType type; std::vector<int64_t> ne; std::string data; };
  void Put(const std::string& key, std::string encoded);
  std::vector<Kv> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace pice::gguf

#endif  // PICE_ENGINE_GGUF_GGUF_H_
