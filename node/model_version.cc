#include "node/model_version.h"

#include <openssl/evp.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pice {
namespace {

using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

std::string Hex(const unsigned char* d, unsigned n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(d), n));
}

}  // namespace

absl::StatusOr<std::string> FileSha256(const std::string& path) {
  static std::mutex mu;
  static auto* done = new std::map<std::string, std::string>();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = done->find(path); it != done->end()) return it->second;
  }
  std::unique_ptr<FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot read the file"));
  MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
  }
  if (std::ferror(f.get())) return absl::DataLossError(absl::StrCat(path, ": read error"));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex = Hex(md, len);
  std::lock_guard<std::mutex> lock(mu);
  (*done)[path] = hex;
  return hex;
}

absl::StatusOr<std::string> ModelVersion(const std::string& template_path,
                                         const std::vector<EnsembleMember>& members,
                                         const std::string& extra) {
  std::string text;
  auto t = FileSha256(template_path);
  if (!t.ok()) return t.status();
  absl::StrAppend(&text, "template ", *t, "\n");
  for (const EnsembleMember& m : members) {
    absl::StrAppend(&text, "member ", m.name, " weight ", absl::StrFormat("%.17g", m.weight));
    if (m.temperature) absl::StrAppend(&text, " temperature ", absl::StrFormat("%.9g", *m.temperature));
    if (m.seed) absl::StrAppend(&text, " seed ", *m.seed);
    if (m.remote) {
      absl::StrAppend(&text, " remote ", m.remote->base_url, " ", m.remote->model, " ", m.remote->api);
    } else {
      auto h = FileSha256(m.model_path);
      if (!h.ok()) return h.status();
      absl::StrAppend(&text, " gguf ", *h);
    }
    text += "\n";
  }
  absl::StrAppend(&text, "extra ", extra, "\n");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return Hex(md, len);
}

}  // namespace pice
