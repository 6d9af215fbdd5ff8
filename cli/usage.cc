#include "cli/usage.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace pice::cli {
namespace {

struct Command {
  const char* name;
  bool engine;        // pice-engine has it too
  const char* usage;  // flags, one per line or two
};

// Flags are spelled with dashes; --flag_name is read as --flag-name.
constexpr Command kCommands[] = {
    {"generate", true,
     "  generate  --model M.gguf --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]\n"
     "            [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--threads N]\n"
     "            [--stop STR] [--ctx N] [--chat] [--no-bos] [--json]\n"},
    {"tokenize", true, "  tokenize  --model M.gguf --text TEXT [--no-bos] [--parse-special] [--json]\n"},
    {"gen-model", true,
     "  gen-model --arch llama|qwen2 --n-embd E --n-layer L --n-head H --n-head-kv K --n-ff F\n"
     "            --n-vocab V [--type TYPE] [--seed S] [--n-ctx C] --out FILE\n"
     "            random weights; TYPE as for quantize (default f32)\n"},
    {"quantize", true,
     "  quantize  IN.gguf OUT.gguf TYPE [--threads N] [--pure]\n"
     "            an F32/F16/BF16 model to TYPE as llama-quantize does (same tensor types and\n"
     "            bytes): q4_k_m, q4_k_s, q5_k_m, q5_k_s, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1,\n"
     "            bf16, f16, f32; --pure: TYPE for every matrix, no per-tensor rules\n"},
    {"bench engine", true,
     "  bench engine --model M.gguf [--threads N] [--prompt-tokens P] [--gen-tokens G]\n"
     "            [--batch 1,2,4,8] [--repeat R] [--shared-prefix] [--raw]\n"
     "            through the Engine (sampling, callbacks, batching) as a node serves, or\n"
     "            --raw: the forward pass alone; median of R runs (default 3) with [min, max]\n"
     "  bench engine --mixed --model M.gguf [--running 8] [--mixed-prompt 2000]\n"
     "            [--step-tokens 64] [--threads N] [--repeat R]\n"
     "            the running decodes' inter-token latency while a long prompt joins, whole\n"
     "            prompt prefill vs chunked (a token budget per step)\n"},
    {"query", false,
     "  query     [--target HOST:PORT] [--route auto|cloud|sketch] [--json] [--max-tokens N]\n"
     "            [--temperature T] [--top-p P] [--top-k K] [--seed S] [--stop STR]\n"
     "            [--max-points N] [--category C] [--timeout SECONDS]\n"
     "            [--api-key KEY (or $PICE_API_KEY)] [TLS flags] QUESTION\n"
     "            TLS flags: --tls-dir DIR (DIR/ca.pem, client.pem, client-key.pem, as\n"
     "            scripts/dev-certs.sh writes) or --ca FILE [--cert FILE --key FILE];\n"
     "            --server-name NAME when the certificate does not name the address\n"},
    {"local", false,
     "  local     [--config FILE] [--port P] [--http-port P] [--api-keys FILE] [--models DIR]\n"
     "            [--log-level L] [--log-format text|json] [--tls-dir DIR] [--metrics-port P]\n"
     "            [--print-config]\n"
     "            [query flags] [QUESTION]\n"
     "            cloud, edges and scheduler in one process on the bundled pice-arith models;\n"
     "            with a QUESTION: answer it and exit, else serve until SIGINT/SIGTERM;\n"
     "            --tls-dir: mutual TLS on every link from scripts/dev-certs.sh's files\n"},
    {"policy", false,
     "  policy    check FILE | explain FILE --prompt TEXT [--hint auto|cloud|sketch]\n"
     "            [--category C] [--key NAME] [--max-points N] [--load JSON] [--json]\n"
     "            FILE: a policy file, a scheduler.yaml or a built-in name (general,\n"
     "            pice-arith); explain: the deciding rule and both routes' estimates\n"},
    {"bench quality", false,
     "  bench quality --eval FILE.jsonl [--target HOST:PORT] [--json] [--concurrency N]\n"
     "            [--limit N] [--thresholds 0,0.5,0.9] [--config FILE] [TLS flags]\n"},
    {"bench e2e", false,
     "  bench e2e [--eval FILE.jsonl] [--target HOST:PORT --cloud HOST:PORT] [--queries N]\n"
     "            [--repeat R] [--concurrency C] [--timeout SECONDS] [--config FILE]\n"
     "            [--models DIR] [--tokenizer M.gguf] [--overhead-queries N] [--json]\n"
     "            [--http [--http-target HOST:PORT]] [TLS flags (as query)]\n"
     "            both routes on the same questions (all of the file by default), median\n"
     "            of R repeats with [min, max]; useful tokens = the answer text's tokens\n"},
    {"bench chaos", false,
     "  bench chaos --queries N --edges E --kill-interval-ms M [--concurrency C] [--json]\n"
     "            [--eval FILE] [--models DIR] [--seed S] [--timeout SECONDS] [--keep]\n"
     "            cloud, E edges and a scheduler as processes; SIGKILLs and restarts edges\n"},
    {"bench testbed", false,
     "  bench testbed --config FILE [--json] [--out DIR] [--rates R,R] [--duration S]\n"
     "            [--repeat N] [--keep]\n"
     "            nodes pinned to CPUs behind emulated links; open-loop Poisson load per\n"
     "            route and rate; knees, throughput_ratio, latency_ratio, quality delta\n"},
    {"bench sim", false,
     "  bench sim --config FILE [--calibrate TESTBED_JSON | --scale] [--json] [--out DIR]\n"
     "            discrete-event simulator from measured profiles: the testbed's curves,\n"
     "            side by side with a testbed run, or 10..10,000 edges with churn\n"},
};

constexpr char kExit[] =
    "exit status: 0 on success (and for --help), 1 when the work failed, 2 for a bad flag,\n"
    "argument or config\n";

}  // namespace

std::string CommandUsage(const std::string& command) {
  for (const Command& c : kCommands) {
    if (command == c.name) return absl::StrCat("usage: pice ", c.name, " [flags]\n", c.usage, kExit);
  }
  return "";
}

std::string FullUsage(const std::string& program, bool engine_only) {
  std::string out = absl::StrCat("usage: ", program, " <command> [flags]   (", program,
                                 " <command> --help: its flags)\n\nengine:\n");
  for (const Command& c : kCommands) {
    if (c.engine) out += c.usage;
  }
  if (!engine_only) {
    out += "\nserving:\n";
    for (const Command& c : kCommands) {
      if (!c.engine) out += c.usage;
    }
  }
  out += "\n";
  out += kExit;
  return out;
}

std::optional<int> PrintHelpIfAsked(const std::string& program, bool engine_only, int argc,
                                    char** argv) {
  const std::string first = argc >= 2 ? argv[1] : "";
  if (argc < 2 || first == "--help" || first == "-h" || first == "help") {
    std::fputs(FullUsage(program, engine_only).c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  bool wants = false;
  for (int i = 2; i < argc; ++i) wants |= std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h";
  if (!wants) return std::nullopt;
  // `pice CMD --help` / `pice bench X --help`.
  const std::string command = first == "bench" && argc >= 3 ? "bench " + std::string(argv[2]) : first;
  for (const Command& c : kCommands) {
    if (command == c.name && (c.engine || !engine_only)) {
      std::fputs(CommandUsage(command).c_str(), stdout);
      return 0;
    }
  }
  return std::nullopt;
}

}  // namespace pice::cli
