// Statistics every benchmark reports the same way: percentiles of a sample, and for
// repeated runs the median of each figure with its [min, max] (never the best run).
#ifndef PICE_BENCH_STATS_H_
#define PICE_BENCH_STATS_H_

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace pice::bench {

// The nearest-rank percentile (p in [0, 1]); 0 for an empty sample.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// The median (the mean of the middle two for an even count); 0 for an empty sample.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A duration for progress lines: "42s", "3m07s".
inline std::string Hms(double seconds) {
  const int v = static_cast<int>(seconds + 0.5);
  return v >= 60 ? absl::StrFormat("%dm%02ds", v / 60, v % 60) : absl::StrFormat("%ds", v);
}

// Runs of one measurement (each a name -> figure map, the same names in every run):
// "<name>": the median over the runs, "<name>_range": [min, max].
inline nlohmann::json SummarizeRuns(const std::vector<std::map<std::string, double>>& runs) {
  nlohmann::json out = nlohmann::json::object();
  if (runs.empty()) return out;
  for (const auto& [name, unused] : runs.front()) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.at(name));
    out[name] = Median(v);
    out[name + "_range"] = {*std::min_element(v.begin(), v.end()),
                            *std::max_element(v.begin(), v.end())};
  }
  return out;
}

}  // namespace pice::bench

#endif  // PICE_BENCH_STATS_H_
