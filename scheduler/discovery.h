// Edges found at run time instead of a fixed list (scheduler/registry.h applies them):
//
//   edges:
//     - 10.0.0.7:50071                                  # fixed, as before
//     - {dns: "pice-edge.pice.svc.cluster.local:50071", refresh: 5s}
//     - {dns: "pice-edge.test:50071", refresh: 1s, server: "127.0.0.1:5353"}
//   edges_file: edges.txt                               # reloaded when it changes
//
// `dns`: every A/AAAA record of the name is an edge on the port (a Kubernetes headless
// Service gives one per pod), re-resolved every `refresh`; `server` asks that DNS server
// (host:port) instead of the system's resolvers. `edges_file`: one edge per line,
// `host:port` or `name host:port`, `#` comments. New edges are probed before they get work;
// edges that disappear get no new work and finish what they run. A lookup or file that fails
// keeps the edges it gave last (and says so in the log).
#ifndef PICE_SCHEDULER_DISCOVERY_H_
#define PICE_SCHEDULER_DISCOVERY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pice::scheduler {

struct EdgeAddress;

struct EdgeSource {
  std::string dns_host;   // dns: the name
  int port = 0;           // dns: the edges' port
  std::string server;     // dns: "host:port" of the DNS server; "" = the system's
  std::string file;       // edges_file
  double refresh_s = 5;   // how often it is looked at
  std::string Describe() const;  // "dns pice-edge.test:50071" / "edges_file edges.txt"
};

// The addresses (IPv4 "a.b.c.d", IPv6 "x::y") of `host`, sorted; NOT_FOUND when it has none,
// UNAVAILABLE when the server does not answer within `timeout_s`.
absl::StatusOr<std::vector<std::string>> ResolveHost(const std::string& host,
                                                     const std::string& server, double timeout_s);

// The edges a source names now ("host:port" addresses; dns names them by address).
absl::StatusOr<std::vector<EdgeAddress>> DiscoverEdges(const EdgeSource& source);

// Reads an edges_file; errors name the file and line.
absl::StatusOr<std::vector<EdgeAddress>> ReadEdgesFile(const std::string& path);

}  // namespace pice::scheduler

#endif  // PICE_SCHEDULER_DISCOVERY_H_
