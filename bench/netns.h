// Network namespaces for the testbed (`network: {namespaces: true}`): every node in its own
// namespace, joined to a bridge in this one by a veth pair, its bandwidth shaped by the
// kernel (tc tbf on both ends of the veth). The scheduler, the load and the relays (delay,
// jitter, loss: this kernel has no netem) stay here and reach the nodes over the bridge.
// Needs root and iproute2 (scripts/install-deps.sh installs it); Create says why not.
#ifndef PICE_BENCH_NETNS_H_
#define PICE_BENCH_NETNS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pice::bench {

class NetnsLab {
 public:
  // The bridge (10.213.K.1/24, K from the process id); an error naming the failed command
  // when `ip` is missing or not permitted.
  static absl::StatusOr<std::unique_ptr<NetnsLab>> Create();
  ~NetnsLab();  // deletes every namespace (their veths go with them) and the bridge
  NetnsLab(const NetnsLab&) = delete;
  NetnsLab& operator=(const NetnsLab&) = delete;

  // A namespace for the next node; `mbit` > 0 shapes both directions. Returns its address.
  absl::StatusOr<std::string> AddNode(double mbit);
  // argv prefix that runs a program in node i's namespace (AddNode order, from 0).
  std::vector<std::string> Exec(size_t i) const;
  size_t size() const { return namespaces_.size(); }

 private:
  NetnsLab(std::string ip, int id) : ip_(std::move(ip)), id_(id) {}
  std::string ip_;  // the `ip` binary
  int id_;
  bool bridge_ = false;
  int probes_ = 0;  // namespaces made and removed by Create's check (their numbers stay used)
  std::vector<std::string> namespaces_;
};

}  // namespace pice::bench

#endif  // PICE_BENCH_NETNS_H_
