// pice-engine: the engine commands alone (no gRPC), for kernel work and small boards.
// `pice` offers the same commands next to the serving ones.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs("usage: pice-engine generate|tokenize|gen-model|bench engine [flags] (see `pice help`)\n", stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "generate") return pice::cli::RunGenerate(args);
  if (cmd == "tokenize") return pice::cli::RunTokenize(args);
  if (cmd == "gen-model") return pice::cli::RunGenModel(args);
  if (cmd == "bench" && !args.empty() && args[0] == "engine") {
    return pice::cli::RunBenchEngine({args.begin() + 1, args.end()});
  }
  std::fprintf(stderr, "pice-engine: unknown command '%s'\n", cmd.c_str());
  return 2;
}
