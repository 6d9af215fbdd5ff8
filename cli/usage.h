// Usage text of every `pice` subcommand, shared by `pice` and `pice-engine`: `pice help`,
// `pice CMD --help` and errors print it.
#ifndef PICE_CLI_USAGE_H_
#define PICE_CLI_USAGE_H_

#include <optional>
#include <string>
#include <vector>

namespace pice::cli {

// The usage of one command ("generate", "bench engine", ...); "" when unknown.
std::string CommandUsage(const std::string& command);
// Every command's usage; engine_only: the ones pice-engine has.
std::string FullUsage(const std::string& program, bool engine_only);
// The help a command line asks for, printed: no command (usage on stderr, 2), `help` /
// --help / -h (every command's usage, 0), or `CMD ... --help` for a command the program
// has (that command's usage, 0). nullopt when the command line is not a help request.
// engine_only: the program is pice-engine (the engine commands only).
std::optional<int> PrintHelpIfAsked(const std::string& program, bool engine_only, int argc,
                                    char** argv);

}  // namespace pice::cli

#endif  // PICE_CLI_USAGE_H_
