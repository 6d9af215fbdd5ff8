// An emulated network link between two processes on this host: a TCP relay that delays,
// rate-limits and (as TCP sees it) loses what crosses it, for `pice bench testbed`.
//
// The kernel here has tc's tbf but not netem, so delay, jitter and loss are emulated in
// user space, per direction, on the byte stream:
//   - bandwidth: each chunk is serialized at `mbit` after the previous one (a FIFO link);
//   - delay: it arrives `rtt / 2` (+ uniform jitter in [-jitter, +jitter]) after that;
//   - loss: TCP never shows a lost packet to the application, only its retransmission:
//     each 1448-byte segment is lost with probability `loss`, and a chunk holding a lost
//     segment arrives `rto` later (200 ms, Linux's minimum RTO) — with everything behind
//     it, as TCP delivers in order (head-of-line blocking).
// Order is kept (a chunk never overtakes the one before it). What this does not model: TCP
// congestion control's reaction to the loss (the window halving), and fast retransmit's
// shorter recovery when later segments are in flight.
//
// One accepting thread; per relayed connection two threads per direction (reader, writer).
// Stop (or the destructor) closes every socket and joins every thread.
#ifndef PICE_BENCH_RELAY_H_
#define PICE_BENCH_RELAY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"

namespace pice::bench {

struct LinkSpec {
  double rtt_ms = 0;      // round trip: each direction gets half
  double jitter_ms = 0;   // uniform in [-jitter, +jitter] per chunk, per direction
  double mbit = 0;        // per direction; 0 = unlimited
  double loss = 0;        // per 1448-byte segment
  double rto_ms = 200;    // what a lost segment costs
  std::string Describe() const;
  // Reads `parent`'s `link:` mapping (rtt, jitter, rto as durations; bandwidth_mbit; loss),
  // when it has one; the testbed's and the simulator's files share it.
  static absl::Status Read(const ConfigNode& parent, LinkSpec* out);
};

class LinkRelay {
 public:
  // Listens on 127.0.0.1 (any free port) and relays every connection to `upstream`
  // (host:port) through the emulated link.
  static absl::StatusOr<std::unique_ptr<LinkRelay>> Start(const std::string& upstream,
                                                          const LinkSpec& link, uint64_t seed);
  ~LinkRelay();
  LinkRelay(const LinkRelay&) = delete;
  LinkRelay& operator=(const LinkRelay&) = delete;

  std::string address() const;
  void Stop();
  uint64_t bytes() const { return bytes_; }
  uint64_t stalls() const { return stalls_; }   // chunks delayed by an emulated loss

  class Pipe;

 private:
  LinkRelay() = default;
  void AcceptLoop();

  std::string upstream_host_;
  int upstream_port_ = 0;
  LinkSpec link_;
  uint64_t seed_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> bytes_{0}, stalls_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Pipe>> pipes_;  // guarded by mu_
  std::vector<int> fds_;                      // guarded by mu_; closed in Stop
};

}  // namespace pice::bench

#endif  // PICE_BENCH_RELAY_H_
