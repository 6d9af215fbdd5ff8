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
int RunQuantize(const std::vector<std::string>& args);
// Serving side: cli/query_command.cc, cli/local_command.cc. `pice bench ...` is in bench/.
int RunQueryCommand(const std::vector<std::string>& args);
int RunLocal(const std::vector<std::string>& args);
// pice policy check FILE | explain FILE --prompt TEXT ... (cli/policy_command.cc)
int RunPolicy(const std::vector<std::string>& args);

// Prints "pice <cmd>: <message>" to stderr and returns 2 (usage) or 1 (runtime).
int Fail(const std::string& cmd, const std::string& message, int code = 1);

// `lhs = *expr`, or prints the error (as Fail) and returns `code` from the caller.
#define CLI_TRY(cmd, lhs, expr, code)                                   \
  auto PICE_CLI_CAT(r_, __LINE__) = (expr);                             \
  if (!PICE_CLI_CAT(r_, __LINE__).ok())                                 \
    return ::pice::cli::Fail(cmd, std::string(PICE_CLI_CAT(r_, __LINE__).status().message()), code); \
  lhs = *std::move(PICE_CLI_CAT(r_, __LINE__))
#define PICE_CLI_CAT(a, b) PICE_CLI_CAT2(a, b)
#define PICE_CLI_CAT2(a, b) a##b

// Threads for the forward pass by default: the machine's cores (at most 64).
int DefaultThreads();

}  // namespace pice::cli

#endif  // PICE_CLI_COMMANDS_H_
