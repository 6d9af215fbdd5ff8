// libFuzzer target: the sketch parser on arbitrary model output, whole (ParseSketch) and
// streamed in chunks (IncrementalSketchParser), as pice-cloud runs it.
//
// Input: 3 option bytes, then the sketch text.
//   byte 0: bit 0 sentences mode, bit 1 truncate over budget, bit 2 points end at newline,
//           bit 3 the pice-arith point_regex, bits 4-7 max_points (0 = no limit)
//   byte 1: bits 0-1 min_points - 1, bits 2-7 max_point_chars / 8 (0 = 400)
//   byte 2: chunk size of the stream, 1 + (byte % 16)
// Checked: a split sketch keeps the budget, min_points and max_point_chars, has no empty
// or untrimmed point, and starts with every point streamed before; streaming the text
// ends in the same result as parsing it whole.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "node/sketch_parser.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "sketch_parser_fuzz: %s\n", what);
  std::abort();
}

void CheckResult(const pice::ParsedSketch& r, const pice::SketchParseOptions& o) {
  if (!r.split) {
    if (!r.points.empty()) Fail("no split but points");
    return;
  }
  if (r.points.empty()) Fail("split without points");
  if (o.max_points > 0 && static_cast<int>(r.points.size()) > o.max_points) Fail("over budget");
  if (static_cast<int>(r.points.size()) < o.min_points) Fail("fewer than min_points");
  for (const std::string& p : r.points) {
    if (p.empty()) Fail("empty point");
    if (p.size() > o.max_point_chars) Fail("point longer than max_point_chars");
    if (o.strip_chars.find(p.front()) != std::string::npos ||
        o.strip_chars.find(p.back()) != std::string::npos) {
      Fail("point not trimmed");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3 || size > 4096) return 0;
  static const auto* arith_regex =
      new std::shared_ptr<const std::regex>(std::make_shared<std::regex>(
          "[0-9]{1,4} ?[-+*] ?[0-9]{1,4}", std::regex::ECMAScript));
  pice::SketchParseOptions o;
  o.mode = (data[2] & 0x80) ? pice::SketchParseOptions::Mode::kChunks
           : (data[0] & 1)  ? pice::SketchParseOptions::Mode::kSentences
                            : pice::SketchParseOptions::Mode::kNumbered;
  o.chunk_chars = 1 + ((data[2] >> 4) & 7) * 5;
  o.truncate_over_budget = data[0] & 2;
  o.points_end_at_newline = data[0] & 4;
  if (data[0] & 8) o.point_regex = *arith_regex;
  o.max_points = data[0] >> 4;
  o.min_points = 1 + (data[1] & 3);
  o.max_point_chars = (data[1] >> 2) ? (data[1] >> 2) * 8 : 400;
  const size_t chunk = 1 + (data[2] & 15);
  std::string_view text(reinterpret_cast<const char*>(data + 3), size - 3);

  const pice::ParsedSketch whole = pice::ParseSketch(text, o);
  CheckResult(whole, o);

  pice::IncrementalSketchParser inc(o);
  std::vector<std::string> streamed;
  for (size_t end = chunk; end < text.size() + chunk; end += chunk) {
    for (std::string& p : inc.Update(text.substr(0, std::min(end, text.size())))) {
      streamed.push_back(std::move(p));
    }
    if (inc.emitted() != static_cast<int>(streamed.size())) Fail("emitted() disagrees");
    // The resumable scan sees what a scan of the whole prefix sees (until either parser
    // saturates: over the budget at once is unusable, one point at a time is not).
    pice::IncrementalSketchParser fresh(o);
    const auto all = fresh.Update(text.substr(0, std::min(end, text.size())));
    if (!fresh.Saturated() && !inc.Saturated() && all != streamed) {
      Fail("the incremental scan disagrees with a scan of the whole prefix");
    }
  }
  const pice::ParsedSketch fin = inc.Finish(text);
  CheckResult(fin, o);
  if (fin.split) {
    if (fin.points.size() < streamed.size()) Fail("final sketch lost streamed points");
    for (size_t i = 0; i < streamed.size(); ++i) {
      if (fin.points[i] != streamed[i]) Fail("a streamed point was revised");
    }
  }
  if (fin.split != whole.split || fin.points != whole.points) {
    std::fprintf(stderr, "whole: split=%d %zu points (%s); streamed: split=%d %zu points (%s)\n",
                 whole.split, whole.points.size(), whole.reason.c_str(), fin.split,
                 fin.points.size(), fin.reason.c_str());
    Fail("streaming and parsing whole disagree");
  }
  return 0;
}
