// Paged KV memory. A KvCache holds one sequence's keys and values for every layer in
// fixed-size blocks of positions taken from a KvBlockPool, so many short sequences do
// not each reserve the maximum context, and sequences that start with the same tokens
// share those blocks (computed once, referenced by many; a shared block is copied
// before it is written: copy-on-write).
#ifndef PICE_ENGINE_KV_CACHE_H_
#define PICE_ENGINE_KV_CACHE_H_

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/model.h"

namespace pice {

class KvBlockPool;

// Keys and values of `block_size` positions for all layers.
struct KvBlock {
  KvBlock(KvBlockPool* pool, size_t floats);
  ~KvBlock();
  KvBlockPool* pool;
  std::vector<float> k, v;  // [n_layer][block_size][kv_dim]
};

// Hands out blocks and bounds their total memory. Thread-safe.
class KvBlockPool {
 public:
  // max_bytes = 0: unbounded.
  KvBlockPool(const HParams& hp, int block_size, size_t max_bytes);

  // A fresh block, or RESOURCE_EXHAUSTED when the bound would be passed.
  absl::StatusOr<std::shared_ptr<KvBlock>> Allocate();

  int block_size() const { return block_size_; }
  size_t block_bytes() const { return block_floats_ * 2 * sizeof(float); }
  size_t used_bytes() const { return used_.load(); }
  size_t max_bytes() const { return max_bytes_; }
  int n_layer() const { return n_layer_; }
  int kv_dim() const { return kv_dim_; }

 private:
  friend struct KvBlock;
  int n_layer_, kv_dim_, block_size_;
  size_t block_floats_;
  size_t max_bytes_;
  std::atomic<size_t> used_{0};
};

// One sequence's cache. Thread safety: one writer at a time; blocks shared with other
// caches are never written (copy-on-write in Reserve).
class KvCache {
 public:
  // A cache of at most n_ctx positions drawing blocks from `pool` (shared, not owned).
  KvCache(std::shared_ptr<KvBlockPool> pool, int n_ctx);
  // Convenience: a private unbounded pool with 32-position blocks.
  KvCache(const HParams& hp, int n_ctx);

  int n_ctx() const { return n_ctx_; }
  int n_past() const { return n_past_; }
  // Forgets positions >= n (n <= n_past); whole blocks past n are released.
  void Truncate(int n);
  void Clear() { Truncate(0); }

  // Makes positions [n_past, n_past + n) writable: allocates blocks and copies a shared
  // partially-filled block. OUT_OF_RANGE past n_ctx, RESOURCE_EXHAUSTED when the pool
  // is full (then nothing the cache already held is lost).
  absl::Status Reserve(int n);
  // Advances n_past after a forward pass wrote the reserved positions.
  void Commit(int n) { n_past_ += n; }

  // Shares the first n positions of `other` (same pool geometry): whole blocks by
  // reference, the partial last block too until either side writes it.
  void ForkFrom(const KvCache& other, int n);

  // Bytes of blocks this cache references (shared blocks counted in full).
  size_t bytes() const { return blocks_.size() * pool_->block_bytes(); }
  const std::shared_ptr<KvBlockPool>& pool() const { return pool_; }

  float* K(int layer, int pos) { return Row(blocks_[pos >> shift_]->k, layer, pos); }
  float* V(int layer, int pos) { return Row(blocks_[pos >> shift_]->v, layer, pos); }
  const float* K(int layer, int pos) const { return Row(blocks_[pos >> shift_]->k, layer, pos); }
  const float* V(int layer, int pos) const { return Row(blocks_[pos >> shift_]->v, layer, pos); }

 private:
  float* Row(std::vector<float>& d, int layer, int pos) const {
    return d.data() + (size_t(layer) * block_size_ + (pos & mask_)) * kv_dim_;
  }
  const float* Row(const std::vector<float>& d, int layer, int pos) const {
    return d.data() + (size_t(layer) * block_size_ + (pos & mask_)) * kv_dim_;
  }

  std::shared_ptr<KvBlockPool> pool_;
  int n_ctx_;
  int block_size_, shift_, mask_, kv_dim_;
  int n_past_ = 0;
  std::vector<std::shared_ptr<KvBlock>> blocks_;
};

}  // namespace pice

#endif  // PICE_ENGINE_KV_CACHE_H_
