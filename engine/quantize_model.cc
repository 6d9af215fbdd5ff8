#include "engine/quantize_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/quantize_k.h"
#include "engine/quant_mix.h"
#include "engine/status_macros.h"

namespace pice {
namespace {

using gguf::GgmlType;

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

// One metadata entry exactly as stored: key, then type tag and payload bytes.
struct RawKv {
  std::string key;
  std::string encoded;
};

// A bounds-checked reader over a file's header.
class HeaderReader {
 public:
  explicit HeaderReader(std::ifstream* in) : in_(in) {}
  bool Bytes(size_t n, std::string* out) {
    const size_t at = out->size();
    out->resize(at + n);
    return n == 0 || static_cast<bool>(in_->read(out->data() + at, static_cast<std::streamsize>(n)));
  }
  template <typename T>
  bool Scalar(T* v, std::string* copy) {
    std::string b;
    if (!Bytes(sizeof(T), &b)) return false;
    std::memcpy(v, b.data(), sizeof(T));
    if (copy != nullptr) copy->append(b);
    return true;
  }
  bool String(std::string* s, std::string* copy) {
    uint64_t n;
    if (!Scalar(&n, copy) || n > (uint64_t{1} << 32)) return false;
    std::string b;
    if (!Bytes(n, &b)) return false;
    if (copy != nullptr) copy->append(b);
    if (s != nullptr) *s = std::move(b);
    return true;
  }
  // Copies the payload of a value of type `t` to `copy`.
  bool Value(uint32_t t, std::string* copy, int depth) {
    static constexpr size_t kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t > 12) return false;
    if (t == 8) return String(nullptr, copy);
    if (t != 9) return Bytes(kSizes[t], copy);
    uint32_t at;
    uint64_t n;
    if (depth > 8 || !Scalar(&at, copy) || !Scalar(&n, copy) || at > 12) return false;
    if (at != 8 && at != 9) return n <= (uint64_t{1} << 34) && Bytes(n * kSizes[at], copy);
    for (uint64_t k = 0; k < n; ++k) {
      if (!Value(at, copy, depth + 1)) return false;
    }
    return true;
  }

 private:
  std::ifstream* in_;
};

// The metadata of `path` in file order (GgufFile keeps it sorted by key). The file has
// been validated by GgufFile::Open already.
absl::StatusOr<std::vector<RawKv>> ReadRawMetadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HeaderReader r(&in);
  auto bad = [&] { return absl::DataLossError(absl::StrCat(path, ": cannot reread the metadata")); };
  uint32_t magic, version;
  uint64_t n_tensors, n_kv;
  if (!in || !r.Scalar(&magic, nullptr) || !r.Scalar(&version, nullptr) ||
      !r.Scalar(&n_tensors, nullptr) || !r.Scalar(&n_kv, nullptr) || magic != kGgufMagic) {
    return bad();
  }
  std::vector<RawKv> kvs;
  for (uint64_t k = 0; k < n_kv; ++k) {
    RawKv kv;
    uint32_t t;
    if (!r.String(&kv.key, nullptr) || !r.Scalar(&t, &kv.encoded) || !r.Value(t, &kv.encoded, 0)) {
      return bad();
    }
    kvs.push_back(std::move(kv));
  }
  return kvs;
}

void AppendU32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
void AppendU64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }
void AppendStr(std::string* s, const std::string& v) {
  AppendU64(s, v.size());
  s->append(v);
}
RawKv U32Kv(const std::string& key, uint32_t v) {
  RawKv kv{key, ""};
  AppendU32(&kv.encoded, 4);  // GGUF uint32
  AppendU32(&kv.encoded, v);
  return kv;
}

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// Converts rows [r0, r1) of `t` to `type` into `dst` (the whole tensor's output).
void ConvertRows(const gguf::TensorInfo& t, GgmlType type, int64_t r0, int64_t r1, uint8_t* dst) {
  const int64_t cols = t.ne[0];
  const int64_t in_row = gguf::RowBytes(t.type, cols), out_row = gguf::RowBytes(type, cols);
  std::vector<float> f(static_cast<size_t>(cols));
  for (int64_t r = r0; r < r1; ++r) {
    kernels::DequantizeRow(t.type, t.data + r * in_row, f.data(), cols);
    kernels::QuantizeRowRef(type, f.data(), dst + r * out_row, cols);
  }
}

}  // namespace

absl::Status QuantizeModel(const std::string& in, const std::string& out,
                           const QuantizeModelOptions& options, QuantizeModelReport* report) {
  PICE_ASSIGN_OR_RETURN(const uint32_t ftype, MixFileType(options.mix));
  PICE_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(in));

  std::vector<MixTensor> tensors;
  for (const gguf::TensorInfo& t : file->tensors()) {
    if (t.type != GgmlType::kF32 && t.type != GgmlType::kF16 && t.type != GgmlType::kBF16) {
      return absl::FailedPreconditionError(absl::StrCat(
          in, ": tensor '", t.name, "' is ", gguf::GgmlTypeName(uint32_t(t.type)),
          "; quantize needs an F32, F16 or BF16 model (requantizing is not supported)"));
    }
    tensors.push_back({t.name, std::vector<int64_t>(t.ne, t.ne + 4), t.type});
  }
  PICE_ASSIGN_OR_RETURN(const std::string arch, file->GetString("general.architecture", "llama"));
  absl::StatusOr<int64_t> n_layer = file->GetInt(arch + ".block_count");
  if (!n_layer.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(in, ": no integer ", arch, ".block_count (the number of layers)"));
  }
  // Only for llama.cpp's 70B class; a per-layer array (other architectures) reads as 0.
  const absl::StatusOr<int64_t> n_head = file->GetInt(arch + ".attention.head_count", 0);
  const absl::StatusOr<int64_t> n_head_kv =
      file->GetInt(arch + ".attention.head_count_kv", n_head.value_or(0));
  MixOptions mix_options;
  mix_options.pure = options.pure;
  mix_options.is_70b = IsLlamaType70B(arch, int(*n_layer), int(n_head.value_or(0)),
                                       int(n_head_kv.value_or(0)));
  int n_fallback = 0;
  absl::StatusOr<std::vector<GgmlType>> types =
      ChooseTensorTypes(options.mix, tensors, int(*n_layer), &n_fallback, mix_options);
  if (!types.ok()) {
    return absl::Status(types.status().code(), absl::StrCat(in, ": ", types.status().message()));
  }
  PICE_ASSIGN_OR_RETURN(std::vector<RawKv> kvs, ReadRawMetadata(in));

  // Metadata: the input's, in its order, as gguf_set_kv copies it; then
  // gguf_set_val_u32 moves (or adds) these two keys to the end. Split keys are dropped.
  std::vector<RawKv> out_kvs;
  for (RawKv& kv : kvs) {
    if (kv.key == "general.quantization_version" || kv.key == "general.file_type" ||
        kv.key == "split.no" || kv.key == "split.count" || kv.key == "split.tensors.count") {
      continue;
    }
    out_kvs.push_back(std::move(kv));
  }
  out_kvs.push_back(U32Kv("general.quantization_version", kQuantizationVersion));
  out_kvs.push_back(U32Kv("general.file_type", ftype));

  const uint64_t align = file->alignment();
  const std::vector<size_t> order = LlamaTensorOrder(tensors);
  std::string header;
  AppendU32(&header, kGgufMagic);
  AppendU32(&header, 3);
  AppendU64(&header, order.size());
  AppendU64(&header, out_kvs.size());
  for (const RawKv& kv : out_kvs) {
    AppendStr(&header, kv.key);
    header.append(kv.encoded);
  }
  QuantizeModelReport rep;
  uint64_t offset = 0;
  for (size_t i : order) {
    const gguf::TensorInfo& t = file->tensors()[i];
    int n_dims = 1;  // ggml_n_dims
    for (int d = 3; d >= 1; --d) {
      if (t.ne[d] > 1) {
        n_dims = d + 1;
        break;
      }
    }
    AppendStr(&header, t.name);
    AppendU32(&header, uint32_t(n_dims));
    for (int d = 0; d < n_dims; ++d) AppendU64(&header, uint64_t(t.ne[d]));
    AppendU32(&header, uint32_t((*types)[i]));
    AppendU64(&header, offset);
    const uint64_t bytes = uint64_t(gguf::RowBytes((*types)[i], t.ne[0]) * t.NumRows());
    offset = AlignUp(offset + bytes, align);
    ++rep.n_tensors;
    rep.n_converted += (*types)[i] != t.type;
    ++rep.type_counts[(*types)[i]];
    rep.in_bytes += t.nbytes;
    rep.out_bytes += bytes;
  }
  rep.n_fallback = n_fallback;
  header.resize(AlignUp(header.size(), align), '\0');

  const std::string tmp = out + ".tmp";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) return absl::PermissionDeniedError(absl::StrCat(out, ": cannot create ", tmp));
  auto fail = [&](const std::string& what) {
    f.close();
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat(out, ": ", what));
  };
  f.write(header.data(), std::streamsize(header.size()));

  const int n_threads = std::max(1, options.n_threads);
  std::vector<uint8_t> buf;
  for (size_t i : order) {
    const gguf::TensorInfo& t = file->tensors()[i];
    const GgmlType type = (*types)[i];
    const int64_t rows = t.NumRows();
    const size_t bytes = size_t(gguf::RowBytes(type, t.ne[0]) * rows);
    if (type == t.type) {
      f.write(reinterpret_cast<const char*>(t.data), std::streamsize(bytes));
    } else {
      buf.assign(bytes, 0);
      const int64_t nt = std::min<int64_t>(n_threads, std::max<int64_t>(1, rows / 16));
      std::vector<std::thread> workers;
      for (int64_t w = 1; w < nt; ++w) {
        workers.emplace_back(ConvertRows, std::cref(t), type, rows * w / nt, rows * (w + 1) / nt,
                             buf.data());
      }
      ConvertRows(t, type, 0, rows / nt, buf.data());
      for (std::thread& th : workers) th.join();
      f.write(reinterpret_cast<const char*>(buf.data()), std::streamsize(bytes));
    }
    static const char kZeros[256] = {};
    for (size_t pad = AlignUp(bytes, align) - bytes; pad > 0;) {
      const size_t n = std::min(pad, sizeof(kZeros));
      f.write(kZeros, std::streamsize(n));
      pad -= n;
    }
    if (!f) return fail(absl::StrCat("write failed at tensor '", t.name, "'"));
  }
  f.close();
  if (!f) return fail("write failed");
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::PermissionDeniedError(absl::StrCat(out, ": cannot rename ", tmp, " to it"));
  }
  if (report != nullptr) *report = rep;
  return absl::OkStatus();
}

}  // namespace pice
