#include "common/status.h"

#include <cmath>
#include <random>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace pice {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t v;
  {
    absl::MutexLock lock(&mu);
    v = absl::Uniform<uint64_t>(*gen);
  }
  return absl::StrFormat("%016x", v);
}

std::string RequestIdOr(const std::string& id) { return id.empty() ? NewRequestId() : id; }

absl::Status ValidateRequestId(std::string_view id, std::string_view field) {
  if (id.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": at most 128 characters, got ", id.size()));
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(field), ": only letters, digits and . _ : - are allowed"));
    }
  }
  return absl::OkStatus();
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], 0 if invalid, -1 if it is a valid
// but truncated prefix at the end of s.
int Utf8SeqLen(std::string_view s, size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
  int n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
  else return 0;
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return -1;
    unsigned char d = s[i + k];
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
    // Reject overlong 3/4-byte forms, surrogates and > U+10FFFF as early as possible.
    if (k == 1) {
      if (n == 3 && c == 0xE0 && d < 0xA0) return 0;
      if (n == 3 && c == 0xED && d >= 0xA0) return 0;
      if (n == 4 && c == 0xF0 && d < 0x90) return 0;
      if (n == 4 && c == 0xF4 && d >= 0x90) return 0;
    }
  }
  return n;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    int n = Utf8SeqLen(text, i);
    if (n <= 0) return false;
    i += n;
  }
  return true;
}

absl::Status ValidateUtf8(std::string_view text, std::string_view field) {
  if (IsValidUtf8(text)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": not valid UTF-8"));
}

size_t CompleteUtf8Prefix(std::string_view text) {
  // Only the last 3 bytes can start an incomplete sequence.
  size_t start = text.size() > 3 ? text.size() - 3 : 0;
  for (size_t i = start; i < text.size(); ++i) {
    unsigned char c = text[i];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    if (Utf8SeqLen(text, i) == -1) return i;
  }
  return text.size();
}

absl::Status ValidateText(std::string_view text, std::string_view field, size_t max_bytes,
                          bool allow_empty) {
  if (text.empty() && !allow_empty) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": must not be empty"));
  }
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": at most ", max_bytes,
                                                   " bytes, got ", text.size()));
  }
  return ValidateUtf8(text, field);
}

absl::Status ValidateHistory(const google::protobuf::RepeatedPtrField<v1::ChatTurn>& history,
                             size_t other_bytes, size_t max_bytes) {
  if (history.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("history: at most 256 turns, got ", history.size()));
  }
  size_t total = other_bytes;
  for (int i = 0; i < history.size(); ++i) {
    const v1::ChatTurn& t = history[i];
    if (t.role() != "system" && t.role() != "user" && t.role() != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat(
          "history[", i, "].role: must be system, user or assistant, got \"",
          t.role().substr(0, 32), "\""));
    }
    if (absl::Status s = ValidateUtf8(t.content(), absl::StrCat("history[", i, "].content"));
        !s.ok()) {
      return s;
    }
    total += t.content().size();
  }
  if (total > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "history: the conversation is ", total, " bytes with the prompt, at most ", max_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateWireSamplingParams(const v1::SamplingParams& p, const SamplingLimits& limits,
                                        std::string_view field) {
  const std::string f(field);
  auto bad = [&](const char* name, const std::string& want, const std::string& got) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.empty() ? "" : f + ".", name, ": must be ", want, ", got ", got));
  };
  auto num = [](double v) { return absl::StrFormat("%g", v); };
  if (p.max_tokens() < 0 || p.max_tokens() > limits.max_tokens) {
    return bad("max_tokens",
               absl::StrCat("in [0, ", limits.max_tokens, "] (0 = ",
                            limits.default_max_tokens > 0
                                ? absl::StrCat("default ", limits.default_max_tokens)
                                : std::string("the node template's default"),
                            ")"),
               absl::StrCat(p.max_tokens()));
  }
  if (!(p.temperature() >= 0.0f && p.temperature() <= 100.0f)) {
    return bad("temperature", "in [0, 100]", num(p.temperature()));
  }
  if (!(p.top_p() >= 0.0f && p.top_p() <= 1.0f)) {
    return bad("top_p", "in [0, 1] (0 = off)", num(p.top_p()));
  }
  if (p.top_k() < 0 || p.top_k() > 1000000) {
    return bad("top_k", "in [0, 1000000] (0 = off)", absl::StrCat(p.top_k()));
  }
  if (!(p.min_p() >= 0.0f && p.min_p() < 1.0f)) return bad("min_p", "in [0, 1)", num(p.min_p()));
  if (!(p.repeat_penalty() >= 0.0f && p.repeat_penalty() <= 10.0f)) {
    return bad("repeat_penalty", "in [0, 10] (0 = off)", num(p.repeat_penalty()));
  }
  if (p.stop_size() > limits.max_stop) {
    return bad("stop", absl::StrCat("at most ", limits.max_stop, " strings"),
               absl::StrCat(p.stop_size()));
  }
  for (int i = 0; i < p.stop_size(); ++i) {
    const std::string& s = p.stop(i);
    std::string name = absl::StrCat("stop[", i, "]");
    if (s.empty() || s.size() > size_t(limits.max_stop_bytes)) {
      return bad(name.c_str(), absl::StrCat("1 to ", limits.max_stop_bytes, " bytes"),
                 absl::StrCat(s.size(), " bytes"));
    }
    absl::Status u = ValidateUtf8(s, absl::StrCat(f.empty() ? "" : f + ".", name));
    if (!u.ok()) return u;
  }
  return absl::OkStatus();
}

}  // namespace pice
