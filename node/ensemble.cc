#include "node/ensemble.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "node/local_backend.h"
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
  std::vector<std::optional<absl::StatusOr<BackendResult>>> results;  // per member
  std::function<void(absl::StatusOr<ExpandOutcome>)> done;
  double start = 0;
};

}  // namespace

absl::StatusOr<std::vector<std::shared_ptr<ModelBackend>>> CreateMemberBackends(
    const std::vector<EnsembleMember>& members, const EngineOptions& base) {
  std::vector<std::shared_ptr<ModelBackend>> out;
  std::map<std::string, std::shared_ptr<ModelBackend>> by_file;
  for (const auto& m : members) {
    auto named = [&](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat("member ", m.name, ": ", s.message()));
    };
    if (m.remote) {
      auto remote = OpenAIBackend::Create(*m.remote);
      if (!remote.ok()) return named(remote.status());
      out.push_back(std::shared_ptr<ModelBackend>(std::move(*remote)));
      continue;
    }
    auto it = by_file.find(m.model_path);
    if (it == by_file.end()) {
      EngineOptions eo = base;
      eo.model_path = m.model_path;
      auto engine = Engine::Create(eo);
      if (!engine.ok()) return named(engine.status());
      it = by_file.emplace(m.model_path, std::make_shared<LocalBackend>(std::move(*engine))).first;
    }
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Ensemble>> Ensemble::Create(
    std::vector<EnsembleMember> members, const VoteOptions& vote, const PromptTemplate& tmpl,
    std::vector<std::shared_ptr<ModelBackend>> backends) {
  if (members.empty()) return absl::InvalidArgumentError("an ensemble needs at least one member");
  if (backends.size() != members.size()) {
    return absl::InvalidArgumentError("an ensemble needs one backend per member");
  }
  std::unique_ptr<Ensemble> e(new Ensemble());
  for (size_t i = 0; i < members.size(); ++i) {
    const auto& m = members[i];
    if (!(m.weight > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("member ", m.name, ": weight must be > 0"));
    }
    if (!backends[i]) {
      return absl::InvalidArgumentError(absl::StrCat("member ", m.name, ": no backend"));
    }
  }
  e->member_backends_ = std::move(backends);
  e->members_ = std::move(members);
  e->vote_ = vote;
  e->tmpl_ = tmpl;
  return e;
}

std::vector<std::shared_ptr<ModelBackend>> Ensemble::backends() const {
  std::vector<std::shared_ptr<ModelBackend>> out;
  for (const auto& e : member_backends_) {
    if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
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
  std::vector<BackendRequest> requests(n);
  for (size_t i = 0; i < n; ++i) {
    BackendRequest& r = requests[i];
    r.prompt = built;
    r.history = job.history;
    r.chat = tmpl_.chat;
    r.system = tmpl_.system;
    r.max_prompt_tokens = job.max_prompt_tokens;
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
  auto finish_one = [this, g, job, n](size_t i, absl::StatusOr<BackendResult> r) {
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
      out.prompt_tokens += res->prompt_tokens;
      out.generated_tokens += res->generated_tokens;
      if (res->finish == FinishReason::kCancelled) continue;  // a cut-off candidate never wins
      ExpandCandidate c;
      c.member = members_[k].name;
      c.text = tmpl_.trim_expansion ? std::string(absl::StripAsciiWhitespace(res->text)) : res->text;
      c.mean_logprob = res->mean_logprob.value_or(std::nan(""));
      c.tokens = static_cast<int>(res->generated_tokens);
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
    // Unknown confidence (a remote without logprobs): the lowest known, else 0.
    double lowest = 0;
    bool any_known = false;
    for (const auto& c : out.candidates) {
      if (std::isnan(c.mean_logprob)) continue;
      lowest = any_known ? std::min(lowest, c.mean_logprob) : c.mean_logprob;
      any_known = true;
    }
    for (size_t k = 0; k < votes.size(); ++k) {
      if (std::isnan(votes[k].mean_logprob)) votes[k].mean_logprob = out.candidates[k].mean_logprob = lowest;
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
    requests[i].on_done = [finish_one, i](absl::StatusOr<BackendResult> r) {
      finish_one(i, std::move(r));
    };
    submit_errors[i] = member_backends_[i]->Submit(std::move(requests[i]));
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
