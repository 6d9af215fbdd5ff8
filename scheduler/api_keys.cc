#include "scheduler/api_keys.h"


#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

absl::StatusOr<std::map<std::string, ApiKey>> ParseApiKeys(const std::string& text,
                                                          const std::string& file) {
  std::map<std::string, ApiKey> out;
  std::map<std::string, int> names;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(file, ":", line_no, ": ", why));
    };
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() < 2) return bad("expected `name sha256-hex [concurrent=N] [qpm=N] [tpm=N]`");
    ApiKey k;
    k.name = std::string(f[0]);
    k.sha256_hex = absl::AsciiStrToLower(f[1]);
    if (k.sha256_hex.size() != 64 ||
        k.sha256_hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return bad(absl::StrCat("key \"", k.name,
                              "\": the second field must be the key's SHA-256 as 64 hex digits "
                              "(printf %s \"$KEY\" | sha256sum), never the key itself"));
    }
    for (size_t i = 2; i < f.size(); ++i) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(f[i], absl::MaxSplits('=', 1));
      double v = 0;
      if (!absl::SimpleAtod(kv.second, &v) || !(v >= 0) || v > 1e12) {
        return bad(absl::StrCat("key \"", k.name, "\": ", kv.first,
                                ": expected a non-negative number, got \"", kv.second, "\""));
      }
      if (kv.first == "concurrent" && v == std::floor(v) && v <= 1e6) {
        k.limits.concurrent = static_cast<int>(v);
      } else if (kv.first == "qpm") {
        k.limits.qpm = v;
      } else if (kv.first == "tpm") {
        k.limits.tpm = v;
      } else {
        return bad(absl::StrCat("key \"", k.name, "\": unknown limit \"", kv.first,
                                "\" (concurrent=N, qpm=N, tpm=N)"));
      }
    }
    if (names.count(k.name)) {
      return bad(absl::StrCat("key name \"", k.name, "\" is already used on line ", names[k.name]));
    }
    if (out.count(k.sha256_hex)) return bad(absl::StrCat("key \"", k.name, "\": the same hash twice"));
    names[k.name] = line_no;
    out[k.sha256_hex] = std::move(k);
  }
  return out;
}

namespace {
absl::StatusOr<std::string> Read(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the API keys file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

absl::StatusOr<std::unique_ptr<ApiKeys>> ApiKeys::Load(const std::string& path) {
  std::unique_ptr<ApiKeys> k(new ApiKeys());
  k->path_ = path;
  absl::StatusOr<std::string> text = Read(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::map<std::string, ApiKey>> keys = ParseApiKeys(*text, path);
  if (!keys.ok()) return keys.status();
  absl::MutexLock lock(&k->mu_);
  k->by_hash_ = *std::move(keys);
  k->watch_ = std::make_unique<FileWatch>(path);
  return k;
}

void ApiKeys::MaybeReload() {
  if (!watch_->Changed()) return;
  absl::StatusOr<std::string> text = Read(path_);
  absl::StatusOr<std::map<std::string, ApiKey>> keys =
      text.ok() ? ParseApiKeys(*text, path_) : absl::StatusOr<std::map<std::string, ApiKey>>(text.status());
  if (!keys.ok()) {
    spdlog::error("API keys not reloaded, the previous ones stay: {}", std::string(keys.status().message()));
    return;
  }
  absl::MutexLock lock(&mu_);
  spdlog::info("API keys reloaded from {}: {} keys", path_, keys->size());
  by_hash_ = *std::move(keys);
}

std::optional<ApiKey> ApiKeys::Find(std::string_view key) {
  MaybeReload();
  if (key.empty()) return std::nullopt;
  const std::string h = Sha256Hex(key);
  absl::MutexLock lock(&mu_);
  auto it = by_hash_.find(h);
  if (it == by_hash_.end()) return std::nullopt;
  return it->second;
}

size_t ApiKeys::size() const {
  absl::MutexLock lock(&mu_);
  return by_hash_.size();
}

void KeyBuckets::Refill(Bucket* b, double per_minute, std::chrono::steady_clock::time_point now) {
  if (!b->started) {
    b->started = true;
    b->level = per_minute;
  } else {
    const double s = std::chrono::duration<double>(now - b->at).count();
    b->level = std::min(per_minute, b->level + s * per_minute / 60.0);
  }
  b->at = now;
}

bool KeyBuckets::Admit(const ApiKey& key, int* retry_after_ms) {
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  double wait_s = 0;
  Bucket* q = nullptr;
  if (key.limits.qpm > 0) {
    q = &qpm_[key.name];
    Refill(q, key.limits.qpm, now);
    if (q->level < 1) wait_s = std::max(wait_s, (1 - q->level) * 60.0 / key.limits.qpm);
  }
  if (key.limits.tpm > 0) {
    Bucket* t = &tpm_[key.name];
    Refill(t, key.limits.tpm, now);
    if (t->level <= 0) wait_s = std::max(wait_s, (1 - t->level) * 60.0 / key.limits.tpm);
  }
  if (wait_s > 0) {
    *retry_after_ms = static_cast<int>(std::ceil(wait_s * 1000));
    return false;
  }
  if (q) q->level -= 1;
  return true;
}

void KeyBuckets::Charge(const ApiKey& key, int64_t tokens) {
  if (key.limits.tpm <= 0 || tokens <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  absl::MutexLock lock(&mu_);
  Bucket* t = &tpm_[key.name];
  Refill(t, key.limits.tpm, now);
  t->level -= double(tokens);
}

}  // namespace pice::scheduler
