// Copied from ../shared/tools/tsan (see its README) so that scripts/sanitize.sh --tsan
// runs on a fresh clone; linked into every executable of a ThreadSanitizer build only.
// Makes the (uninstrumented) system absl::Mutex / absl::CondVar visible to ThreadSanitizer:
// interposes the exported member functions, annotates with the TSan mutex API, and forwards
// to the real implementation found with dlsym(RTLD_NEXT).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>
#include <cstdio>
#include <cstdlib>
#include "absl/synchronization/mutex.h"

namespace {
template <typename F>
F Real(const char* sym) {
  void* p = dlsym(RTLD_NEXT, sym);
  if (!p) { fprintf(stderr, "absl_tsan_shim: no %s\n", sym); abort(); }
  return reinterpret_cast<F>(p);
}
#define REAL(type, sym) static auto real = Real<type>(sym)
constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;
thread_local int depth = 0;
struct Guard { bool outer; Guard() : outer(depth++ == 0) {} ~Guard() { --depth; } };
inline void Acq(void* m, unsigned f) { __tsan_mutex_pre_lock(m, f); __tsan_mutex_post_lock(m, f, 0); }
inline void Rel(void* m, unsigned f) { __tsan_mutex_pre_unlock(m, f); __tsan_mutex_post_unlock(m, f); }
}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN
using M = Mutex;
void Mutex::Lock() {
  Guard g; REAL(void (*)(M*), "_ZN4absl7debian35Mutex4LockEv");
  if (g.outer) __tsan_mutex_pre_lock(this, 0); real(this); if (g.outer) __tsan_mutex_post_lock(this, 0, 0);
}
void Mutex::ReaderLock() {
  Guard g; REAL(void (*)(M*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  if (g.outer) __tsan_mutex_pre_lock(this, kRead); real(this); if (g.outer) __tsan_mutex_post_lock(this, kRead, 0);
}
void Mutex::Unlock() {
  Guard g; REAL(void (*)(M*), "_ZN4absl7debian35Mutex6UnlockEv");
  if (g.outer) __tsan_mutex_pre_unlock(this, 0); real(this); if (g.outer) __tsan_mutex_post_unlock(this, 0);
}
void Mutex::ReaderUnlock() {
  Guard g; REAL(void (*)(M*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  if (g.outer) __tsan_mutex_pre_unlock(this, kRead); real(this); if (g.outer) __tsan_mutex_post_unlock(this, kRead);
}
bool Mutex::TryLock() {
  Guard g; REAL(bool (*)(M*), "_ZN4absl7debian35Mutex7TryLockEv");
  if (g.outer) __tsan_mutex_pre_lock(this, kTry); bool ok = real(this);
  if (g.outer) __tsan_mutex_post_lock(this, kTry | (ok ? 0 : kTryFailed), 0); return ok;
}
bool Mutex::ReaderTryLock() {
  Guard g; REAL(bool (*)(M*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  if (g.outer) __tsan_mutex_pre_lock(this, kTry | kRead); bool ok = real(this);
  if (g.outer) __tsan_mutex_post_lock(this, kTry | kRead | (ok ? 0 : kTryFailed), 0); return ok;
}
void Mutex::LockWhen(const Condition& c) {
  Guard g; REAL(void (*)(M*, const Condition&), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  if (g.outer) __tsan_mutex_pre_lock(this, 0); real(this, c); if (g.outer) __tsan_mutex_post_lock(this, 0, 0);
}
void Mutex::ReaderLockWhen(const Condition& c) {
  Guard g; REAL(void (*)(M*, const Condition&), "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  if (g.outer) __tsan_mutex_pre_lock(this, kRead); real(this, c); if (g.outer) __tsan_mutex_post_lock(this, kRead, 0);
}
bool Mutex::LockWhenWithTimeout(const Condition& c, absl::Duration d) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Duration), "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (g.outer) __tsan_mutex_pre_lock(this, 0); bool r = real(this, c, d); if (g.outer) __tsan_mutex_post_lock(this, 0, 0); return r;
}
bool Mutex::LockWhenWithDeadline(const Condition& c, absl::Time t) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Time), "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (g.outer) __tsan_mutex_pre_lock(this, 0); bool r = real(this, c, t); if (g.outer) __tsan_mutex_post_lock(this, 0, 0); return r;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& c, absl::Duration d) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Duration), "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (g.outer) __tsan_mutex_pre_lock(this, kRead); bool r = real(this, c, d); if (g.outer) __tsan_mutex_post_lock(this, kRead, 0); return r;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& c, absl::Time t) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Time), "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (g.outer) __tsan_mutex_pre_lock(this, kRead); bool r = real(this, c, t); if (g.outer) __tsan_mutex_post_lock(this, kRead, 0); return r;
}
// Await* release and re-acquire internally: annotate a release before and an acquire after.
void Mutex::Await(const Condition& c) {
  Guard g; REAL(void (*)(M*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  if (g.outer) Rel(this, 0); real(this, c); if (g.outer) Acq(this, 0);
}
bool Mutex::AwaitWithTimeout(const Condition& c, absl::Duration d) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Duration), "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (g.outer) Rel(this, 0); bool r = real(this, c, d); if (g.outer) Acq(this, 0); return r;
}
bool Mutex::AwaitWithDeadline(const Condition& c, absl::Time t) {
  Guard g; REAL(bool (*)(M*, const Condition&, absl::Time), "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (g.outer) Rel(this, 0); bool r = real(this, c, t); if (g.outer) Acq(this, 0); return r;
}
Mutex::~Mutex() {
  Guard g; REAL(void (*)(M*), "_ZN4absl7debian35MutexD2Ev");
  if (g.outer) __tsan_mutex_destroy(this, 0); real(this);
}
void CondVar::Wait(Mutex* mu) {
  Guard g; REAL(void (*)(CondVar*, M*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  if (g.outer) Rel(mu, 0); real(this, mu); if (g.outer) Acq(mu, 0);
}
bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration d) {
  Guard g; REAL(bool (*)(CondVar*, M*, absl::Duration), "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  if (g.outer) Rel(mu, 0); bool r = real(this, mu, d); if (g.outer) Acq(mu, 0); return r;
}
bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time t) {
  Guard g; REAL(bool (*)(CondVar*, M*, absl::Time), "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  if (g.outer) Rel(mu, 0); bool r = real(this, mu, t); if (g.outer) Acq(mu, 0); return r;
}
ABSL_NAMESPACE_END
}  // namespace absl
