// The Expand RPC's boundary, shared by pice-edge and pice-cloud (same request and
// response shape): request validation into an ExpandJob, and the response from an
// ExpandOutcome.
#ifndef PICE_NODE_EXPAND_RPC_H_
#define PICE_NODE_EXPAND_RPC_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "node/node_config.h"
#include "node/templates.h"
#include "node/ensemble.h"
#include "pice/v1/pice.pb.h"

namespace pice {

// INVALID_ARGUMENT naming the field: request_id, question (UTF-8, size), sketch (1 to
// max_sketch_points non-empty UTF-8 points), index (in range), params.*. With
// whole_question the question must be non-empty and sketch/index are not checked.
// The template's expand.max_tokens (full.max_tokens for whole_question) applies when
// params.max_tokens is 0.
absl::StatusOr<ExpandJob> ValidateExpandRequest(const v1::ExpandRequest& req,
                                                const RequestLimits& limits,
                                                const PromptTemplate& tmpl);

// Fills `resp`: text = the selected answer (the template's `answer`, e.g. "12+7=19"),
// candidates = every member's raw expansion with its scores.
void FillExpandResponse(const v1::ExpandRequest& req, const ExpandOutcome& out,
                        const std::string& node, const char* selection,
                        v1::ExpandResponse* resp);

}  // namespace pice

#endif  // PICE_NODE_EXPAND_RPC_H_
