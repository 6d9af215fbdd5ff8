// Read-bandwidth probe: the bound for single-sequence decode is bandwidth / weight
// bytes. Prints JSON {"threads": N, "gb_per_s": best of passes} for 1..N threads,
// measured like ../shared/baselines.md (vectorised sum over a 512 MiB array).
//   pice-membw [--threads N] [--mib M] [--passes P]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

double SumRange(const float* p, size_t n) {
  float acc[16] = {};
  for (size_t i = 0; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  }
  double s = 0;
  for (float a : acc) s += a;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int max_threads = 2, passes = 7;
  size_t mib = 512;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i];
    if (f == "--threads") max_threads = std::atoi(argv[i + 1]);
    else if (f == "--mib") mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (f == "--passes") passes = std::atoi(argv[i + 1]);
    else { std::fprintf(stderr, "pice-membw: unknown flag %s\n", f.c_str()); return 2; }
  }
  if (max_threads < 1 || passes < 1 || mib < 1) { std::fprintf(stderr, "pice-membw: bad value\n"); return 2; }
  const size_t n = mib * (size_t{1} << 20) / sizeof(float);
  std::vector<float> a(n, 1.0f);
  std::printf("{\"mib\": %zu, \"results\": [", mib);
  for (int t = 1; t <= max_threads; ++t) {
    double best = 0;
    for (int p = 0; p < passes; ++p) {
      std::vector<std::thread> th;
      std::vector<double> sums(t);
      auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < t; ++k) {
        th.emplace_back([&, k] { sums[k] = SumRange(a.data() + n / t * k, n / t); });
      }
      for (auto& x : th) x.join();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, double(n * sizeof(float)) / s / 1e9);
      if (sums[0] < 0) std::puts("");  // keep the sums alive
    }
    std::printf("%s{\"threads\": %d, \"gb_per_s\": %.2f}", t > 1 ? ", " : "", t, best);
  }
  std::printf("]}\n");
  return 0;
}
