// API keys and their limits (scheduler.yaml `api_keys_file:`, `pice local --api-keys`).
//
// The file holds one key per line, never the key itself:
//   # name   sha256-hex-of-the-key                                            limits
//   alice    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  concurrent=4 qpm=120 tpm=20000
//   batch    60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
// (`printf %s "$KEY" | sha256sum`.) Limits, each optional: `concurrent` queries at once,
// `qpm` queries per minute and `tpm` generated tokens per minute (token buckets that refill
// continuously, a minute's worth at most). A key without a limit has only the scheduler's
// own (limits.max_queries_per_client applies to `concurrent` when unset).
//
// With a keys file, every query must present a listed key (gRPC metadata `authorization:
// Bearer KEY` or `x-api-key: KEY`; HTTP the same headers): a missing or unknown key is
// UNAUTHENTICATED (HTTP 401) with one message for both, so a caller learns nothing about
// which keys exist. Limits follow the key's name; unknown keys never get a budget. Logs
// name the key's name, never the key. The file is re-read when it changes (checked at
// most once a second); a file that no longer parses is refused with its error in the log
// and the previous keys stay.
//
// Thread-safe.
#ifndef PICE_SCHEDULER_API_KEYS_H_
#define PICE_SCHEDULER_API_KEYS_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/file_watch.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace pice::scheduler {

struct KeyLimits {
  int concurrent = 0;   // 0 = the scheduler's per-client limit
  double qpm = 0;       // 0 = unlimited
  double tpm = 0;       // 0 = unlimited
};

struct ApiKey {
  std::string name;
  std::string sha256_hex;  // lower case
  KeyLimits limits;
};

// Parses a keys file's text; errors name `file` and the line.
absl::StatusOr<std::map<std::string, ApiKey>> ParseApiKeys(const std::string& text,
                                                          const std::string& file);
// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

class ApiKeys {
 public:
  // Reads `path`; NOT_FOUND / INVALID_ARGUMENT naming it.
  static absl::StatusOr<std::unique_ptr<ApiKeys>> Load(const std::string& path);

  // The key presented (empty when none) -> its entry, or nullopt. Re-reads the file when
  // it changed.
  std::optional<ApiKey> Find(std::string_view key);
  size_t size() const;

 private:
  ApiKeys() = default;
  void MaybeReload();

  std::string path_;
  mutable absl::Mutex mu_;
  std::map<std::string, ApiKey> by_hash_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<FileWatch> watch_;  // set once by Load
};

// Per-name token buckets for qpm and tpm. Thread-safe.
class KeyBuckets {
 public:
  // Takes one query from `name`'s qpm bucket and checks its tpm bucket is not empty.
  // False with *retry_after_ms when either is exhausted.
  bool Admit(const ApiKey& key, int* retry_after_ms);
  // Charges generated tokens to `name`'s tpm bucket (may go negative: the next queries
  // wait until it refills).
  void Charge(const ApiKey& key, int64_t tokens);

 private:
  struct Bucket {
    bool started = false;  // a new bucket starts full
    double level = 0;      // may go below 0 (tokens charged after the fact)
    std::chrono::steady_clock::time_point at;
  };
  static void Refill(Bucket* b, double per_minute, std::chrono::steady_clock::time_point now);
  absl::Mutex mu_;
  std::map<std::string, Bucket> qpm_ ABSL_GUARDED_BY(mu_), tpm_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_API_KEYS_H_
