// Load curves shared by the testbed and the simulator (see curves.h).
#include "bench/curves.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/stats.h"

namespace pice::bench {

using json = nlohmann::json;

std::map<std::string, double> RunFigures(const std::vector<Sample>& ss, double rate) {
  std::vector<double> lat, first;
  double makespan = 0, useful = 0, cloud = 0, right = 0, parts = 0, first_end = 1e300;
  int ok = 0;
  for (const Sample& s : ss) {
    if (!s.ok) continue;  // a shed query is counted in `failed`, not as wrong parts
    for (bool b : s.parts) right += b, parts += 1;
    ++ok;
    lat.push_back(s.latency_ms);
    first.push_back(s.first_ms);
    makespan = std::max(makespan, s.end_s);
    first_end = std::min(first_end, s.end_s);
    cloud += s.cloud_tokens;
    useful += s.useful_tokens;
  }
  double mean = 0;
  for (double v : lat) mean += v;
  std::map<std::string, double> f;
  f["offered_qps"] = rate;
  f["sent"] = double(ss.size());
  f["failed"] = double(ss.size() - size_t(ok));
  f["throughput_qps"] = makespan > 0 ? ok / makespan : 0;
  // Completions per second between the first and the last answer: at saturation the
  // service rate without the run's ramp-up (throughput_qps counts the first arrival's wait).
  f["completion_rate_qps"] = ok >= 2 && makespan > first_end ? (ok - 1) / (makespan - first_end) : 0;
  f["useful_tokens_per_s"] = makespan > 0 ? useful / makespan : 0;
  f["latency_p50_ms"] = Percentile(lat, 0.5);
  f["latency_p99_ms"] = Percentile(lat, 0.99);
  f["latency_mean_ms"] = lat.empty() ? 0 : mean / double(lat.size());
  f["first_content_p50_ms"] = Percentile(first, 0.5);
  f["cloud_tokens_per_query"] = ok ? cloud / ok : 0;
  f["part_accuracy"] = parts > 0 ? right / parts : 0;
  return f;
}

json SummarizeCurves(const RunsByRoute& runs, const CurveOptions& o) {
  json out, curves = json::object(), knees = json::object();
  for (const std::string& r : o.routes) {
    curves[r] = json::array();
    double knee = 0;
    for (double rate : o.rates) {
      auto it = runs.find(r);
      if (it == runs.end() || !it->second.count(rate)) continue;
      json p = SummarizeRuns(it->second.at(rate));
      if (p["throughput_qps"].get<double>() >= 0.9 * rate && p["failed"].get<double>() == 0) knee = rate;
      curves[r].push_back(p);
    }
    knees[r] = knee;
  }
  out["curves"] = curves;
  out["knee_qps"] = knees;
  if (!runs.count("cloud") || !runs.count("sketch") || curves["cloud"].empty()) return out;
  double slo = o.slo_p99_ms;
  if (slo <= 0) slo = 5 * curves["cloud"][0]["latency_p99_ms"].get<double>();
  auto best = [&](const std::string& r, const char* key) {
    double b = 0;
    for (const json& p : curves[r]) {
      if (p["latency_p99_ms"].get<double>() <= slo) b = std::max(b, p[key].get<double>());
    }
    return b;
  };
  const double moderate = o.moderate_rate > 0 ? o.moderate_rate : o.rates.front();
  auto at = [&](const std::string& r, const char* key) {
    for (const json& p : curves[r]) {
      if (p["offered_qps"].get<double>() == moderate) return p[key].get<double>();
    }
    return 0.0;
  };
  // Quality where the route is not overloaded (no query shed): at overload answers are
  // timed out or shed, which says nothing about the route's answers.
  auto accuracy = [&](const std::string& r) {
    double m = 0;
    int n = 0;
    for (const json& p : curves[r]) {
      if (p["failed"].get<double>() == 0) m += p["part_accuracy"].get<double>(), ++n;
    }
    return n ? m / n : 0;
  };
  out["slo_p99_ms"] = slo;
  out["cloud_qps_at_slo"] = best("cloud", "throughput_qps");
  out["sketch_qps_at_slo"] = best("sketch", "throughput_qps");
  out["throughput_ratio"] = best("cloud", "throughput_qps") > 0
                                ? best("sketch", "throughput_qps") / best("cloud", "throughput_qps")
                                : 0.0;
  out["completion_rate_ratio"] = best("cloud", "completion_rate_qps") > 0
                                     ? best("sketch", "completion_rate_qps") / best("cloud", "completion_rate_qps")
                                     : 0.0;
  out["moderate_rate_qps"] = moderate;
  out["latency_ratio"] = at("cloud", "latency_mean_ms") > 0
                             ? at("sketch", "latency_mean_ms") / at("cloud", "latency_mean_ms")
                             : 0.0;
  out["quality_delta_points"] = (accuracy("sketch") - accuracy("cloud")) * 100;
  return out;
}

void PrintCurves(const json& summary, const std::vector<std::string>& routes) {
  for (const std::string& r : routes) {
    std::printf("%s route (knee %g q/s):\n", r.c_str(), summary["knee_qps"][r].get<double>());
    for (const json& p : summary["curves"][r]) {
      std::printf("  %6g q/s offered: %6.2f q/s [%.2f, %.2f] (completions %.2f q/s), p50 %7.1f ms, "
                  "p99 %7.1f ms, mean %7.1f ms, first content %6.1f ms, cloud tokens/query %5.1f, "
                  "parts %.2f %%\n",
                  p["offered_qps"].get<double>(), p["throughput_qps"].get<double>(),
                  p["throughput_qps_range"][0].get<double>(), p["throughput_qps_range"][1].get<double>(),
                  p["completion_rate_qps"].get<double>(), p["latency_p50_ms"].get<double>(),
                  p["latency_p99_ms"].get<double>(), p["latency_mean_ms"].get<double>(),
                  p["first_content_p50_ms"].get<double>(), p["cloud_tokens_per_query"].get<double>(),
                  p["part_accuracy"].get<double>() * 100);
    }
  }
  if (summary.contains("throughput_ratio")) {
    std::printf("throughput_ratio %.2f (at p99 <= %.0f ms; completion rates %.2f), latency_ratio %.2f "
                "(at %g q/s), quality_delta_points %+.2f\n",
                summary["throughput_ratio"].get<double>(), summary["slo_p99_ms"].get<double>(),
                summary["completion_rate_ratio"].get<double>(), summary["latency_ratio"].get<double>(),
                summary["moderate_rate_qps"].get<double>(), summary["quality_delta_points"].get<double>());
  }
}

void RunGnuplot(const std::string& script, const char* who) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "%s: no gnuplot: %s written, no PNGs\n", who, script.c_str());
    return;
  }
  if (std::system(("gnuplot '" + script + "'").c_str()) != 0) {
    std::fprintf(stderr, "%s: gnuplot failed on %s\n", who, script.c_str());
  }
}

void WriteCurvePlots(const std::string& dir, const Series& series, const std::string& stem,
                     const std::string& prefix) {
  std::string dat = "# series offered_qps throughput_qps p50_ms p99_ms first_content_p50_ms\n";
  for (const auto& [label, points] : series) {
    dat += "# " + label + "\n";
    for (const json& p : points) {
      dat += absl::StrFormat("\"%s\" %g %g %g %g %g\n", label, p["offered_qps"].get<double>(),
                             p["throughput_qps"].get<double>(), p["latency_p50_ms"].get<double>(),
                             p["latency_p99_ms"].get<double>(), p["first_content_p50_ms"].get<double>());
    }
    dat += "\n\n";
  }
  const std::string dat_path = dir + "/" + stem + ".dat", gp_path = dir + "/" + stem + ".gp";
  std::ofstream(dat_path, std::ios::trunc) << dat;
  std::string gp = "set terminal pngcairo size 900,560\nset key top left\nset grid\n"
                   "set xlabel 'offered load (queries/s)'\n";
  auto plot = [&](const std::string& png, const std::string& ylabel,
                  const std::vector<std::pair<int, std::string>>& cols) {
    gp += "set output '" + dir + "/" + prefix + png + "'\nset ylabel '" + ylabel + "'\nplot ";
    bool first = true;
    for (size_t i = 0; i < series.size(); ++i) {
      for (const auto& [col, label] : cols) {
        absl::StrAppend(&gp, first ? "" : ", ", "'", dat_path, "' index ", i, " using 2:", col,
                        " with linespoints title '", series[i].first, label.empty() ? "" : " ", label, "'");
        first = false;
      }
    }
    gp += "\n";
  };
  plot("latency.png", "latency (ms)", {{4, "p50"}, {5, "p99"}});
  plot("throughput.png", "completed queries/s", {{3, ""}});
  plot("first_content.png", "time to first answer content, p50 (ms)", {{6, ""}});
  std::ofstream(gp_path, std::ios::trunc) << gp;
  RunGnuplot(gp_path, "bench");
}

}  // namespace pice::bench
