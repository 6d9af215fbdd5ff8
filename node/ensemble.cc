#include "node/ensemble.h"

#include <chrono>
#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// State shared by the member requests of one ExpandAsync call.
struct Gather {
  std::mutex mu;
  int remaining = 0;
  std::vector<std::optional<absl::StatusOr<GenerateResult>>> results;  // per member
  std::function<void(absl::StatusOr<ExpandOutcome>)> done;
  double start = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Ensemble>> Ensemble::Create(
    std::vector<EnsembleMember> members, const VoteOptions& vote, const PromptTemplate& tmpl,
    std::map<std::string, std::shared_ptr<Engine>> engines) {
  if (members.empty()) return absl::InvalidArgumentError("an ensemble needs at least one member");
  std::unique_ptr<Ensemble> e(new Ensemble());
  for (const auto& m : members) {
    if (!(m.weight > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("member ", m.name, ": weight must be > 0"));
    }
    auto it = engines.find(m.model_path);
    if (it == engines.end() || !it->second) {
      return absl::InvalidArgumentError(
          absl::StrCat("member ", m.name, ": no engine for ", m.model_path));
    }
    e->member_engines_.push_back(it->second);
  }
  e->members_ = std::move(members);
  e->vote_ = vote;
  e->tmpl_ = tmpl;
  return e;
}

std::vector<std::shared_ptr<Engine>> Ensemble::engines() const {
  std::vector<std::shared_ptr<Engine>> out;
  for (const auto& e : member_engines_) {
    bool seen = false;
    for (const auto& o : out) seen = seen || o == e;
    if (!seen) out.push_back(e);
  }
  return out;
}

absl::Status Ensemble::ExpandAsync(const ExpandJob& job,
                                   std::function<void(absl::StatusOr<ExpandOutcome>)> done) const {
  const size_t n = members_.size();
  BuiltPrompt built = job.whole_question
                          ? BuildFullPrompt(tmpl_, job.question)
                          : BuildExpandPrompt(tmpl_, job.question, job.sketch, job.index);
  const PromptPart& part = job.whole_question ? tmpl_.full : tmpl_.expand;
  // Tokenize per distinct engine (members on one file share the tokens).
  std::vector<EngineRequest> requests(n);
  std::map<const Engine*, std::vector<Token>> prompts;
  for (size_t i = 0; i < n; ++i) {
    const Engine* eng = member_engines_[i].get();
    if (!prompts.count(eng)) {
      auto ids = EncodePrompt(tmpl_, eng->model(), built);
      if (!ids.ok()) return ids.status();
      const size_t limit = std::min<size_t>(job.max_prompt_tokens, std::max(1, eng->n_ctx() - 1));
      if (ids->size() > limit) {
        return absl::InvalidArgumentError(absl::StrCat(
            "question: the prompt is ", ids->size(), " tokens on ", members_[i].name,
            ", at most ", limit, " (limits.max_question_tokens or the model context)"));
      }
      prompts[eng] = *std::move(ids);
    }
    EngineRequest& r = requests[i];
    r.prompt = prompts[eng];
    r.options = job.options;
    r.options.stop.insert(r.options.stop.end(), part.stop.begin(), part.stop.end());
    if (members_[i].temperature) r.options.sampling.temperature = *members_[i].temperature;
    r.options.sampling.seed = members_[i].seed ? *members_[i].seed : job.options.sampling.seed + i;
    r.cancelled = job.cancelled;
  }

  auto g = std::make_shared<Gather>();
  g->results.resize(n);
  g->done = std::move(done);
  g->start = Now();
  g->remaining = static_cast<int>(n) + 1;  // + 1: the submitter's own hold, released last

  // Called once per member (from an engine thread, or from here on a failed submit) and
  // once with i == n by the submitter; the last call votes.
  auto finish_one = [this, g, job, n](size_t i, absl::StatusOr<GenerateResult> r) {
    {
      std::lock_guard<std::mutex> l(g->mu);
      if (i < n) g->results[i] = std::move(r);
      if (--g->remaining > 0) return;
    }
    // The last member: vote. No lock needed, every writer is done.
    ExpandOutcome out;
    out.seconds = Now() - g->start;
    std::vector<VoteCandidate> votes;
    std::vector<size_t> member_of;
    std::vector<FinishReason> finish;
    absl::Status first_error;
    for (size_t k = 0; k < g->results.size(); ++k) {
      const auto& res = *g->results[k];
      if (!res.ok()) {
        out.failures.push_back(absl::StrCat(members_[k].name, ": ", res.status().ToString()));
        if (first_error.ok()) first_error = res.status();
        continue;
      }
      out.prompt_tokens += static_cast<int64_t>(res->prompt_tokens.size());
      out.generated_tokens += static_cast<int64_t>(res->tokens.size());
      if (res->finish == FinishReason::kCancelled) continue;  // a cut-off candidate never wins
      ExpandCandidate c;
      c.member = members_[k].name;
      c.text = tmpl_.trim_expansion ? std::string(absl::StripAsciiWhitespace(res->text)) : res->text;
      c.mean_logprob = res->MeanLogprob();
      c.tokens = static_cast<int>(res->tokens.size());
      votes.push_back({c.text, c.mean_logprob, members_[k].weight});
      member_of.push_back(k);
      finish.push_back(res->finish);
      out.candidates.push_back(std::move(c));
    }
    if (out.candidates.empty()) {
      bool cancelled = job.cancelled && job.cancelled->load();
      if (cancelled) g->done(absl::CancelledError("the expansion was cancelled"));
      else if (!first_error.ok()) g->done(first_error);
      else g->done(absl::CancelledError("every member was cancelled"));
      return;
    }
    VoteResult v = Vote(votes, vote_);
    for (size_t k = 0; k < out.candidates.size(); ++k) {
      out.candidates[k].consensus = v.consensus[k];
      out.candidates[k].score = v.scores[k];
      out.candidates[k].selected = static_cast<int>(k) == v.selected;
    }
    out.selected = v.selected;
    out.agreement = v.agreement;
    out.finish = finish[v.selected];
    out.answer = job.whole_question
                     ? out.candidates[v.selected].text
                     : FormatAnswer(tmpl_, job.question, job.sketch, job.index,
                                    out.candidates[v.selected].text);
    g->done(std::move(out));
  };

  // Submit all first; a member that cannot be submitted counts as failed. No lock is
  // held here: engine callbacks may run (and take g->mu) while later members submit.
  int submitted = 0;
  absl::Status first_error;
  std::vector<absl::Status> submit_errors(n);
  for (size_t i = 0; i < n; ++i) {
    requests[i].on_done = [finish_one, i](absl::StatusOr<GenerateResult> r) {
      finish_one(i, std::move(r));
    };
    submit_errors[i] = member_engines_[i]->Submit(std::move(requests[i]));
    if (submit_errors[i].ok()) {
      ++submitted;
    } else if (first_error.ok()) {
      first_error = submit_errors[i];
    }
  }
  if (submitted == 0) return first_error;  // no callback will come; done is never called
  for (size_t i = 0; i < n; ++i) {
    if (!submit_errors[i].ok()) {
      spdlog::warn("ensemble member {} not run: {}", members_[i].name, submit_errors[i].ToString());
      finish_one(i, submit_errors[i]);
    }
  }
  finish_one(n, absl::CancelledError("submitter hold"));
  return absl::OkStatus();
}

}  // namespace pice
