// PagedAdamW: AdamW over named parameters with 32-bit or 8-bit blockwise state, paged on CUDA.
//
// Math: torch.optim.AdamW (decoupled weight decay applied BEFORE the Adam update, bias correction as torch);
// the order of bitsandbytes' CUDA kernel (decay after the update) is an option. At weight_decay 0, the QLoRA
// setting, the two orders agree. Formulas in kernels/ref/adamw_ref.h, docs/nf4-spec.md sections 5.3 and 5.4.
//
// Memory: CPU parameters keep their state in ordinary memory and are updated by the reference kernels
// (multi-threaded over chunks). CUDA parameters with at least `paged_min_numel` elements keep their state in
// unified (managed) memory, as bitsandbytes' paged optimizers do (docs/nf4-spec.md sections 5.1 and 5.2): it is
// zeroed on the device, prefetched before each update when the device supports concurrent managed access, and the
// driver pages it to the host under memory pressure instead of failing with OOM. Smaller states are plain device
// tensors (bnb pages only numel >= 1e5).
//
// Checkpoints: save(dir) writes DIR/optimizer.safetensors (NAME.state1, NAME.state2, and for 8-bit state
// NAME.absmax1, NAME.absmax2 plus the maps qmap1, qmap2) and DIR/optimizer.json (step counts, hyperparameters,
// parameter names and shapes). load(dir) copies into the already-allocated state tensors, so paged state
// stays paged after a resume (bnb's load_state_dict loses it, docs/nf4-spec.md section 5.5).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlora::optim {

enum class DecayOrder { BeforeUpdate /* torch AdamW */, AfterUpdate /* bnb CUDA kernel */ };
enum class StateBits { k32, k8 };

struct AdamWOptions {
  double lr = 2e-4;             // qlora.py learning_rate
  double beta1 = 0.9;           // HF adam_beta1
  double beta2 = 0.999;         // HF adam_beta2 (the Guanaco scripts pass 0.999)
  double eps = 1e-8;            // HF adam_epsilon
  double weight_decay = 0.0;    // qlora.py weight_decay
  DecayOrder decay_order = DecayOrder::BeforeUpdate;
  StateBits state_bits = StateBits::k32;   // k8: bnb AdamW8bit-style blockwise state (256 per absmax)
  bool paged = true;                       // CUDA parameters: state in managed memory
  int64_t paged_min_numel = 100000;        // bnb pages the state of parameters with numel >= 1e5 only
  int64_t min_8bit_numel = 4096;           // bnb min_8bit_size: smaller parameters keep 32-bit state
};

std::string to_string(StateBits bits);       // "32bit" | "8bit"
std::string to_string(DecayOrder order);     // "before_update" | "after_update"

using NamedParameters = std::vector<std::pair<std::string, at::Tensor>>;

class PagedAdamW {
 public:
  // Parameters: contiguous float32 or bfloat16 tensors (CPU or CUDA) with unique names.
  PagedAdamW(NamedParameters params, AdamWOptions options);
  ~PagedAdamW();
  PagedAdamW(const PagedAdamW&) = delete;
  PagedAdamW& operator=(const PagedAdamW&) = delete;

  // One update of every parameter whose grad is defined (grad dtype and shape equal the parameter's).
  void step();
  // Drops the gradients (torch's set_to_none default).
  void zero_grad();

  void set_lr(double lr) { options_.lr = lr; }
  double lr() const { return options_.lr; }
  const AdamWOptions& options() const { return options_; }
  // Updates taken by the parameter that has taken the most (torch counts per parameter).
  int64_t step_count() const;

  int64_t state_bytes() const;        // all optimizer state, paged or not
  int64_t paged_state_bytes() const;  // the part that lives in managed memory
  // Whether the named parameter's state lives in managed memory (false on CPU). Input error if unknown.
  bool state_is_paged(const std::string& name) const;
  // The state of one parameter decoded to float32 (m, v), for tests and inspection.
  std::pair<at::Tensor, at::Tensor> state_as_float(const std::string& name) const;

  void save(const std::string& dir) const;  // DIR/optimizer.safetensors + DIR/optimizer.json, atomically each
  void load(const std::string& dir);        // Input error naming the file and key on any mismatch

 private:
  struct ParamState;
  const ParamState& find(const std::string& name) const;
  void init_state(ParamState& st);
  AdamWOptions options_;
  std::vector<ParamState> states_;
  at::Tensor qmap1_cpu_, qmap2_cpu_;  // (256) float dynamic maps: signed (m) and unsigned (v)
};

}  // namespace qlora::optim
