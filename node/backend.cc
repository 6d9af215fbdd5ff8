#include "node/backend.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace pice {

namespace {
constexpr char kRetryAfterUrl[] = "type.pice.dev/retry-after-ms";
}  // namespace

void SetRetryAfterMs(absl::Status* s, int ms) {
  s->SetPayload(kRetryAfterUrl, absl::Cord(std::to_string(ms)));
}

std::optional<int> RetryAfterMs(const absl::Status& s) {
  auto p = s.GetPayload(kRetryAfterUrl);
  int ms = 0;
  if (!p || !absl::SimpleAtoi(std::string(*p), &ms)) return std::nullopt;
  return ms;
}

}  // namespace pice
