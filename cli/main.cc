// pice: the PICE command-line tool.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: pice <command> [flags]\n"
    "\n"
    "engine:\n"
    "  generate  --model M.gguf --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]\n"
    "            [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--threads N]\n"
    "            [--stop STR] [--chat] [--json]\n"
    "  tokenize  --model M.gguf --text TEXT [--no-bos] [--parse-special] [--json]\n"
    "  gen-model --arch llama|qwen2 --n-embd E --n-layer L --n-head H --n-head-kv K --n-ff F\n"
    "            --n-vocab V --type f32|f16|q8_0|q4_0 [--seed S] [--n-ctx C] --out FILE\n"
    "  bench engine --model M.gguf [--threads N] [--prompt-tokens P] [--gen-tokens G]\n"
    "            [--batch 1,2,4,8] [--repeat R] [--shared-prefix]\n"
    "\n"
    "serving:\n"
    "  query     [--target HOST:PORT] [--route auto|cloud|sketch] [--json] [--max-tokens N]\n"
    "            [--temperature T] [--top-p P] [--top-k K] [--seed S] [--stop STR]\n"
    "            [--max-points N] [--category C] [--timeout SECONDS] QUESTION\n"
    "  local     [--config FILE] [--port P] [--models DIR] [query flags] [QUESTION]\n"
    "            cloud, edges and scheduler in one process on the bundled pice-arith models;\n"
    "            with a QUESTION: answer it and exit, else serve until SIGINT/SIGTERM\n"
    "  bench quality --eval FILE.jsonl [--target HOST:PORT] [--json] [--concurrency N]\n"
    "            [--limit N] [--thresholds 0,0.5,0.9] [--config FILE]\n"
    "  bench e2e [--eval FILE.jsonl] [--target HOST:PORT --cloud HOST:PORT] [--queries N]\n"
    "            [--concurrency C] [--json]\n"
    "  bench chaos --queries N --edges E --kill-interval-ms M [--concurrency C] [--json]\n"
    "            [--eval FILE] [--seed S] [--timeout SECONDS] [--keep]\n"
    "            cloud, E edges and a scheduler as processes; SIGKILLs and restarts edges\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "generate") return pice::cli::RunGenerate(args);
  if (cmd == "tokenize") return pice::cli::RunTokenize(args);
  if (cmd == "gen-model") return pice::cli::RunGenModel(args);
  if (cmd == "query") return pice::cli::RunQueryCommand(args);
  if (cmd == "local") return pice::cli::RunLocal(args);
  if (cmd == "bench") {
    if (args.empty()) return pice::cli::Fail("bench", "which benchmark? (engine, quality, e2e, chaos)", 2);
    const std::string what = args[0];
    args.erase(args.begin());
    if (what == "engine") return pice::cli::RunBenchEngine(args);
    if (what == "quality") return pice::cli::RunBenchQuality(args);
    if (what == "e2e") return pice::cli::RunBenchE2e(args);
    if (what == "chaos") return pice::cli::RunBenchChaos(args);
    return pice::cli::Fail("bench", "unknown benchmark '" + what + "' (engine, quality, e2e, chaos)",
                           2);
  }
  std::fprintf(stderr, "pice: unknown command '%s'\n%s", cmd.c_str(), kUsage);
  return 2;
}
