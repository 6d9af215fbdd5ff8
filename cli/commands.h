// The pice subcommands. Each returns the process exit code; errors are printed as one
// line on stderr.
#ifndef PICE_CLI_COMMANDS_H_
#define PICE_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace pice::cli {

int RunGenerate(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);
int RunGenModel(const std::vector<std::string>& args);
int RunBenchEngine(const std::vector<std::string>& args);
// Serving side (issue 3): cli/query_command.cc, cli/local_command.cc, cli/bench_quality.cc.
int RunQueryCommand(const std::vector<std::string>& args);
int RunLocal(const std::vector<std::string>& args);
int RunBenchQuality(const std::vector<std::string>& args);
// pice bench e2e: latency/throughput of both routes and the scheduler's overhead.
int RunBenchE2e(const std::vector<std::string>& args);
// pice bench chaos: queries through real processes while edges are killed and restarted.
int RunBenchChaos(const std::vector<std::string>& args);

// Prints "pice <cmd>: <message>" to stderr and returns 2 (usage) or 1 (runtime).
int Fail(const std::string& cmd, const std::string& message, int code = 1);

}  // namespace pice::cli

#endif  // PICE_CLI_COMMANDS_H_
