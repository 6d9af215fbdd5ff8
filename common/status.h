// Boundary helpers shared by the gRPC services: absl::Status <-> grpc::Status (the codes
// are the same numbers), request ids, validation of request fields (UTF-8, sizes) and of
// the wire's SamplingParams into the engine's GenerateOptions.
//
// Every validation error is INVALID_ARGUMENT and names the field, e.g.
//   "params.temperature: must be in [0, 100], got 150"
#ifndef PICE_COMMON_STATUS_H_
#define PICE_COMMON_STATUS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/generator.h"
#include "grpcpp/support/status.h"
#include "pice/v1/pice.pb.h"

namespace pice {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);
// Maps a finish reason of the engine onto the wire's enum.
v1::FinishReason ToProtoFinish(FinishReason r);

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

// Converts and validates the wire's parameters. Zero values mean "server default"
// (temperature 0 = greedy; top_p 0 = 1; repeat_penalty 0 = 1). `field` prefixes the
// field names in errors ("params" -> "params.top_p: ...").
absl::StatusOr<GenerateOptions> ToGenerateOptions(const v1::SamplingParams& p,
                                                  const SamplingLimits& limits,
                                                  std::string_view field = "params");

// Holds back the tail of a growing text that may still change what is sent: an
// incomplete UTF-8 sequence, or a prefix of a stop string (the engine cuts the final
// text before a stop string, so nothing after its start may be sent). Not thread-safe.
class DeltaStreamer {
 public:
  explicit DeltaStreamer(std::vector<std::string> stop) : stop_(std::move(stop)) {}
  // Appends `piece` and returns the newly safe text (may be empty).
  std::string Push(std::string_view piece);
  // At the end: returns what `final_text` (the engine's result) adds to what was sent.
  // If the sent text is not a prefix of final_text (should not happen), returns "" and
  // sets *mismatch.
  std::string Finish(const std::string& final_text, bool* mismatch = nullptr);
  const std::string& sent() const { return sent_; }

 private:
  std::vector<std::string> stop_;
  std::string text_;  // everything received
  std::string sent_;  // the prefix of text_ already returned
  bool stopped_ = false;
};

}  // namespace pice

#endif  // PICE_COMMON_STATUS_H_
