#include "common/file_watch.h"

#include <sys/stat.h>

namespace pice {
namespace {

bool Stat(const std::string& path, int64_t* mtime_ns, int64_t* size) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return false;
  *mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  *size = st.st_size;
  return true;
}

}  // namespace

FileWatch::FileWatch(std::string path, std::chrono::steady_clock::duration period)
    : path_(std::move(path)), period_(period), checked_(std::chrono::steady_clock::now()) {
  Stat(path_, &mtime_ns_, &size_);
}

bool FileWatch::Changed() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (now - checked_ < period_) return false;
  checked_ = now;
  int64_t mtime = 0, size = 0;
  if (!Stat(path_, &mtime, &size) || (mtime == mtime_ns_ && size == size_)) return false;
  mtime_ns_ = mtime;
  size_ = size;
  return true;
}

}  // namespace pice
