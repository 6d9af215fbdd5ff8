// pice: the PICE command-line tool.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "cli/commands.h"
#include "cli/usage.h"

int main(int argc, char** argv) {
  if (auto rc = pice::cli::PrintHelpIfAsked("pice", /*engine_only=*/false, argc, argv)) return *rc;
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "generate") return pice::cli::RunGenerate(args);
  if (cmd == "tokenize") return pice::cli::RunTokenize(args);
  if (cmd == "gen-model") return pice::cli::RunGenModel(args);
  if (cmd == "quantize") return pice::cli::RunQuantize(args);
  if (cmd == "query") return pice::cli::RunQueryCommand(args);
  if (cmd == "local") return pice::cli::RunLocal(args);
  if (cmd == "policy") return pice::cli::RunPolicy(args);
  if (cmd == "bench") {
    if (args.empty()) return pice::cli::Fail("bench", "which benchmark? (engine, quality, e2e, chaos, testbed, sim)", 2);
    const std::string what = args[0];
    args.erase(args.begin());
    if (what == "engine") return pice::bench::RunBenchEngine(args);
    if (what == "quality") return pice::bench::RunBenchQuality(args);
    if (what == "e2e") return pice::bench::RunBenchE2e(args);
    if (what == "chaos") return pice::bench::RunBenchChaos(args);
    if (what == "testbed") return pice::bench::RunBenchTestbed(args);
    if (what == "sim") return pice::bench::RunBenchSim(args);
    return pice::cli::Fail("bench", "unknown benchmark '" + what + "' (engine, quality, e2e, chaos, testbed, sim)",
                           2);
  }
  std::fprintf(stderr, "pice: unknown command '%s'\n%s", cmd.c_str(),
               pice::cli::FullUsage("pice", false).c_str());
  return 2;
}
