#include "node/request.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pice {

absl::StatusOr<GenerateOptions> ToGenerateOptions(const v1::SamplingParams& p,
                                                  const SamplingLimits& limits,
                                                  std::string_view field) {
  if (absl::Status s = ValidateWireSamplingParams(p, limits, field); !s.ok()) return s;
  GenerateOptions o;
  o.max_tokens = p.max_tokens() == 0 ? limits.default_max_tokens : p.max_tokens();
  o.sampling.temperature = p.temperature();
  o.sampling.top_p = p.top_p() == 0.0f ? 1.0f : p.top_p();
  o.sampling.top_k = p.top_k();
  o.sampling.min_p = p.min_p();
  o.sampling.repeat_penalty = p.repeat_penalty() == 0.0f ? 1.0f : p.repeat_penalty();
  o.sampling.seed = p.seed();
  o.stop.assign(p.stop().begin(), p.stop().end());
  absl::Status v = ValidateGenerateOptions(o);
  if (!v.ok()) {
    const std::string f(field);
    return absl::InvalidArgumentError(absl::StrCat(f.empty() ? "" : f + ".", v.message()));
  }
  return o;
}

SamplingLimits NodeSamplingLimits(const RequestLimits& limits, int template_max_tokens) {
  SamplingLimits sl;
  sl.default_max_tokens = std::min(template_max_tokens, limits.max_tokens);
  sl.max_tokens = limits.max_tokens;
  sl.max_stop = limits.max_stop;
  sl.max_stop_bytes = limits.max_stop_bytes;
  return sl;
}

v1::FinishReason ToProtoFinish(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return v1::STOP;
    case FinishReason::kLength: return v1::LENGTH;
    case FinishReason::kCancelled: return v1::CANCELLED;
    case FinishReason::kError: return v1::ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

std::string DeltaStreamer::Push(std::string_view piece) {
  if (stopped_) return "";
  const size_t before = text_.size();
  text_.append(piece.data(), piece.size());
  size_t safe = CompleteUtf8Prefix(text_);
  // A full stop-string match (one the new piece completes) ends the text at its start.
  if (const size_t at = FindNewStop(text_, before, stop_); at < safe) {
    safe = at;
    stopped_ = true;
  }
  // A suffix that is a proper prefix of a stop string may still become one.
  if (!stopped_) {
    for (const auto& s : stop_) {
      if (s.empty()) continue;
      for (size_t k = std::min(s.size() - 1, text_.size()); k > 0; --k) {
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          safe = std::min(safe, text_.size() - k);
          break;
        }
      }
    }
  }
  if (safe <= sent_.size()) return "";
  std::string out = text_.substr(sent_.size(), safe - sent_.size());
  sent_.append(out);
  return out;
}

std::string DeltaStreamer::Finish(const std::string& final_text, bool* mismatch) {
  if (mismatch) *mismatch = false;
  if (final_text.compare(0, sent_.size(), sent_) != 0 || final_text.size() < sent_.size()) {
    if (mismatch) *mismatch = true;
    return "";
  }
  std::string out = final_text.substr(sent_.size());
  sent_ = final_text;
  stopped_ = true;
  return out;
}

}  // namespace pice
