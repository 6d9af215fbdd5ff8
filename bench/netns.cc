// Network namespaces for the testbed (see netns.h).
#include "bench/netns.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pice::bench {
namespace {

// Runs a command line quietly; an error naming it when it fails.
absl::Status Sh(const std::string& cmd) {
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("`", cmd, "` failed"));
}

std::string FindIp() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

std::string Subnet(int id) { return absl::StrCat("10.213.", id % 250, "."); }

}  // namespace

absl::StatusOr<std::unique_ptr<NetnsLab>> NetnsLab::Create() {
  const std::string ip = FindIp();
  if (ip.empty()) return absl::FailedPreconditionError("no `ip` (iproute2) on this machine");
  if (geteuid() != 0) return absl::FailedPreconditionError("network namespaces need root");
  std::unique_ptr<NetnsLab> lab(new NetnsLab(ip, int(getpid() % 100000)));
  const std::string br = absl::StrCat("ptb", lab->id_);
  if (absl::Status s = Sh(absl::StrCat(ip, " link add ", br, " type bridge")); !s.ok()) return s;
  lab->bridge_ = true;
  for (const std::string& c : {absl::StrCat(ip, " addr add ", Subnet(lab->id_), "1/24 dev ", br),
                               absl::StrCat(ip, " link set ", br, " up")}) {
    if (absl::Status s = Sh(c); !s.ok()) return s;
  }
  // A whole node's setup once, then undone: where a namespace can be made but not
  // configured (a chroot, a container without the capability), say so now, not half-way.
  if (auto probe = lab->AddNode(1); !probe.ok()) return probe.status();
  (void)Sh(absl::StrCat(ip, " netns del ", lab->namespaces_.back()));
  lab->namespaces_.pop_back();
  ++lab->probes_;
  return lab;
}

NetnsLab::~NetnsLab() {
  for (const std::string& ns : namespaces_) (void)Sh(absl::StrCat(ip_, " netns del ", ns));
  if (bridge_) (void)Sh(absl::StrCat(ip_, " link del ptb", id_));
}

absl::StatusOr<std::string> NetnsLab::AddNode(double mbit) {
  const size_t i = namespaces_.size() + size_t(probes_);
  const std::string ns = absl::StrCat("pice-tb-", id_, "-", i);
  const std::string host = absl::StrCat("ptb", id_, "h", i), node = absl::StrCat("ptb", id_, "n", i);
  const std::string addr = absl::StrCat(Subnet(id_), 10 + i);
  if (absl::Status s = Sh(absl::StrCat(ip_, " netns add ", ns)); !s.ok()) return s;
  namespaces_.push_back(ns);
  std::vector<std::string> cmds = {
      absl::StrCat(ip_, " link add ", host, " type veth peer name ", node),
      absl::StrCat(ip_, " link set ", node, " netns ", ns),
      absl::StrCat(ip_, " link set ", host, " master ptb", id_),
      absl::StrCat(ip_, " link set ", host, " up"),
      absl::StrCat(ip_, " -n ", ns, " link set lo up"),
      absl::StrCat(ip_, " -n ", ns, " addr add ", addr, "/24 dev ", node),
      absl::StrCat(ip_, " -n ", ns, " link set ", node, " up"),
  };
  if (mbit > 0) {
    // tbf: a token bucket at the link's rate on each side's egress (burst ~ 10 ms of it).
    const std::string tbf = absl::StrCat(" root tbf rate ", int64_t(mbit * 1000), "kbit burst ",
                                         std::max<int64_t>(int64_t(mbit * 1e6 / 8 / 100), 3200),
                                         " latency 1000ms");
    cmds.push_back(absl::StrCat("tc qdisc add dev ", host, tbf));
    cmds.push_back(absl::StrCat(ip_, " netns exec ", ns, " tc qdisc add dev ", node, tbf));
  }
  for (const std::string& c : cmds) {
    if (absl::Status s = Sh(c); !s.ok()) return s;
  }
  return addr;
}

std::vector<std::string> NetnsLab::Exec(size_t i) const { return {ip_, "netns", "exec", namespaces_.at(i)}; }

}  // namespace pice::bench
