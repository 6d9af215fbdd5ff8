#include "node/sketch_parser.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace pice {
namespace {

constexpr size_t kNpos = std::string_view::npos;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// True when only spaces/tabs separate position i from the start of its line.
bool AtLineStart(std::string_view t, size_t i) {
  while (i > 0) {
    char c = t[i - 1];
    if (c == '\n') return true;
    if (c != ' ' && c != '\t') return false;
    --i;
  }
  return true;
}

// A numbered marker "N." / "N)" / "(N)" for N == expected at i. Returns the position
// after the marker and its following space, or kNpos. At the end of the text the
// marker counts only when `final`.
size_t MatchNumbered(std::string_view t, size_t i, int expected, bool final) {
  if (i > 0 && !IsSpace(t[i - 1])) return kNpos;
  bool paren = false;
  size_t j = i;
  if (t[j] == '(') {
    paren = true;
    ++j;
  }
  std::string digits = std::to_string(expected);
  if (t.substr(j, digits.size()) != digits) return kNpos;
  j += digits.size();
  if (j >= t.size()) return kNpos;
  if (j < t.size() && t[j] >= '0' && t[j] <= '9') return kNpos;
  if (paren ? t[j] != ')' : (t[j] != '.' && t[j] != ')')) return kNpos;
  ++j;
  if (j == t.size()) return final ? j : kNpos;
  if (!IsSpace(t[j])) return kNpos;
  return j + 1;
}

// A bullet "- " / "* " / "+ " / "• " at the start of a line.
size_t MatchBullet(std::string_view t, size_t i) {
  if (!AtLineStart(t, i)) return kNpos;
  size_t len = 0;
  if (t[i] == '-' || t[i] == '*' || t[i] == '+') len = 1;
  else if (t.substr(i, 3) == "\xe2\x80\xa2") len = 3;
  if (len == 0 || i + len >= t.size() || (t[i + len] != ' ' && t[i + len] != '\t')) return kNpos;
  return i + len + 1;
}

struct Scan {
  std::vector<std::string_view> points;  // complete points, untrimmed
  int markers = 0;
  const char* shape = "";
};

}  // namespace

namespace sketch_internal {

// Scans a growing text for complete points, resuming where the previous call left off:
// a point once complete is never revised, and positions whose matches cannot depend on
// text still to come are not looked at again, so a whole generation costs O(its length)
// (plus the current point's length per call). Run(t, final) with a fresh Scanner is the
// whole-text scan.
class Scanner {
 public:
  explicit Scanner(const SketchParseOptions& o) : o_(o) {}

  // `t` extends the text of the previous call. At the end of the text, a marker or
  // point counts only when `final` (then no further call may follow).
  Scan Run(std::string_view t, bool final) {
    switch (o_.mode) {
      case SketchParseOptions::Mode::kSentences: RunSentences(t, final); break;
      case SketchParseOptions::Mode::kChunks: RunChunks(t, final); break;
      case SketchParseOptions::Mode::kNumbered: RunMarkers(t, final); break;
    }
    Scan s;
    for (auto [b, e] : points_) s.points.push_back(t.substr(b, e - b));
    if (tail_ != kNpos) s.points.push_back(t.substr(tail_));
    s.markers = o_.mode == SketchParseOptions::Mode::kNumbered ? static_cast<int>(marks_.size())
                                                               : static_cast<int>(s.points.size());
    s.shape = o_.mode == SketchParseOptions::Mode::kSentences ? "sentences"
              : o_.mode == SketchParseOptions::Mode::kChunks  ? "chunks"
              : style_ == kNumber                             ? "numbered"
              : style_ == kBullet                             ? "bullets"
                                                              : "";
    return s;
  }

 private:
  // A match at i reads at most this far past i ("(123) "), so only the last few
  // positions of a scan can have failed for want of text.
  static constexpr size_t kLookahead = 8;

  void RunMarkers(std::string_view t, bool final) {
    size_t i = resume_;
    while (i < t.size()) {
      if (style_ != kBullet) {
        size_t c = MatchNumbered(t, i, expected_, final);
        if (c != kNpos) {
          style_ = kNumber;
          marks_.push_back({i, c});
          ++expected_;
          i = c;
          continue;
        }
      }
      if (style_ != kNumber) {
        size_t c = MatchBullet(t, i);
        if (c != kNpos) {
          style_ = kBullet;
          marks_.push_back({i, c});
          i = c;
          continue;
        }
      }
      ++i;
    }
    resume_ = std::max(marks_.empty() ? 0 : marks_.back().second,
                       t.size() > kLookahead ? t.size() - kLookahead : 0);
    for (size_t k = points_.size(); k < marks_.size(); ++k) {
      size_t begin = marks_[k].second;
      size_t end = k + 1 < marks_.size() ? marks_[k + 1].first : kNpos;
      bool complete = end != kNpos || final;
      if (end == kNpos) end = t.size();
      if (o_.points_end_at_newline || style_ == kBullet) {
        size_t p = begin;
        while (p < end && IsSpace(t[p])) ++p;  // content may start on the next line
        size_t nl = t.find('\n', p);
        if (nl != kNpos && nl < end) {
          end = nl;
          complete = true;
        }
      }
      if (!complete) break;
      points_.push_back({begin, end});
    }
  }

  void RunSentences(std::string_view t, bool final) {
    size_t i = resume_;
    for (; i < t.size(); ++i) {
      const char c = t[i];
      bool end_here = false;
      if (c == '\n') {
        end_here = true;
      } else if ((c == '.' || c == '!' || c == '?') && i + 1 < t.size() && IsSpace(t[i + 1])) {
        end_here = true;
      }
      if (end_here) {
        std::string_view seg = t.substr(start_, i + 1 - start_);
        if (!TrimChars(seg, " \t\r\n").empty()) points_.push_back({start_, i + 1});
        start_ = i + 1;
      }
    }
    // The last character is looked at again: it may end a sentence once a space follows.
    resume_ = std::max(start_, t.empty() ? 0 : t.size() - 1);
    if (final && start_ < t.size() && !TrimChars(t.substr(start_), " \t\r\n").empty()) {
      tail_ = start_;
    }
  }

  void RunChunks(std::string_view t, bool final) {
    while (start_ < t.size()) {
      size_t end = start_ + std::max<size_t>(o_.chunk_chars, 1);
      while (end < t.size() && (static_cast<unsigned char>(t[end]) & 0xC0) == 0x80) ++end;
      if (end >= t.size()) {
        if (final) tail_ = start_;
        break;
      }
      points_.push_back({start_, end});
      start_ = end;
    }
  }

  const SketchParseOptions& o_;
  enum Style { kNone, kNumber, kBullet } style_ = kNone;
  int expected_ = 1;
  std::vector<std::pair<size_t, size_t>> marks_;   // (marker start, content start)
  std::vector<std::pair<size_t, size_t>> points_;  // complete points as [begin, end)
  size_t resume_ = 0;                              // where the next scan starts
  size_t start_ = 0;                               // sentences, chunks: the open point
  size_t tail_ = kNpos;                            // final: the unterminated last point
};

}  // namespace sketch_internal

namespace {

Scan ScanFor(std::string_view t, const SketchParseOptions& o, bool final) {
  sketch_internal::Scanner s(o);
  return s.Run(t, final);
}

}  // namespace

std::string_view TrimChars(std::string_view s, std::string_view chars) {
  size_t b = s.find_first_not_of(chars);
  if (b == kNpos) return {};
  size_t e = s.find_last_not_of(chars);
  return s.substr(b, e + 1 - b);
}

IncrementalSketchParser::IncrementalSketchParser(SketchParseOptions options)
    : options_(std::move(options)), scanner_(std::make_unique<sketch_internal::Scanner>(options_)) {}

IncrementalSketchParser::~IncrementalSketchParser() = default;

std::vector<std::string> IncrementalSketchParser::Update(std::string_view text) {
  std::vector<std::string> out;
  if (saturated_) return out;
  Scan s = scanner_->Run(text, false);
  for (size_t k = scanned_points_; k < s.points.size(); ++k) {
    std::string p(TrimChars(s.points[k], options_.strip_chars));
    if (!p.empty()) valid_.push_back(std::move(p));
  }
  scanned_points_ = s.points.size();
  const std::vector<std::string>& valid = valid_;
  // Over the budget counts non-empty points, as Finish does: a marker with nothing after
  // it (" 1. a 2. 3. b") is no point.
  if (!options_.truncate_over_budget && options_.max_points > 0 &&
      static_cast<int>(valid.size()) > options_.max_points) {
    saturated_ = unusable_ = true;
    unusable_reason_ = absl::StrCat("more than ", options_.max_points, " points");
    return out;
  }
  for (size_t k = emitted_.size(); k < valid.size(); ++k) {
    const std::string& p = valid[k];
    if (options_.max_points > 0 && static_cast<int>(k) >= options_.max_points) {
      saturated_ = true;
      if (!options_.truncate_over_budget) {
        unusable_ = true;
        unusable_reason_ = absl::StrCat("more than ", options_.max_points, " points");
      }
      break;
    }
    if (p.size() > options_.max_point_chars ||
        (options_.point_regex && !std::regex_match(p, *options_.point_regex))) {
      saturated_ = unusable_ = true;
      unusable_reason_ = absl::StrCat("point ", k + 1, " \"", p.substr(0, 60),
                                      "\" does not look like a sketch point");
      break;
    }
    emitted_.push_back(p);
    out.push_back(p);
  }
  if (options_.max_points > 0 && static_cast<int>(emitted_.size()) >= options_.max_points &&
      options_.truncate_over_budget) {
    saturated_ = true;
  }
  return out;
}

ParsedSketch IncrementalSketchParser::Finish(std::string_view text) {
  ParsedSketch r;
  auto no_split = [&](std::string reason) {
    r.split = false;
    r.points.clear();
    r.reason = std::move(reason);
    return r;
  };
  if (unusable_) return no_split(unusable_reason_);
  std::string whole = absl::AsciiStrToLower(std::string(TrimChars(text, " \t\r\n")));
  for (const auto& ns : options_.no_split) {
    if (whole == absl::AsciiStrToLower(std::string(TrimChars(ns, " \t\r\n")))) {
      return no_split(whole.empty() ? "empty sketch" : "the model said do not split");
    }
  }
  Scan s = ScanFor(text, options_, true);
  std::string shape = s.shape;
  if (s.markers == 0 && options_.mode == SketchParseOptions::Mode::kNumbered) {
    // The model ignored the format: one point per non-empty line, if that looks sane.
    s.points.clear();
    size_t start = 0;
    while (start <= text.size()) {
      size_t nl = text.find('\n', start);
      std::string_view line = text.substr(start, nl == kNpos ? kNpos : nl - start);
      if (!TrimChars(line, options_.strip_chars).empty()) s.points.push_back(line);
      if (nl == kNpos) break;
      start = nl + 1;
    }
    if (s.points.size() < 2) return no_split("no numbered points in the sketch");
    shape = "lines";
  }
  std::vector<std::string> points;
  for (auto raw : s.points) {
    std::string p(TrimChars(raw, options_.strip_chars));
    if (!p.empty()) points.push_back(std::move(p));
  }
  if (options_.max_points > 0 && static_cast<int>(points.size()) > options_.max_points) {
    if (!options_.truncate_over_budget) {
      return no_split(absl::StrCat(points.size(), " points, more than the budget of ",
                                   options_.max_points));
    }
    points.resize(options_.max_points);
  }
  for (size_t k = 0; k < points.size(); ++k) {
    const std::string& p = points[k];
    if (p.size() > options_.max_point_chars ||
        (options_.point_regex && !std::regex_match(p, *options_.point_regex))) {
      return no_split(absl::StrCat("point ", k + 1, " \"", p.substr(0, 60),
                                   "\" does not look like a sketch point"));
    }
  }
  if (static_cast<int>(points.size()) < std::max(1, options_.min_points)) {
    return no_split(absl::StrCat(points.size(), " point(s), fewer than ",
                                 std::max(1, options_.min_points)));
  }
  if (points.size() < emitted_.size() ||
      !std::equal(emitted_.begin(), emitted_.end(), points.begin())) {
    return no_split("the final sketch disagrees with the points already sent");
  }
  r.split = true;
  r.points = std::move(points);
  r.reason = shape;
  return r;
}

ParsedSketch ParseSketch(std::string_view text, const SketchParseOptions& options) {
  IncrementalSketchParser p(options);
  return p.Finish(text);
}

}  // namespace pice
