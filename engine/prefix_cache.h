// An LRU cache of prompt prefixes' KV: a later prompt that starts with the same tokens
// forks the cached blocks instead of recomputing them (the cloud's system prompt and
// template across queries; an edge's question + sketch across points and candidates).
// Thread safety: none; owned by the engine's worker thread.
#ifndef PICE_ENGINE_PREFIX_CACHE_H_
#define PICE_ENGINE_PREFIX_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/tokenizer/tokenizer.h"

namespace pice {

class PrefixCache {
 public:
  // At most `max_entries` prefixes of at least `min_tokens` tokens.
  PrefixCache(int max_entries, int min_tokens) : max_entries_(max_entries), min_tokens_(min_tokens) {}

  // The entry sharing the longest prefix with `prompt`, and that length (0 when none
  // reaches min_tokens). The entry becomes most recently used.
  const KvCache* Lookup(const std::vector<Token>& prompt, int* shared);

  // Remembers the KV of `tokens` (kv->n_past() >= tokens.size()): the cache forks the
  // blocks, so `kv` may be released afterwards. Replaces an entry that is a prefix of
  // `tokens`; evicts the least recently used entry beyond max_entries.
  void Insert(const std::vector<Token>& tokens, const KvCache& kv);

  // Drops the least recently used entry; false when empty.
  bool EvictOne();
  size_t bytes() const;  // blocks referenced by the entries (shared ones counted in full)
  int size() const { return int(entries_.size()); }
  int min_tokens() const { return min_tokens_; }
  int max_entries() const { return max_entries_; }

 private:
  struct Entry {
    std::vector<Token> tokens;
    std::unique_ptr<KvCache> kv;
  };
  int max_entries_, min_tokens_;
  std::list<Entry> entries_;  // front = most recently used
};

// Length of the common prefix of a and b.
int CommonPrefix(const std::vector<Token>& a, const std::vector<Token>& b);

}  // namespace pice

#endif  // PICE_ENGINE_PREFIX_CACHE_H_
