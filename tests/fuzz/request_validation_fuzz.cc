// libFuzzer target: request validation at the servers' boundary. The wire messages are
// built from the fuzz bytes with ParseFromArray (what gRPC hands a handler), then
// validated as pice-scheduler (ValidateQuery), pice-edge / pice-cloud Expand
// (ValidateExpandRequest) and every generating RPC (ToGenerateOptions) do; the UTF-8
// helpers and the delta streamer run on the raw bytes.
//
// Input: byte 0 chooses the check (% 5), the rest is the payload.
// Checked beyond "no crash": what validation accepts lies within the limits (sizes,
// ranges, valid UTF-8 by an independent decoder); IsValidUtf8 agrees with that decoder;
// CompleteUtf8Prefix holds back at most an incomplete tail; the streamed deltas are a
// prefix of the text cut at its earliest stop string and Finish completes it.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "node/templates.h"
#include "common/status.h"
#include "node/request.h"
#include "node/expand_rpc.h"
#include "google/protobuf/stubs/logging.h"
#include "pice/v1/pice.pb.h"
#include "scheduler/config.h"
#include "scheduler/query.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "request_validation_fuzz: %s\n", what);
  std::abort();
}

// Reference UTF-8 check: decode, then reject overlong forms, surrogates, > U+10FFFF.
bool RefUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void CheckOptions(const pice::GenerateOptions& o, const pice::SamplingLimits& l) {
  const auto& s = o.sampling;
  if (o.max_tokens < 1 || o.max_tokens > std::max(l.max_tokens, l.default_max_tokens)) {
    Fail("max_tokens out of range");
  }
  if (!(s.temperature >= 0 && s.temperature <= 100)) Fail("temperature out of range");
  if (!(s.top_p > 0 && s.top_p <= 1)) Fail("top_p out of range");
  if (!(s.min_p >= 0 && s.min_p < 1)) Fail("min_p out of range");
  if (!(s.repeat_penalty > 0 && s.repeat_penalty <= 10)) Fail("repeat_penalty out of range");
  if (s.top_k < 0) Fail("top_k negative");
  if (static_cast<int>(o.stop.size()) > l.max_stop) Fail("too many stop strings");
  for (const auto& st : o.stop) {
    if (st.empty() || static_cast<int>(st.size()) > l.max_stop_bytes || !RefUtf8(st)) {
      Fail("bad stop string accepted");
    }
  }
}

void CheckUtf8(std::string_view s) {
  if (pice::IsValidUtf8(s) != RefUtf8(s)) Fail("IsValidUtf8 disagrees with the reference");
  const size_t k = pice::CompleteUtf8Prefix(s);
  if (k > s.size() || s.size() - k > 3) Fail("CompleteUtf8Prefix holds back too much");
  // Valid text holds back nothing; a held-back tail is never a complete sequence.
  if (RefUtf8(s) && k != s.size()) Fail("CompleteUtf8Prefix cut valid text");
  if (k < s.size() && RefUtf8(s.substr(k))) Fail("CompleteUtf8Prefix held back a whole character");
  (void)pice::ValidateRequestId(s);
  (void)pice::ValidateText(s, "text", 64, s.size() & 1);
}

// Payload: stop strings separated by '\x01' up to the first '\x00', then the text,
// streamed in pieces split at '\x02'.
void CheckDeltas(std::string_view in) {
  size_t z = in.find('\0');
  std::vector<std::string> stop;
  std::string_view stops = z == std::string_view::npos ? std::string_view() : in.substr(0, z);
  std::string_view rest = z == std::string_view::npos ? in : in.substr(z + 1);
  while (!stops.empty() && stop.size() < 8) {
    size_t sep = stops.find('\1');
    stop.emplace_back(stops.substr(0, sep));
    stops = sep == std::string_view::npos ? std::string_view() : stops.substr(sep + 1);
  }
  std::string text;
  pice::DeltaStreamer ds(stop);
  std::string sent;
  while (true) {
    size_t sep = rest.find('\2');
    std::string_view piece = rest.substr(0, sep);
    text.append(piece);
    sent += ds.Push(piece);
    if (sent != ds.sent()) Fail("sent() disagrees with the deltas");
    // The engine stops at the first piece (token) after which a stop string appears;
    // nothing later is generated.
    bool stopped = false;
    for (const auto& s : stop) stopped = stopped || (!s.empty() && text.find(s) != std::string::npos);
    if (stopped || sep == std::string_view::npos) break;
    rest = rest.substr(sep + 1);
  }
  // The engine's final text: cut at the earliest stop string present when it stopped.
  std::string final_text = text;
  size_t cut = std::string::npos;
  for (const auto& s : stop) {
    if (s.empty()) continue;
    cut = std::min(cut, text.find(s));
  }
  if (cut != std::string::npos) final_text.resize(cut);
  if (final_text.compare(0, sent.size(), sent) != 0 || sent.size() > final_text.size()) {
    Fail("a delta was sent that the final text does not have");
  }
  bool mismatch = true;
  std::string tail = ds.Finish(final_text, &mismatch);
  if (mismatch || sent + tail != final_text) Fail("Finish did not complete the text");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // proto3 parsing rejects invalid UTF-8 in string fields (as gRPC's does) and logs each
  // one; the raw-bytes checks below cover what it rejects.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int,
                                     const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 16384) return 0;
  const int which = data[0] % 5;
  const uint8_t* p = data + 1;
  const int n = static_cast<int>(size - 1);
  switch (which) {
    case 0: {  // the scheduler's client API
      pice::v1::QueryRequest r;
      if (!r.ParseFromArray(p, n)) return 0;
      pice::scheduler::SchedulerOptions o;
      o.max_prompt_bytes = 256;
      o.max_points = 8;
      o.max_tokens = 64;
      o.default_max_tokens = 16;
      if (pice::scheduler::ValidateQuery(r, o).ok()) {
        if (!RefUtf8(r.prompt()) || r.prompt().empty() || r.prompt().size() > 256) {
          Fail("bad prompt accepted");
        }
        if (!RefUtf8(r.category()) || r.category().size() > 64) Fail("bad category accepted");
        if (r.max_points() < 0 || r.max_points() > 8) Fail("bad max_points accepted");
        if (r.request_id().size() > 128) Fail("long request_id accepted");
      }
      break;
    }
    case 1: {  // Expand on the edges and the cloud
      pice::v1::ExpandRequest r;
      if (!r.ParseFromArray(p, n)) return 0;
      pice::RequestLimits l;
      l.max_question_bytes = 512;
      l.max_sketch_points = 8;
      l.max_point_bytes = 64;
      l.max_tokens = 32;
      l.max_stop = 4;
      l.max_stop_bytes = 16;
      pice::PromptTemplate tmpl;
      tmpl.expand.max_tokens = 64;
      tmpl.full.max_tokens = 64;
      auto job = pice::ValidateExpandRequest(r, l, tmpl);
      if (job.ok()) {
        if (job->whole_question) {
          if (job->question.empty()) Fail("empty whole question accepted");
        } else {
          if (job->sketch.empty() || job->sketch.size() > 8) Fail("bad sketch size accepted");
          if (job->index < 0 || job->index >= static_cast<int>(job->sketch.size())) {
            Fail("bad index accepted");
          }
        }
        for (const auto& pt : job->sketch) {
          if (pt.empty() || pt.size() > 64 || !RefUtf8(pt)) Fail("bad point accepted");
        }
        if (!RefUtf8(job->question) || job->question.size() > 512) Fail("bad question accepted");
        pice::SamplingLimits sl;
        sl.max_tokens = 32;
        sl.default_max_tokens = 32;
        sl.max_stop = 4;
        sl.max_stop_bytes = 16;
        CheckOptions(job->options, sl);
      }
      break;
    }
    case 2: {  // SamplingParams of every generating call
      pice::v1::SamplingParams sp;
      if (!sp.ParseFromArray(p, n)) return 0;
      pice::SamplingLimits l;
      auto o = pice::ToGenerateOptions(sp, l, "params");
      if (o.ok()) CheckOptions(*o, l);
      else if (o.status().code() != absl::StatusCode::kInvalidArgument) Fail("not INVALID_ARGUMENT");
      break;
    }
    case 3:
      CheckUtf8(std::string_view(reinterpret_cast<const char*>(p), n));
      break;
    case 4:
      CheckDeltas(std::string_view(reinterpret_cast<const char*>(p), n));
      break;
  }
  return 0;
}
