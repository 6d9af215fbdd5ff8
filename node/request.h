// The model nodes' side of the wire: the client's SamplingParams as the engine's
// GenerateOptions, the engine's finish reason on the wire, and the streaming of a growing
// text that may still be cut at a stop string.
#ifndef PICE_NODE_REQUEST_H_
#define PICE_NODE_REQUEST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/status.h"
#include "engine/generator.h"
#include "node/node_config.h"
#include "pice/v1/pice.pb.h"

namespace pice {

// Validates the wire's parameters (ValidateWireSamplingParams: errors name the field,
// prefixed by `field`) and converts them; zero values take the server defaults
// (max_tokens 0 = limits.default_max_tokens).
absl::StatusOr<GenerateOptions> ToGenerateOptions(const v1::SamplingParams& p,
                                                  const SamplingLimits& limits,
                                                  std::string_view field = "params");

// The sampling limits of a node's request limits, with the template part's max_tokens
// (capped by limits.max_tokens) as the default when a request sets none.
SamplingLimits NodeSamplingLimits(const RequestLimits& limits, int template_max_tokens);

// Maps a finish reason of the engine onto the wire's enum.
v1::FinishReason ToProtoFinish(FinishReason r);

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

#endif  // PICE_NODE_REQUEST_H_
