#include "engine/kv_cache.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace pice {

KvBlock::KvBlock(KvBlockPool* p, size_t floats) : pool(p), k(floats), v(floats) {}

KvBlock::~KvBlock() { pool->used_ -= pool->block_bytes(); }

KvBlockPool::KvBlockPool(const HParams& hp, int block_size, size_t max_bytes)
    : n_layer_(hp.n_layer),
      kv_dim_(hp.n_head_kv * hp.head_dim),
      block_size_(block_size),
      block_floats_(size_t(hp.n_layer) * block_size * kv_dim_),
      max_bytes_(max_bytes) {}

absl::StatusOr<std::shared_ptr<KvBlock>> KvBlockPool::Allocate() {
  const size_t b = block_bytes();
  size_t cur = used_.load();
  do {
    if (max_bytes_ != 0 && cur + b > max_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("KV memory is full (", cur >> 10, " of ", max_bytes_ >> 10, " KiB in use)"));
    }
  } while (!used_.compare_exchange_weak(cur, cur + b));
  return std::make_shared<KvBlock>(this, block_floats_);
}

KvCache::KvCache(std::shared_ptr<KvBlockPool> pool, int n_ctx)
    : pool_(std::move(pool)),
      n_ctx_(n_ctx),
      block_size_(pool_->block_size()),
      shift_(std::countr_zero(unsigned(pool_->block_size()))),
      mask_(pool_->block_size() - 1),
      kv_dim_(pool_->kv_dim()) {}

KvCache::KvCache(const HParams& hp, int n_ctx)
    : KvCache(std::make_shared<KvBlockPool>(hp, 32, 0), n_ctx) {}

void KvCache::Truncate(int n) {
  if (n >= n_past_) return;
  n_past_ = std::max(0, n);
  blocks_.resize((n_past_ + block_size_ - 1) / block_size_);
}

absl::Status KvCache::Reserve(int n) {
  if (n_past_ + n > n_ctx_) {
    return absl::OutOfRangeError(absl::StrCat("sequence needs ", n_past_ + n,
                                              " positions; its context holds ", n_ctx_));
  }
  // Copy-on-write: the block that receives position n_past may be shared.
  const int first = n_past_ >> shift_;
  if ((n_past_ & mask_) != 0 && first < int(blocks_.size()) && blocks_[first].use_count() > 1) {
    auto fresh = pool_->Allocate();
    if (!fresh.ok()) return fresh.status();
    (*fresh)->k = blocks_[first]->k;
    (*fresh)->v = blocks_[first]->v;
    blocks_[first] = *std::move(fresh);
  }
  const int need = (n_past_ + n + block_size_ - 1) / block_size_;
  const size_t had = blocks_.size();
  while (int(blocks_.size()) < need) {
    auto b = pool_->Allocate();
    if (!b.ok()) {
      blocks_.resize(had);
      return b.status();
    }
    blocks_.push_back(*std::move(b));
  }
  return absl::OkStatus();
}

void KvCache::ForkFrom(const KvCache& other, int n) {
  n = std::min({n, other.n_past_, n_ctx_});
  blocks_.assign(other.blocks_.begin(), other.blocks_.begin() + (n + block_size_ - 1) / block_size_);
  n_past_ = n;
}

}  // namespace pice
