#include "engine/prefix_cache.h"

namespace pice {

int CommonPrefix(const std::vector<Token>& a, const std::vector<Token>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int(i);
}

const KvCache* PrefixCache::Lookup(const std::vector<Token>& prompt, int* shared) {
  *shared = 0;
  auto best = entries_.end();
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    int n = CommonPrefix(it->tokens, prompt);
    if (n >= min_tokens_ && n > *shared) {
      *shared = n;
      best = it;
    }
  }
  if (best == entries_.end()) return nullptr;
  entries_.splice(entries_.begin(), entries_, best);
  return entries_.front().kv.get();
}

void PrefixCache::Insert(const std::vector<Token>& tokens, const KvCache& kv) {
  if (max_entries_ <= 0 || int(tokens.size()) < min_tokens_ || kv.n_past() < int(tokens.size())) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    // An existing entry that already covers these tokens: refresh it.
    if (CommonPrefix(it->tokens, tokens) == int(tokens.size())) {
      entries_.splice(entries_.begin(), entries_, it);
      return;
    }
    // An entry that is a prefix of the new one is superseded.
    if (CommonPrefix(it->tokens, tokens) == int(it->tokens.size())) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  Entry e;
  e.tokens = tokens;
  e.kv = std::make_unique<KvCache>(kv.pool(), kv.n_ctx());
  e.kv->ForkFrom(kv, int(tokens.size()));
  entries_.push_front(std::move(e));
  while (int(entries_.size()) > max_entries_) entries_.pop_back();
}

bool PrefixCache::EvictOne() {
  if (entries_.empty()) return false;
  entries_.pop_back();
  return true;
}

size_t PrefixCache::bytes() const {
  size_t b = 0;
  for (const Entry& e : entries_) b += e.kv->bytes();
  return b;
}

}  // namespace pice
