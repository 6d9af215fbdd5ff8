// Boundary helpers shared by the gRPC services: absl::Status <-> grpc::Status (the codes
// are the same numbers), request ids, validation of request fields (UTF-8, sizes) and of
// the wire's SamplingParams. Nothing here knows the engine: node/request.h turns the
// validated parameters into the engine's GenerateOptions.
//
// Every validation error is INVALID_ARGUMENT and names the field, e.g.
//   "params.temperature: must be in [0, 100], got 150"
#ifndef PICE_COMMON_STATUS_H_
#define PICE_COMMON_STATUS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/support/status.h"
#include "pice/v1/pice.pb.h"

namespace pice {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

// A fresh random request id: 16 lowercase hex digits. Thread-safe.
std::string NewRequestId();
// `id` when it is non-empty, else NewRequestId().
std::string RequestIdOr(const std::string& id);
// OK for "" (the server assigns one) or 1..128 characters of [A-Za-z0-9._:-].
absl::Status ValidateRequestId(std::string_view id, std::string_view field = "request_id");

// OK when `text` is valid UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view text);
absl::Status ValidateUtf8(std::string_view text, std::string_view field);
// Length of the longest prefix of `text` that does not end inside a UTF-8 sequence
// (a trailing incomplete sequence is held back; invalid bytes are not).
size_t CompleteUtf8Prefix(std::string_view text);

// Valid UTF-8, non-empty unless allow_empty, and at most max_bytes long.
absl::Status ValidateText(std::string_view text, std::string_view field, size_t max_bytes,
                          bool allow_empty = false);

// Server-side limits and defaults for the wire's SamplingParams.
struct SamplingLimits {
  int default_max_tokens = 128;  // used when params.max_tokens == 0
  int max_tokens = 1024;         // params.max_tokens above this is refused
  int max_stop = 8;              // stop strings at most
  int max_stop_bytes = 64;       // bytes per stop string at most
};

// Checks a conversation's earlier turns: role system, user or assistant; content valid
// UTF-8; at most 256 turns; their bytes plus `other_bytes` (the prompt's) at most
// `max_bytes`. Errors name `history[i].role` / `history[i].content` / `history`.
absl::Status ValidateHistory(const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history,
                             size_t other_bytes, size_t max_bytes);

// Checks the wire's parameters against `limits`. Zero values mean "server default"
// (temperature 0 = greedy; top_p 0 = 1; repeat_penalty 0 = 1; max_tokens 0 = the
// default). `field` prefixes the field names in errors ("params" -> "params.top_p: ...").
absl::Status ValidateWireSamplingParams(const v1::SamplingParams& p, const SamplingLimits& limits,
                                        std::string_view field = "params");

}  // namespace pice

#endif  // PICE_COMMON_STATUS_H_
