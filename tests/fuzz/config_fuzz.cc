// libFuzzer target: every YAML loader on arbitrary text. cloud.yaml, edge.yaml,
// scheduler.yaml (with its inline policy) and a policy file are parsed from one ConfigNode;
// the prompt template loader parses the text itself. Each must return a value or an
// INVALID_ARGUMENT status: yaml-cpp exceptions must not escape, nothing may crash. A
// loaded template is then filled and its sketch parse options run on a fixed sketch;
// a loaded policy decides a route.
// Relative paths resolve against deploy/, so the seeds (deploy/*.yaml, templates/*.yaml)
// reach the checks after their model and template paths.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cloud/cloud_config.h"
#include "node/sketch_parser.h"
#include "node/templates.h"
#include "common/config.h"
#include "edge/edge_config.h"
#include "scheduler/config.h"
#include "scheduler/policy.h"

#ifndef PICE_SOURCE_DIR
#define PICE_SOURCE_DIR "."
#endif

namespace {

void ExpectInvalid(const absl::Status& s) {
  // Loading text (not a file) can only fail on the text or on a path it names.
  if (s.code() != absl::StatusCode::kInvalidArgument && s.code() != absl::StatusCode::kNotFound) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  // policy_file and the model/template paths open files: keep away from devices that
  // never end (/dev/zero) or block (/dev/stdin); operators' configs name regular files.
  if (text.find("/dev") != std::string::npos || text.find("/proc") != std::string::npos ||
      text.find("/sys") != std::string::npos) {
    return 0;
  }
  size_t sink = 0;
  auto root = pice::ConfigNode::LoadString(text, "fuzz.yaml", PICE_SOURCE_DIR "/deploy");
  if (root.ok()) {
    if (auto c = pice::ParseCloudOptions(*root); c.ok()) sink += c->limits.max_points;
    else ExpectInvalid(c.status());
    if (auto e = pice::ParseEdgeOptions(*root); e.ok()) sink += e->members.size();
    else ExpectInvalid(e.status());
    if (auto s = pice::scheduler::ParseSchedulerOptions(*root); s.ok()) sink += s->edges.size();
    else ExpectInvalid(s.status());
    if (auto p = pice::scheduler::ParsePolicy(*root); p.ok()) {
      pice::scheduler::QueryFacts facts;
      facts.prompt = "What is 12+7; and 23*4?";
      facts.category = "math";
      pice::scheduler::LiveState live;
      live.healthy_edges = 2;
      live.edge_free_slots = 3;
      live.edge_max_slots = 4;
      pice::scheduler::Decision d = pice::scheduler::Decide(*p, facts, live);
      if (d.route == pice::scheduler::RouteChoice::kAuto) std::abort();
      sink += d.reason.size();
    } else {
      ExpectInvalid(p.status());
    }
  } else {
    ExpectInvalid(root.status());
  }
  auto t = pice::ParsePromptTemplate(text, "fuzz-template.yaml");
  if (t.ok()) {
    const std::vector<std::string> sketch = {"12+7", "23*4"};
    sink += pice::BuildSketchPrompt(*t, "q {x}", 3).user.size();
    sink += pice::BuildFullPrompt(*t, "q").user.size();
    sink += pice::BuildExpandPrompt(*t, "q", sketch, 1).user.size();
    sink += pice::FormatAnswer(*t, "q", sketch, 1, "92").size();
    // The template's point_regex came from the input: matching with std::regex may
    // backtrack exponentially, which says nothing about the parser.
    pice::SketchParseOptions opts = t->parse;
    opts.point_regex.reset();
    opts.max_points = t->max_points;
    pice::ParsedSketch p = pice::ParseSketch(" 1. 12+7 2. 23*4\n3) 40-9 - x", opts);
    sink += p.points.size();
  } else {
    ExpectInvalid(t.status());
  }
  volatile size_t keep = sink;
  (void)keep;
  return 0;
}
