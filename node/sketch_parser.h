// Turns a model's sketch text into points, incrementally (so that each point can be
// streamed as soon as it is complete) and robustly (a model that ignores the requested
// format still yields a usable sketch, or a clean "do not split").
//
// Shapes understood (kNumbered):
//   " 1. 12+7 2. 23*4 3. 40-9"        one line, markers N. / N) / (N), numbered 1, 2, 3...
//   "1) Intro\n2) Body\n"              one point per line
//   "- a\n* b\n• c"                    bullets at line starts
//   "-" or "" (after trimming)         do not split (the no_split texts)
// A marker counts only with the expected next number and a space after it, so "3.5",
// "12+7" and "version 2." do not start points. Text before the first marker (a preamble)
// is ignored. With points_end_at_newline, a point also ends at the end of its line and
// text after it that is not a marker is ignored.
// When the final text has no markers, the fall-backs are: one point per non-empty line
// when there are at least two lines and every line fits max_point_chars; else no split.
//
// kSentences (a story draft): a point is a sentence ending in . ! or ? followed by space.
//
// Thread safety: ParseSketch is pure; an IncrementalSketchParser is used by one thread.
#ifndef PICE_NODE_SKETCH_PARSER_H_
#define PICE_NODE_SKETCH_PARSER_H_

#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace pice {

struct SketchParseOptions {
  // kNumbered: "1. a 2. b" (bullets and lines as fall-backs); kSentences: one point per
  // sentence or line; kChunks: consecutive pieces of chunk_chars bytes (cut at UTF-8
  // boundaries) — for benchmarks with random-weight models, whose text has no structure.
  enum class Mode { kNumbered, kSentences, kChunks };
  Mode mode = Mode::kNumbered;
  size_t chunk_chars = 32;         // kChunks: bytes per point
  // Trimmed sketch texts that mean "do not split" (compared case-insensitively).
  std::vector<std::string> no_split = {"-", ""};
  int max_points = 0;              // 0 = no limit
  // Over the budget: true = keep the first max_points (split), false = do not split.
  bool truncate_over_budget = true;
  int min_points = 1;              // fewer points than this: do not split
  size_t max_point_chars = 400;    // a longer point makes the sketch unusable
  bool points_end_at_newline = true;
  std::string strip_chars = " \t\r\n.;,:";  // trimmed from both ends of each point
  // When set, every point must match it in full, or the sketch is not split.
  std::shared_ptr<const std::regex> point_regex;
};

struct ParsedSketch {
  bool split = false;
  std::vector<std::string> points;  // empty when !split
  std::string reason;               // why not split (or which shape was recognised)
};

// Parses a complete sketch text.
ParsedSketch ParseSketch(std::string_view text, const SketchParseOptions& options);

namespace sketch_internal {
class Scanner;
}  // namespace sketch_internal

class IncrementalSketchParser {
 public:
  explicit IncrementalSketchParser(SketchParseOptions options);
  ~IncrementalSketchParser();

  // `text` is the whole sketch generated so far (each call extends the previous one).
  // Scanning resumes where the previous call stopped: a whole generation costs time
  // linear in its length, not quadratic.
  // Returns the points completed since the last call, in order; a point returned once
  // is never revised. Points stop coming once the sketch turned out unusable (a point
  // failed point_regex / max_point_chars) or the budget is full.
  std::vector<std::string> Update(std::string_view text);

  // True once generating more text cannot add a point: the budget is full, or the sketch
  // is unusable. The caller may stop the generation.
  bool Saturated() const { return saturated_; }

  // At the end of generation. When points were already returned, the result keeps them
  // as its first points, or says split = false (the caller must then drop them).
  ParsedSketch Finish(std::string_view text);

  int emitted() const { return static_cast<int>(emitted_.size()); }

 private:
  SketchParseOptions options_;
  std::unique_ptr<sketch_internal::Scanner> scanner_;  // the resumable scan behind Update
  size_t scanned_points_ = 0;               // complete points seen by Update
  std::vector<std::string> valid_;          // their non-empty trimmed forms
  std::vector<std::string> emitted_;
  bool saturated_ = false;
  bool unusable_ = false;
  std::string unusable_reason_;
};

// Trims `chars` from both ends.
std::string_view TrimChars(std::string_view s, std::string_view chars);

}  // namespace pice

#endif  // PICE_NODE_SKETCH_PARSER_H_
