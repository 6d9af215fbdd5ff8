#include "node/expand_rpc.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "node/request.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice {

absl::StatusOr<ExpandJob> ValidateExpandRequest(const v1::ExpandRequest& req,
                                                const RequestLimits& limits,
                                                const PromptTemplate& tmpl) {
  PICE_RETURN_IF_ERROR(ValidateRequestId(req.request_id()));
  PICE_RETURN_IF_ERROR(ValidateText(req.question(), "question", limits.max_question_bytes,
                                    /*allow_empty=*/!req.whole_question()));
  const int default_max_tokens =
      req.whole_question() ? tmpl.full.max_tokens : tmpl.expand.max_tokens;
  const SamplingLimits sl = NodeSamplingLimits(limits, default_max_tokens);
  if (req.whole_question()) {
    PICE_RETURN_IF_ERROR(
        ValidateHistory(req.history(), req.question().size(), limits.max_question_bytes));
    ExpandJob job;
    for (const v1::ChatTurn& t : req.history()) job.history.push_back({t.role(), t.content()});
    PICE_ASSIGN_OR_RETURN(job.options, ToGenerateOptions(req.params(), sl, "params"));
    job.question = req.question();
    job.whole_question = true;
    job.max_prompt_tokens = limits.max_question_tokens;
    return job;
  }
  if (req.history_size() > 0) {
    return absl::InvalidArgumentError("history: only with whole_question");
  }
  if (req.sketch_size() == 0) {
    return absl::InvalidArgumentError("sketch: must hold at least one point");
  }
  if (req.sketch_size() > limits.max_sketch_points) {
    return absl::InvalidArgumentError(absl::StrCat("sketch: at most ", limits.max_sketch_points,
                                                   " points, got ", req.sketch_size()));
  }
  for (int i = 0; i < req.sketch_size(); ++i) {
    PICE_RETURN_IF_ERROR(ValidateText(req.sketch(i), absl::StrCat("sketch[", i, "]"),
                                      limits.max_point_bytes));
  }
  if (req.index() < 0 || req.index() >= req.sketch_size()) {
    return absl::InvalidArgumentError(absl::StrCat("index: must be in [0, ", req.sketch_size() - 1,
                                                   "], got ", req.index()));
  }
  ExpandJob job;
  PICE_ASSIGN_OR_RETURN(job.options, ToGenerateOptions(req.params(), sl, "params"));
  job.question = req.question();
  job.max_prompt_tokens = limits.max_question_tokens;
  job.sketch.assign(req.sketch().begin(), req.sketch().end());
  job.index = req.index();
  return job;
}

void FillExpandResponse(const v1::ExpandRequest& req, const ExpandOutcome& out,
                        const std::string& node, const char* selection,
                        v1::ExpandResponse* resp) {
  resp->set_request_id(req.request_id());
  resp->set_index(req.index());
  resp->set_text(ToValidUtf8(out.answer));
  resp->set_node(node);
  const ExpandCandidate& sel = out.candidates[out.selected];
  resp->set_model(sel.member);
  resp->set_confidence(sel.mean_logprob);
  resp->set_agreement(out.agreement);
  for (const auto& c : out.candidates) {
    v1::Candidate* pc = resp->add_candidates();
    pc->set_model(c.member);
    pc->set_text(ToValidUtf8(c.text));
    pc->set_mean_logprob(c.mean_logprob);
    pc->set_consensus(c.consensus);
    pc->set_score(c.score);
    pc->set_tokens(c.tokens);
    pc->set_selected(c.selected);
  }
  resp->set_selection(selection);
  resp->set_finish_reason(ToProtoFinish(out.finish));
  resp->set_prompt_tokens(out.prompt_tokens);
  resp->set_generated_tokens(out.generated_tokens);
}

}  // namespace pice
