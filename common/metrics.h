// Prometheus metrics for every binary, on Debian's prometheus-cpp.
//
// One registry per process (pice local's whole stack included: each node's series carry a
// `node` label, so one /metrics serves them all). Counters and histograms are updated where
// things happen; values a node only knows as state (engine queue, KV bytes, token totals) are
// read at scrape time by refresh functions (OnScrape), run just before the registry is
// collected. Served on `metrics_listen: host:port` (GET /metrics) by prometheus-cpp's
// exposer. Names are vLLM's with the prefix `pice_` (vLLM's `vllm:` would fail `promtool check
// metrics`: colons are reserved for recording rules); README "Operating PICE".
#ifndef PICE_COMMON_METRICS_H_
#define PICE_COMMON_METRICS_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace pice {

class Metrics {
 public:
  // The process's registry.
  static Metrics& Get();

  prometheus::Registry& registry() { return *registry_; }

  // Families (created once; the same name returns the same family).
  prometheus::Family<prometheus::Counter>& Counter(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Gauge>& Gauge(const std::string& name, const std::string& help);
  prometheus::Family<prometheus::Histogram>& Histogram(const std::string& name,
                                                       const std::string& help);

  // `fn` runs before each scrape until the returned handle is destroyed.
  std::shared_ptr<void> OnScrape(std::function<void()> fn);

  // Serves GET /metrics on `listen` (host:port; port 0 = a free one); the bound port.
  // Plaintext (prometheus-cpp's civetweb; its TLS crashes with Debian 12's OpenSSL 3):
  // bind it to a private address; the scheduler also serves /metrics on its HTTP API port,
  // TLS included. UNAVAILABLE when it cannot bind, INVALID_ARGUMENT for a bad address. One
  // listener per process: a second call returns the first port.
  absl::StatusOr<int> Serve(const std::string& listen);

  // The exposition text, as a scrape returns it (tests, `pice local --metrics-port`).
  std::string Text();

  // Whether the query path records metrics (default on; `pice bench e2e --no-metrics` turns
  // it off to measure what it costs).
  static bool Enabled() { return enabled_.load(std::memory_order_relaxed); }
  static void SetEnabled(bool on) { enabled_.store(on); }

  // Bucket bounds in seconds for latencies from 1 ms to 2 min.
  static const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

 private:
  Metrics();
  class Impl;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Impl> impl_;
  std::mutex serve_mu_;
  static inline std::atomic<bool> enabled_{true};
};

// Sets a counter to `total` (a running total read from a node's state) by adding the
// difference; totals that go down (a restart) are ignored.
void AdvanceCounter(prometheus::Counter& c, double total);

}  // namespace pice

#endif  // PICE_COMMON_METRICS_H_
