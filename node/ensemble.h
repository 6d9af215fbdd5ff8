// An ensemble of 1..k models that each expand the same sketch point; the candidates are
// scored and one is selected (node/voting.h). A member's model runs on a backend
// (node/backend.h): a GGUF file on this node's engine, or a remote OpenAI-compatible
// server. Members may share a GGUF file (different seeds/temperatures): each distinct
// file is loaded into one Engine (CreateMemberBackends), and members on one Engine decode
// in the same batch. The cloud uses a one-member ensemble for Expand.
//
// A member whose backend returns no log-probabilities has an unknown confidence; it
// counts as the lowest known confidence among the candidates (0 when none is known), so
// it never wins on confidence alone and consensus still counts it fully.
//
// Thread safety: ExpandAsync may be called from any thread; `done` runs once, on a
// backend thread (or on the caller's thread when nothing could be submitted).
#ifndef PICE_NODE_ENSEMBLE_H_
#define PICE_NODE_ENSEMBLE_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/templates.h"
#include "node/voting.h"
#include "engine/engine.h"
#include "node/backend.h"
#include "node/openai_backend.h"

namespace pice {

struct EnsembleMember {
  std::string name;                    // reported as Candidate.model
  std::string model_path;              // GGUF file (unset when remote)
  std::optional<RemoteModelOptions> remote;  // `backend: {kind: openai, ...}` instead
  std::optional<float> temperature;    // unset: the request's temperature
  std::optional<uint64_t> seed;        // unset: the request's seed + the member's index
  double weight = 1.0;                 // voting weight (> 0)
};

struct ExpandCandidate {
  std::string member;
  std::string text;          // the expansion as generated (trimmed per template)
  double mean_logprob = 0;
  double consensus = 0;
  double score = 0;
  int tokens = 0;
  bool selected = false;
};

struct ExpandOutcome {
  std::vector<ExpandCandidate> candidates;  // one per member that produced a result
  int selected = -1;
  std::string answer;        // the selected expansion formatted with the template's answer
  double agreement = 0;
  FinishReason finish = FinishReason::kStop;  // the selected candidate's
  int64_t prompt_tokens = 0;                  // summed over members
  int64_t generated_tokens = 0;
  double seconds = 0;                         // wall time from submit to the last member
  std::vector<std::string> failures;          // "member: error" for members that failed
};

// What one expansion asks for.
struct ExpandJob {
  std::string question;
  std::vector<std::string> sketch;
  int index = 0;
  // Degraded mode: answer the whole question with the template's `full` prompt (sketch
  // and index unused); the answer is the selected candidate's text as is.
  bool whole_question = false;
  std::vector<ChatMessage> history;  // with whole_question: the turns before the question
  int max_prompt_tokens = 1 << 30;  // longer prompts: INVALID_ARGUMENT naming `question`
  GenerateOptions options;   // request options; members override temperature/seed
  std::shared_ptr<std::atomic<bool>> cancelled;  // may be null
};

// One backend per member: each distinct GGUF file loaded once into an Engine made from
// `base` (model_path set per file), each remote member its own OpenAIBackend. Errors name
// the member.
absl::StatusOr<std::vector<std::shared_ptr<ModelBackend>>> CreateMemberBackends(
    const std::vector<EnsembleMember>& members, const EngineOptions& base);

class Ensemble {
 public:
  // `backends[i]` runs member i (CreateMemberBackends). INVALID_ARGUMENT for no members,
  // a missing backend or a bad weight.
  static absl::StatusOr<std::unique_ptr<Ensemble>> Create(
      std::vector<EnsembleMember> members, const VoteOptions& vote, const PromptTemplate& tmpl,
      std::vector<std::shared_ptr<ModelBackend>> backends);

  // REQUIRES: the backends are stopped (ModelBackend::Stop) before the Ensemble is
  // destroyed: their callbacks use it. Its owner does that (EdgeService, CloudService).
  //
  // Submits every member's request before any runs to completion, and calls `done` with
  // the vote once all have finished. Returns an error (and never calls done) when no
  // member could be submitted: RESOURCE_EXHAUSTED when the engines are full, the
  // engine's INVALID_ARGUMENT for a prompt that does not fit.
  absl::Status ExpandAsync(const ExpandJob& job,
                           std::function<void(absl::StatusOr<ExpandOutcome>)> done) const;

  const std::vector<EnsembleMember>& members() const { return members_; }
  const VoteOptions& vote() const { return vote_; }
  const PromptTemplate& prompt_template() const { return tmpl_; }
  // Distinct backends, in member order.
  std::vector<std::shared_ptr<ModelBackend>> backends() const;

 private:
  Ensemble() = default;
  std::vector<EnsembleMember> members_;
  VoteOptions vote_;
  PromptTemplate tmpl_;
  std::vector<std::shared_ptr<ModelBackend>> member_backends_;  // per member
};

}  // namespace pice

#endif  // PICE_NODE_ENSEMBLE_H_
