#include "scheduler/discovery.h"

#include <arpa/inet.h>
#include <ares.h>
#include <sys/select.h>

#include <algorithm>
#include <fstream>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/server.h"
#include "scheduler/config.h"

namespace pice::scheduler {
namespace {

struct Lookup {
  int status = ARES_ENOTFOUND;
  std::vector<std::string> addresses;
};

void OnAddrInfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
  auto* l = static_cast<Lookup*>(arg);
  l->status = status;
  if (status != ARES_SUCCESS || result == nullptr) {
    if (result) ares_freeaddrinfo(result);
    return;
  }
  for (ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (n->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, buf, sizeof buf);
    } else if (n->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, buf, sizeof buf);
    } else {
      continue;
    }
    l->addresses.push_back(buf);
  }
  ares_freeaddrinfo(result);
}

}  // namespace

std::string EdgeSource::Describe() const {
  return file.empty() ? absl::StrCat("dns ", dns_host, ":", port) : absl::StrCat("edges_file ", file);
}

absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host,
                                                     const std::string& server, double timeout_s) {
  static std::once_flag init;
  std::call_once(init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts = {};
  opts.timeout = std::max(1, static_cast<int>(timeout_s * 1000 / 2));
  opts.tries = 2;
  ares_channel ch = nullptr;
  if (ares_init_options(&ch, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) != ARES_SUCCESS) {
    return absl::InternalError("dns: cannot start a resolver");
  }
  if (!server.empty() && ares_set_servers_ports_csv(ch, server.c_str()) != ARES_SUCCESS) {
    ares_destroy(ch);
    return absl::InvalidArgumentError(absl::StrCat("dns: bad server address \"", server, "\""));
  }
  Lookup l;
  ares_addrinfo_hints hints = {};
  hints.ai_family = AF_UNSPEC;
  ares_getaddrinfo(ch, host.c_str(), nullptr, &hints, OnAddrInfo, &l);
  for (;;) {
    fd_set r, w;
    FD_ZERO(&r);
    FD_ZERO(&w);
    const int nfds = ares_fds(ch, &r, &w);
    if (nfds == 0) break;
    timeval tv, *tvp = ares_timeout(ch, nullptr, &tv);
    select(nfds, &r, &w, nullptr, tvp);
    ares_process(ch, &r, &w);
  }
  ares_destroy(ch);
  if (l.status == ARES_ETIMEOUT || l.status == ARES_ECONNREFUSED || l.status == ARES_ESERVFAIL) {
    return absl::UnavailableError(absl::StrCat("dns: ", host, ": ", ares_strerror(l.status)));
  }
  if (l.status != ARES_SUCCESS || l.addresses.empty()) {
    return absl::NotFoundError(absl::StrCat("dns: ", host, ": ", ares_strerror(l.status)));
  }
  std::sort(l.addresses.begin(), l.addresses.end());
  l.addresses.erase(std::unique(l.addresses.begin(), l.addresses.end()), l.addresses.end());
  return l.addresses;
}

absl::StatusOr<std::vector<EdgeAddress>> ReadEdgesFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read the file"));
  std::vector<EdgeAddress> out;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    line = std::string(absl::StripAsciiWhitespace(line.substr(0, line.find('#'))));
    if (line.empty()) continue;
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", no, ": expected \"host:port\" or \"name host:port\""));
    }
    EdgeAddress a;
    a.address = f.back();
    if (f.size() == 2) a.name = f[0];
    if (absl::Status s = ValidateListenAddress(a.address, absl::StrCat(path, ":", no)); !s.ok()) {
      return s;
    }
    out.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<std::vector<EdgeAddress>> DiscoverEdges(const EdgeSource& source) {
  if (!source.file.empty()) return ReadEdgesFile(source.file);
  auto ips = ResolveHost(source.dns_host, source.server, 2.0);
  if (!ips.ok()) return ips.status();
  std::vector<EdgeAddress> out;
  for (const std::string& ip : *ips) {
    EdgeAddress a;
    a.address = ip.find(':') == std::string::npos ? absl::StrCat(ip, ":", source.port)
                                                  : absl::StrCat("[", ip, "]:", source.port);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace pice::scheduler
