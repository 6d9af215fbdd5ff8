#include "scheduler/response_cache.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <chrono>
#include <list>
#include <mutex>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "spdlog/spdlog.h"

namespace pice::scheduler {
namespace {

using Clock = std::chrono::steady_clock;

// In-process: LRU over a list, bounded by bytes, entries expire after the TTL.
class MemoryCache final : public ResponseCache {
 public:
  explicit MemoryCache(const CacheOptions& o) : o_(o) {}

  std::optional<std::string> Get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return std::nullopt;
    }
    if (Clock::now() >= it->second->expires) {
      EraseLocked(it->second);
      ++stats_.misses;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.hits;
    return it->second->value;
  }

  void Put(const std::string& key, const std::string& value) override {
    const int64_t size = static_cast<int64_t>(key.size() + value.size());
    if (size > o_.max_bytes) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) EraseLocked(it->second);
    const auto ttl = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.ttl_s));
    lru_.push_front({key, value, Clock::now() + ttl});
    index_[key] = lru_.begin();
    stats_.bytes += size;
    ++stats_.stores;
    while (stats_.bytes > o_.max_bytes && !lru_.empty()) {
      EraseLocked(std::prev(lru_.end()));
      ++stats_.evictions;
    }
  }

  CacheStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    CacheStats s = stats_;
    s.entries = static_cast<int64_t>(lru_.size());
    return s;
  }
  const char* kind() const override { return "memory"; }

 private:
  struct Entry {
    std::string key, value;
    Clock::time_point expires;
  };
  void EraseLocked(std::list<Entry>::iterator e) {
    stats_.bytes -= static_cast<int64_t>(e->key.size() + e->value.size());
    index_.erase(e->key);
    lru_.erase(e);
  }

  const CacheOptions o_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  CacheStats stats_;
};

// Redis through hiredis: one connection, commands under a mutex, short timeouts. A failure
// drops the connection; the next try is a second later at the soonest.
class RedisCache final : public ResponseCache {
 public:
  explicit RedisCache(const CacheOptions& o) : o_(o) {
    const size_t colon = o.address.rfind(':');
    host_ = o.address.substr(0, colon);
    if (host_.size() >= 2 && host_.front() == '[') host_ = host_.substr(1, host_.size() - 2);
    (void)absl::SimpleAtoi(o.address.substr(colon + 1), &port_);
  }
  ~RedisCache() override {
    if (ctx_) redisFree(ctx_);
  }

  std::optional<std::string> Get(const std::string& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    redisReply* r = CommandLocked({"GET", o_.prefix + key});
    if (!r) return std::nullopt;
    std::optional<std::string> out;
    if (r->type == REDIS_REPLY_STRING) out = std::string(r->str, r->len);
    freeReplyObject(r);
    ++(out ? stats_.hits : stats_.misses);
    return out;
  }

  void Put(const std::string& key, const std::string& value) override {
    if (static_cast<int64_t>(value.size()) > o_.max_bytes) return;
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t ttl_ms = std::max<int64_t>(1, static_cast<int64_t>(o_.ttl_s * 1000));
    redisReply* r = CommandLocked({"SET", o_.prefix + key, value, "PX", std::to_string(ttl_ms)});
    if (!r) return;
    if (r->type != REDIS_REPLY_ERROR) ++stats_.stores;
    freeReplyObject(r);
  }

  CacheStats Stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  const char* kind() const override { return "redis"; }

 private:
  timeval Timeout() const {
    const int64_t us = static_cast<int64_t>(o_.timeout_s * 1e6);
    return {static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  }

  // The reply, or null after counting and logging the failure.
  redisReply* CommandLocked(const std::vector<std::string>& args) {
    if (!ctx_) {
      if (Clock::now() < retry_at_) return nullptr;  // down: answer uncached meanwhile
      ctx_ = redisConnectWithTimeout(host_.c_str(), port_, Timeout());
      if (!ctx_ || ctx_->err) return FailLocked(ctx_ ? ctx_->errstr : "cannot allocate");
      const timeval tv = Timeout();
      redisSetTimeout(ctx_, tv);
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!r) return FailLocked(ctx_->errstr);
    if (!stats_.available) spdlog::info("cache: redis at {} answers again", o_.address);
    stats_.available = true;
    return r;
  }

  redisReply* FailLocked(const char* why) {
    ++stats_.errors;
    if (stats_.available) {
      spdlog::warn("cache: redis at {}: {}; answering uncached until it is back", o_.address,
                   why ? why : "error");
    }
    stats_.available = false;
    if (ctx_) redisFree(ctx_);
    ctx_ = nullptr;
    retry_at_ = Clock::now() + std::chrono::seconds(1);
    return nullptr;
  }

  const CacheOptions o_;
  std::string host_;
  int port_ = 6379;
  mutable std::mutex mu_;
  redisContext* ctx_ = nullptr;
  Clock::time_point retry_at_;
  CacheStats stats_;
};

std::string NormalizePrompt(const std::string& p) {
  std::string out;
  bool space = false;
  for (char c : absl::StripAsciiWhitespace(p)) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// A length-prefixed field, so that no two different requests share a key text.
void Field(std::string* out, absl::string_view name, absl::string_view value) {
  absl::StrAppend(out, name, ":", value.size(), ":", value, "\n");
}

constexpr char kMagic[] = "PICE-CACHE-1\n";

}  // namespace

absl::Status ReadCacheOptions(const ConfigNode& root, CacheOptions* out) {
  if (!root.Has("cache")) return absl::OkStatus();
  const ConfigNode c = root.Child("cache");
  CacheOptions o;
  o.kind = "memory";
  if (c.IsScalar()) {
    auto v = c.AsString();
    if (!v.ok() || (*v != "off" && *v != "memory" && *v != "redis")) {
      return root.ChildError("cache", "expected off, memory, redis or a mapping {kind, ttl, ...}");
    }
    o.kind = *v;
    *out = o;
    return absl::OkStatus();
  }
  PICE_RETURN_IF_ERROR(c.CheckKeys({"kind", "ttl", "max_bytes", "address", "prefix", "timeout"}));
  PICE_RETURN_IF_ERROR(c.ReadEnum("kind", &o.kind, {"memory", "redis", "off"}));
  PICE_RETURN_IF_ERROR(c.ReadSeconds("ttl", &o.ttl_s, 0.001, 365 * 86400.0));
  PICE_RETURN_IF_ERROR(c.ReadInt64("max_bytes", &o.max_bytes, 1024, int64_t(1) << 40));
  PICE_RETURN_IF_ERROR(c.ReadString("address", &o.address, false));
  PICE_RETURN_IF_ERROR(c.ReadString("prefix", &o.prefix));
  PICE_RETURN_IF_ERROR(c.ReadSeconds("timeout", &o.timeout_s, 0.001, 60));
  const size_t colon = o.address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(o.address.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return c.ChildError("address", absl::StrCat("expected host:port, got \"", o.address, "\""));
  }
  *out = o;
  return absl::OkStatus();
}

std::unique_ptr<ResponseCache> ResponseCache::Create(const CacheOptions& options) {
  if (options.kind == "memory") return std::make_unique<MemoryCache>(options);
  if (options.kind == "redis") return std::make_unique<RedisCache>(options);
  return nullptr;
}

bool Deterministic(const v1::QueryRequest& req) {
  return req.params().temperature() == 0 || req.params().seed() != 0;
}

std::string CacheKey(const v1::QueryRequest& req, const std::string& tenant,
                     const std::string& versions) {
  const v1::SamplingParams& p = req.params();
  std::string t;
  Field(&t, "tenant", tenant);
  Field(&t, "versions", versions);
  Field(&t, "prompt", NormalizePrompt(req.prompt()));
  for (const v1::ChatTurn& h : req.history()) {
    Field(&t, "turn", absl::StrCat(h.role(), "\x1f", h.content()));
  }
  Field(&t, "route", absl::StrCat(static_cast<int>(req.route())));
  Field(&t, "model", req.model());
  Field(&t, "format", absl::StrCat(static_cast<int>(req.format())));
  Field(&t, "max_points", absl::StrCat(req.max_points()));
  Field(&t, "category", req.category());
  Field(&t, "params",
        absl::StrFormat("%d %.9g %.9g %d %u %.9g %.9g", p.max_tokens(), p.temperature(), p.top_p(),
                        p.top_k(), p.seed(), p.min_p(), p.repeat_penalty()));
  for (const std::string& s : p.stop()) Field(&t, "stop", s);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(t.data(), t.size(), md, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), len));
}

bool WorthCaching(const std::vector<v1::QueryEvent>& events) {
  if (events.empty() || !events.back().has_answer()) return false;
  const v1::AnswerEvent& a = events.back().answer();
  if (a.degraded() || a.failed_over() > 0 || a.cached()) return false;
  return a.finish_reason() == v1::STOP || a.finish_reason() == v1::LENGTH;
}

std::string EncodeEvents(const std::vector<v1::QueryEvent>& events) {
  std::string out = kMagic;
  for (const v1::QueryEvent& e : events) {
    std::string b = e.SerializeAsString();
    uint8_t len[10];
    const uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(b.size(), len);
    out.append(reinterpret_cast<const char*>(len), end - len);
    out += b;
  }
  return out;
}

bool DecodeEvents(const std::string& bytes, std::vector<v1::QueryEvent>* events) {
  const size_t m = sizeof(kMagic) - 1;
  if (bytes.compare(0, m, kMagic) != 0) return false;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()) + m,
                                            static_cast<int>(bytes.size() - m));
  events->clear();
  while (!in.ExpectAtEnd()) {
    uint64_t len = 0;
    if (!in.ReadVarint64(&len) || len > bytes.size()) return false;
    std::string b;
    if (!in.ReadString(&b, static_cast<int>(len))) return false;
    v1::QueryEvent e;
    if (!e.ParseFromString(b)) return false;
    events->push_back(std::move(e));
  }
  return !events->empty() && events->back().has_answer();
}

}  // namespace pice::scheduler
