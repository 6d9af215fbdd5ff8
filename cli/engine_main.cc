// pice-engine: the engine commands alone (no gRPC), for kernel work and small boards.
// `pice` offers the same commands next to the serving ones.
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "cli/commands.h"
#include "cli/usage.h"

int main(int argc, char** argv) {
  const std::string usage = pice::cli::FullUsage("pice-engine", /*engine_only=*/true);
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    std::fputs(usage.c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  const std::string sub = cmd == "bench" && !args.empty() ? "bench " + args[0] : cmd;
  const bool engine_command =
      sub == "generate" || sub == "tokenize" || sub == "gen-model" || sub == "bench engine";
  if (engine_command && pice::cli::WantsHelp(args)) {
    std::fputs(pice::cli::CommandUsage(sub).c_str(), stdout);
    return 0;
  }
  if (cmd == "generate") return pice::cli::RunGenerate(args);
  if (cmd == "tokenize") return pice::cli::RunTokenize(args);
  if (cmd == "gen-model") return pice::cli::RunGenModel(args);
  if (cmd == "bench" && !args.empty() && args[0] == "engine") {
    return pice::bench::RunBenchEngine({args.begin() + 1, args.end()});
  }
  std::fprintf(stderr, "pice-engine: unknown command '%s'\n%s", cmd.c_str(), usage.c_str());
  return 2;
}
