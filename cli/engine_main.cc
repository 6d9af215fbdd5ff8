// pice-engine: the engine commands alone (no gRPC), for kernel work and small boards.
// `pice` offers the same commands next to the serving ones.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "cli/commands.h"
#include "cli/usage.h"

int main(int argc, char** argv) {
  if (auto rc = pice::cli::PrintHelpIfAsked("pice-engine", /*engine_only=*/true, argc, argv)) {
    return *rc;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "generate") return pice::cli::RunGenerate(args);
  if (cmd == "tokenize") return pice::cli::RunTokenize(args);
  if (cmd == "gen-model") return pice::cli::RunGenModel(args);
  if (cmd == "quantize") return pice::cli::RunQuantize(args);
  if (cmd == "bench" && !args.empty() && args[0] == "engine") {
    return pice::bench::RunBenchEngine({args.begin() + 1, args.end()});
  }
  std::fprintf(stderr, "pice-engine: unknown command '%s'\n%s", cmd.c_str(),
               pice::cli::FullUsage("pice-engine", true).c_str());
  return 2;
}
