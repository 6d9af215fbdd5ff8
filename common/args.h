// A small command-line parser for every PICE binary and `pice` subcommand: `--name value`,
// `--name=value` and boolean `--flag`. Flags are spelled with dashes (--port-file); an
// underscore spelling (--port_file) is read as the same flag. `--help` and `-h` are
// always accepted (Help()). Every error is one line naming the flag. Depends on abseil
// only, so the gRPC-free pice-engine uses it too.
#ifndef PICE_COMMON_ARGS_H_
#define PICE_COMMON_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pice {

class Args {
 public:
  // `bool_flags` take no value; `value_flags` take one. Anything else starting with
  // "--" is an error; other words are positional.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::set<std::string>& value_flags,
                                    const std::set<std::string>& bool_flags);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // --help or -h was given: print the usage to stdout and exit 0.
  bool Help() const { return Has("help"); }
  bool Flag(const std::string& name) const { return Has(name); }
  std::string Str(const std::string& name, const std::string& def = "") const;
  absl::StatusOr<std::string> Required(const std::string& name) const;
  // Typed values with range checks; errors name the flag.
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t def, int64_t lo, int64_t hi) const;
  absl::StatusOr<double> Float(const std::string& name, double def, double lo, double hi) const;
  // Comma-separated integers, e.g. "1,2,4,8".
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& name, std::vector<int64_t> def,
                                               int64_t lo, int64_t hi) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace pice

#endif  // PICE_COMMON_ARGS_H_
