#include "node/node_metrics.h"

#include "common/metrics.h"

namespace pice {

NodeMetrics::NodeMetrics(const std::string& node,
                         std::function<std::vector<BackendStats>()> stats) {
  Metrics& m = Metrics::Get();
  const prometheus::Labels l = {{"node", node}};
  auto& running = m.Gauge("pice_num_requests_running", "Requests running").Add(l);
  auto& waiting = m.Gauge("pice_num_requests_waiting", "Requests waiting to join the batch").Add(l);
  auto& kv = m.Gauge("pice_kv_cache_usage_perc",
                     "KV cache bytes in use over the node's KV budget (0 to 1)").Add(l);
  auto& prompt = m.Counter("pice_prompt_tokens_total", "Prompt tokens admitted").Add(l);
  auto& gen = m.Counter("pice_generation_tokens_total", "Tokens generated").Add(l);
  auto& hits = m.Counter("pice_prefix_cache_hits_total",
                         "Requests that reused a cached prompt prefix").Add(l);
  // The series live in the process's registry; the lambda holds pointers to them.
  scrape_ = m.OnScrape([running = &running, waiting = &waiting, kv = &kv, prompt = &prompt,
                        gen = &gen, hits = &hits, stats = std::move(stats)] {
    double r = 0, w = 0, used = 0, budget = 0, p = 0, g = 0, h = 0;
    for (const BackendStats& s : stats()) {
      r += s.active;
      w += s.queued;
      used += double(s.kv_bytes);
      budget += double(s.max_kv_bytes);
      p += double(s.prompt_tokens);
      g += double(s.generated_tokens);
      h += double(s.prefix_hits);
    }
    running->Set(r);
    waiting->Set(w);
    kv->Set(budget > 0 ? used / budget : 0);
    AdvanceCounter(*prompt, p);
    AdvanceCounter(*gen, g);
    AdvanceCounter(*hits, h);
  });
}

}  // namespace pice
