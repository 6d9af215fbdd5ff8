// The scheduler's response cache: an exact-match LLM answer cache.
//
// A repeated query is answered by replaying the events of its first answer (route, sketch
// points, expansions, deltas, answer with `cached: true`) without touching a node. The key
// is the SHA-256 of everything that could change the answer:
//   - the prompt, normalized (trimmed, runs of whitespace as one space), the history turns,
//     the route the client asked for, the raw-model name and format, max_points, category,
//     and every sampling parameter;
//   - the model_version of the cloud and of every edge (node/model_version.h: template,
//     model files, ensemble), so a model upgrade never meets an answer of the old one;
//   - the tenant: the API key's name, unless the deciding policy rule says `cache: shared`
//     (without an API keys file every client is one tenant). `cache: off` skips the cache.
// Only deterministic requests are cached (temperature 0, or a fixed seed), and only whole
// answers (finish STOP or LENGTH, not degraded, no failover, not cancelled).
//
//   cache:                  # absent: off (pice local's built-in config turns it on)
//     kind: memory          # memory (the default once `cache:` is given) | redis | off
//     ttl: 10m              # an entry's life
//     max_bytes: 67108864   # memory: all entries together (least recently used go first);
//                           # redis: the largest entry stored (Redis's own maxmemory with
//                           # allkeys-lru bounds the total)
//     address: 127.0.0.1:6379   # redis: host:port, shared by scheduler replicas
//     prefix: "pice:cache:"     # redis: key prefix
//     timeout: 100ms            # redis: connect and command timeout
// Redis unreachable: queries are answered uncached (a warning in the log once per outage,
// `errors` in the stats), and it is tried again at most once a second.
#ifndef PICE_SCHEDULER_RESPONSE_CACHE_H_
#define PICE_SCHEDULER_RESPONSE_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "pice/v1/pice.pb.h"

namespace pice::scheduler {

struct CacheOptions {
  std::string kind = "off";  // memory | redis | off (`cache:` given without kind: memory)
  double ttl_s = 600;
  int64_t max_bytes = 64 << 20;
  std::string address = "127.0.0.1:6379";
  std::string prefix = "pice:cache:";
  double timeout_s = 0.1;
};

// Reads `cache:` of `root` when present (a bare `cache: off` too).
absl::Status ReadCacheOptions(const ConfigNode& root, CacheOptions* out);

struct CacheStats {
  uint64_t hits = 0, misses = 0, stores = 0, evictions = 0, errors = 0;
  int64_t entries = 0, bytes = 0;  // memory kind
  bool available = true;           // redis: reachable at the last try
};

class ResponseCache {
 public:
  // nullptr for kind off.
  static std::unique_ptr<ResponseCache> Create(const CacheOptions& options);
  virtual ~ResponseCache() = default;

  // The value stored under `key`, or nullopt (absent, expired, or the store unreachable).
  virtual std::optional<std::string> Get(const std::string& key) = 0;
  virtual void Put(const std::string& key, const std::string& value) = 0;
  virtual CacheStats Stats() const = 0;
  virtual const char* kind() const = 0;
};

// Whether a request's answer is the same every time (temperature 0 or a seed).
bool Deterministic(const v1::QueryRequest& req);
// The cache key (hex SHA-256) of `req` for `tenant` ("" = shared) and the nodes'
// `versions` (the registry's AnswerVersions).
std::string CacheKey(const v1::QueryRequest& req, const std::string& tenant,
                     const std::string& versions);
// Whether a finished query's events make a whole answer worth keeping.
bool WorthCaching(const std::vector<v1::QueryEvent>& events);
// Events to and from the stored bytes; false for bytes that are not such a record.
std::string EncodeEvents(const std::vector<v1::QueryEvent>& events);
bool DecodeEvents(const std::string& bytes, std::vector<v1::QueryEvent>* events);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_RESPONSE_CACHE_H_
