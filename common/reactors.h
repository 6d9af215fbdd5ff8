// gRPC callback-API reactors that producers on other threads (engine workers) may feed
// without blocking and without caring whether the call is still alive.
//
// Lifetime: each reactor is owned by shared_ptrs — one held by itself until gRPC calls
// OnDone, the others by producers. Writes after the call is over are dropped, so an
// engine callback that fires late is harmless. The reactor only moves messages; no
// model work runs on gRPC's threads.
//
// Cancellation: cancelled() is a flag set when the client cancels, its deadline passes
// or a write fails; hand it to EngineRequest::cancelled so the engine stops the work.
#ifndef PICE_COMMON_REACTORS_H_
#define PICE_COMMON_REACTORS_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"

namespace pice {

// Server-streaming reactor with a queue: Write() from any thread, Finish() once.
template <typename Msg>
class StreamReactor : public grpc::ServerWriteReactor<Msg> {
 public:
  static std::shared_ptr<StreamReactor> Create() {
    std::shared_ptr<StreamReactor> r(new StreamReactor());
    r->self_ = r;
    return r;
  }

  // Queues `m` behind earlier messages. Dropped after Finish or once the call is over.
  void Write(Msg m) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_ || broken_) return;
      queue_.push_back(std::move(m));
    }
    Pump();
  }
  // Ends the call with `status` after the queued messages are sent. Later calls are ignored.
  void Finish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (finish_requested_) return;
      finish_requested_ = true;
      status_ = std::move(status);
    }
    Pump();
  }
  std::shared_ptr<std::atomic<bool>> cancelled() const { return cancelled_; }
  bool IsCancelled() const { return cancelled_->load(); }
  // Called once (on a gRPC thread, must not block) when the client cancels.
  void SetOnCancel(std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(f);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        broken_ = true;
        queue_.clear();
        cancelled_->store(true);
      }
    }
    Pump();
  }
  void OnCancel() override {
    cancelled_->store(true);
    std::function<void()> f;
    {
      absl::MutexLock lock(&mu_);
      f = std::move(on_cancel_);
    }
    if (f) f();
  }
  void OnDone() override {
    std::shared_ptr<StreamReactor> keep;  // may delete this on return
    absl::MutexLock lock(&mu_);
    done_ = true;
    keep = std::move(self_);
  }

 private:
  StreamReactor() = default;

  // Starts the next write, or the finish when nothing is left. The gRPC call is made
  // outside mu_ in case a reaction runs inline.
  void Pump() {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (done_ || writing_ || finished_) return;
      if (!queue_.empty() && !broken_) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        action = kWrite;
      } else if (finish_requested_) {  // a broken stream still waits for the producer
        finished_ = true;
        status = status_;
        action = kFinish;
      }
    }
    if (action == kWrite) this->StartWrite(&current_);
    if (action == kFinish) this->grpc::ServerWriteReactor<Msg>::Finish(status);
  }

  absl::Mutex mu_;
  std::deque<Msg> queue_ ABSL_GUARDED_BY(mu_);
  Msg current_;  // the message being written; touched only by Pump between writes
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<StreamReactor> self_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

// Unary reactor whose response is filled and finished from any thread.
template <typename Response>
class UnaryReactor : public grpc::ServerUnaryReactor {
 public:
  // `response` is the gRPC-owned response message; it must only be written before Finish.
  static std::shared_ptr<UnaryReactor> Create(Response* response) {
    std::shared_ptr<UnaryReactor> r(new UnaryReactor(response));
    r->self_ = r;
    return r;
  }
  // Fills the response (unless the call is over) and finishes. Only the first call counts.
  void Finish(grpc::Status status, std::function<void(Response*)> fill = nullptr) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || done_) return;
      finished_ = true;
      if (fill && status.ok()) fill(response_);
    }
    this->grpc::ServerUnaryReactor::Finish(status);
  }
  std::shared_ptr<std::atomic<bool>> cancelled() const { return cancelled_; }
  bool IsCancelled() const { return cancelled_->load(); }
  void SetOnCancel(std::function<void()> f) {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(f);
  }

  void OnCancel() override {
    cancelled_->store(true);
    std::function<void()> f;
    {
      absl::MutexLock lock(&mu_);
      f = std::move(on_cancel_);
    }
    if (f) f();
  }
  void OnDone() override {
    std::shared_ptr<UnaryReactor> keep;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      keep = std::move(self_);
    }
  }

 private:
  explicit UnaryReactor(Response* response) : response_(response) {}
  absl::Mutex mu_;
  Response* response_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<UnaryReactor> self_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace pice

#endif  // PICE_COMMON_REACTORS_H_
