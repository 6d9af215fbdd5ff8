// Query flags shared by `pice query` and `pice local QUESTION`.
#ifndef PICE_CLI_QUERY_OPTIONS_H_
#define PICE_CLI_QUERY_OPTIONS_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "common/args.h"
#include "cli/client.h"
#include "common/tls.h"
#include "pice/v1/pice.pb.h"

namespace pice::cli {

struct QueryFlags {
  v1::QueryRequest request;  // prompt = the positional words joined by spaces
  bool json = false;
  double timeout_s = 120;    // 0 = no deadline
  std::string api_key;       // --api-key, else $PICE_API_KEY; sent as authorization: Bearer
  ClientTls tls;             // --tls-dir, --ca, --cert, --key, --server-name (cli/client.h)
};

// The value flags a query takes (--route, --max-tokens, ...) plus `extra`.
inline std::set<std::string> QueryValueFlags(std::set<std::string> extra) {
  for (const char* f : {"route", "max-tokens", "temperature", "top-p", "top-k", "seed", "stop",
                        "max-points", "category", "request-id", "timeout", "api-key"}) {
    extra.insert(f);
  }
  for (const char* f : kClientTlsFlags) extra.insert(f);
  return extra;
}

absl::StatusOr<QueryFlags> ParseQueryFlags(const Args& args);
// Sends the query to `target`, prints the events; returns the exit code (1 when refused,
// after printing "pice <cmd>: CODE_NAME: message" on stderr).
int SendQuery(const std::string& cmd, const std::string& target, const QueryFlags& q);

}  // namespace pice::cli

#endif  // PICE_CLI_QUERY_OPTIONS_H_
