// Usage text of every `pice` subcommand, shared by `pice` and `pice-engine`: `pice help`,
// `pice CMD --help` and errors print it.
#ifndef PICE_CLI_USAGE_H_
#define PICE_CLI_USAGE_H_

#include <string>
#include <vector>

namespace pice::cli {

// The usage of one command ("generate", "bench engine", ...); "" when unknown.
std::string CommandUsage(const std::string& command);
// Every command's usage; engine_only: the ones pice-engine has.
std::string FullUsage(const std::string& program, bool engine_only);
// True when `args` ask for help (--help, -h).
bool WantsHelp(const std::vector<std::string>& args);

}  // namespace pice::cli

#endif  // PICE_CLI_USAGE_H_
