// Whether a file changed since it was last looked at (modification time or size), looking
// at most once per period — for files re-read while serving (API keys, the routing policy).
#ifndef PICE_COMMON_FILE_WATCH_H_
#define PICE_COMMON_FILE_WATCH_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace pice {

class FileWatch {
 public:
  // Takes the file's current state as seen ("" = never changes).
  explicit FileWatch(std::string path,
                     std::chrono::steady_clock::duration period = std::chrono::seconds(1));
  // True when a period has passed since the last look and the file's modification time or
  // size differ from then (a file that cannot be looked at: false). Thread-safe.
  bool Changed();
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  const std::chrono::steady_clock::duration period_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point checked_;  // guarded by mu_
  int64_t mtime_ns_ = 0, size_ = 0;                // guarded by mu_
};

}  // namespace pice

#endif  // PICE_COMMON_FILE_WATCH_H_
