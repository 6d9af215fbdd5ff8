// The benchmarks behind `pice bench engine|quality|e2e|chaos` (cli/ only dispatches to
// them). Each prints JSON (one line with --json) and a readable summary, and returns the
// process exit status: 0, 1 when the run failed, 2 for a bad flag.
//   engine   bench/engine.cc   the engine's prefill and decode speed (also in pice-engine);
//            bench/mixed.cc    with --mixed: inter-token latency while a long prompt joins
//   quality  bench/quality.cc  answer quality of every route on pice-arith
//   e2e      bench/e2e.cc      latency and throughput of both routes, scheduler overhead
//   chaos    bench/chaos.cc    real processes while edges are killed and restarted
//   testbed  bench/testbed.cc  open-loop load on pinned processes over emulated links
//            (bench/relay.cc), both routes, knees and the speed-up ratios
//   sim      bench/sim/        the same system as a discrete-event simulation: curves,
//            calibration against a testbed run, scale study (bench/curves.cc: shared figures)
// bench/membw.cc is the separate pice-membw program (memory bandwidth probe).
#ifndef PICE_BENCH_BENCH_H_
#define PICE_BENCH_BENCH_H_

#include <string>
#include <vector>

namespace pice::bench {

int RunBenchEngine(const std::vector<std::string>& args);
// bench/mixed.cc: `bench engine --mixed`, decodes while a long prompt joins.
int RunBenchMixed(const std::string& model, int threads, int running, int long_tokens,
                  int step_tokens, int repeat);
int RunBenchQuality(const std::vector<std::string>& args);
int RunBenchE2e(const std::vector<std::string>& args);
int RunBenchChaos(const std::vector<std::string>& args);
int RunBenchTestbed(const std::vector<std::string>& args);
// bench/sim/sim_command.cc: the discrete-event simulator (bench/sim/sim.h).
int RunBenchSim(const std::vector<std::string>& args);

}  // namespace pice::bench

#endif  // PICE_BENCH_BENCH_H_
