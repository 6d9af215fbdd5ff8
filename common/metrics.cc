#include "common/metrics.h"

#include <map>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace pice {

// Collected first on every scrape: runs the refresh functions, contributes no family.
class Metrics::Impl : public prometheus::Collectable {
 public:
  // Under the lock: a refresh function's owner, removing it, waits for a scrape that runs it.
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [id, fn] : refresh) fn();
    return {};
  }

  mutable std::mutex mu;
  std::map<uint64_t, std::function<void()>> refresh;  // guarded by mu
  uint64_t next_id = 1;                               // guarded by mu
  std::unique_ptr<prometheus::Exposer> exposer;       // guarded by Metrics::serve_mu_
  int port = 0;                                       // guarded by Metrics::serve_mu_
};

Metrics& Metrics::Get() {
  static Metrics* m = new Metrics();  // never destroyed: served until exit
  return *m;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), impl_(std::make_shared<Impl>()) {}

prometheus::Family<prometheus::Counter>& Metrics::Counter(const std::string& name,
                                                          const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
}

prometheus::Family<prometheus::Gauge>& Metrics::Gauge(const std::string& name,
                                                      const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
}

prometheus::Family<prometheus::Histogram>& Metrics::Histogram(const std::string& name,
                                                              const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
}

std::shared_ptr<void> Metrics::OnScrape(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const uint64_t id = impl_->next_id++;
  impl_->refresh[id] = std::move(fn);
  std::weak_ptr<Impl> weak = impl_;
  return std::shared_ptr<void>(nullptr, [weak, id](void*) {
    if (auto impl = weak.lock()) {
      std::lock_guard<std::mutex> lock(impl->mu);
      impl->refresh.erase(id);
    }
  });
}

absl::StatusOr<int> Metrics::Serve(const std::string& listen) {
  PICE_RETURN_IF_ERROR(ValidateListenAddress(listen, "metrics_listen"));
  std::lock_guard<std::mutex> lock(serve_mu_);
  if (impl_->exposer) return impl_->port;
  std::string host = listen.substr(0, listen.rfind(':'));
  std::string port = listen.substr(listen.rfind(':') + 1);
  if (host == "0.0.0.0" || host.empty()) host = "";
  try {
    auto e = std::make_unique<prometheus::Exposer>(host.empty() ? port : host + ":" + port, 2);
    e->RegisterCollectable(impl_);  // first: refresh, then the registry
    e->RegisterCollectable(registry_);
    const auto ports = e->GetListeningPorts();
    impl_->port = ports.empty() ? 0 : ports.front();
    impl_->exposer = std::move(e);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot listen on ", listen, ": ", e.what()));
  }
  spdlog::info("metrics: /metrics on {}:{}", host.empty() ? "0.0.0.0" : host, impl_->port);
  return impl_->port;
}

std::string Metrics::Text() {
  impl_->Collect();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

const prometheus::Histogram::BucketBoundaries& Metrics::LatencyBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
      2.5,   5.0,    7.5,   10,   20,    40,   80,    120};
  return *b;
}

void AdvanceCounter(prometheus::Counter& c, double total) {
  const double now = c.Value();
  if (total > now) c.Increment(total - now);
}

}  // namespace pice
