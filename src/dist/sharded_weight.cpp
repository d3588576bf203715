// The sharded 4-bit base (see qlora/dist/sharded_weight.h).
#include "qlora/dist/sharded_weight.h"

#include "qlora/common/error.h"

namespace qlora::dist {

namespace {

// The tensors of a QuantizedWeight that are sharded, float32 ones first so that each starts 4-byte aligned in
// the gathered bytes: the nested DQ constants, the two code maps, the block scales, then the 4-bit codes.
constexpr at::Tensor QuantizedWeight::*kSharded[] = {&QuantizedWeight::nested_absmax, &QuantizedWeight::quant_map,
                                                    &QuantizedWeight::nested_quant_map, &QuantizedWeight::absmax,
                                                    &QuantizedWeight::absmax_q, &QuantizedWeight::packed};

class RankShard final : public ShardedQuantizedWeight {
 public:
  RankShard(const QuantizedWeight& w, std::shared_ptr<ProcessGroup> group) : group_(std::move(group)), meta_(w) {
    std::vector<at::Tensor> bytes;
    for (auto member : kSharded) {
      const at::Tensor& t = w.*member;
      meta_.*member = at::Tensor();
      if (!t.defined()) continue;
      bytes.push_back(t.contiguous().view(at::kByte).reshape({-1}));
      segments_.push_back({member, t.scalar_type(), t.sizes().vec(), bytes.back().numel()});
    }
    const at::Tensor all = at::cat(bytes);
    const int64_t world = group_->world_size(), total = all.numel();
    const int64_t chunk = (total + world - 1) / world;
    const int64_t begin = std::min<int64_t>(total, chunk * group_->rank());
    const int64_t end = std::min<int64_t>(total, begin + chunk);
    // A copy of this rank's bytes: the whole weight is freed when the loader drops it.
    shard_ = at::zeros({chunk}, all.options());
    if (end > begin) shard_.narrow(0, 0, end - begin).copy_(all.narrow(0, begin, end - begin));
  }

  std::shared_ptr<const QuantizedWeight> gather() const override {
    const at::Tensor all = group_->all_gather_flat(shard_);  // (world * chunk) uint8
    auto w = std::make_shared<QuantizedWeight>(meta_);
    int64_t at = 0;
    for (const Segment& s : segments_) {
      (*w).*(s.member) = all.narrow(0, at, s.bytes).view(s.dtype).view(s.shape);
      at += s.bytes;
    }
    return w;
  }
  int64_t out_features() const override { return meta_.shape[0]; }
  int64_t in_features() const override { return meta_.shape[1]; }
  at::Device device() const override { return shard_.device(); }
  size_t resident_bytes() const override { return shard_.nbytes(); }

 private:
  struct Segment {
    at::Tensor QuantizedWeight::*member;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    int64_t bytes;
  };
  std::shared_ptr<ProcessGroup> group_;
  QuantizedWeight meta_;           // shape, type, blocksize, offset: the tensors are in the shards
  std::vector<Segment> segments_;  // what the gathered bytes hold, in order
  at::Tensor shard_;               // (chunk) uint8: this rank's part of the concatenated bytes
};

}  // namespace

std::shared_ptr<const ShardedQuantizedWeight> shard_quantized_weight(const QuantizedWeight& weight,
                                                                     std::shared_ptr<ProcessGroup> group) {
  QLORA_CHECK(weight.shape.size() == 2 && weight.packed.defined(), "sharding a weight without 4-bit bytes");
  return std::make_shared<RankShard>(weight, std::move(group));
}

}  // namespace qlora::dist
