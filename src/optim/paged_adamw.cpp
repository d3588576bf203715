// PagedAdamW: state bookkeeping, CPU update through the reference kernels, CUDA update through
// adamw_device_cuda.cpp, and the state dict (safetensors + JSON). See paged_adamw.h.
#include "qlora/optim/paged_adamw.h"

#include <ATen/Parallel.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "kernels/ref/adamw_ref.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/optim/paged_memory.h"
#include "qlora/tensor/safetensors_torch.h"
#include "src/optim/adamw_device.h"

namespace qlora::optim {

using nlohmann::json;

namespace {

constexpr const char* kStateFile = "optimizer.safetensors";
constexpr const char* kMetaFile = "optimizer.json";
constexpr const char* kFormat = "qlora-paged-adamw";
constexpr int kFormatVersion = 1;
// Elements per CPU work item of the 32-bit update: large enough to amortise the thread hand-off.
constexpr int64_t kCpuGrain = 1 << 15;

int64_t num_blocks(int64_t n) { return (n + ref::kAdamW8bitBlock - 1) / ref::kAdamW8bitBlock; }

}  // namespace

std::string to_string(StateBits bits) { return bits == StateBits::k8 ? "8bit" : "32bit"; }
std::string to_string(DecayOrder order) {
  return order == DecayOrder::AfterUpdate ? "after_update" : "before_update";
}

struct PagedAdamW::ParamState {
  std::string name;
  at::Tensor param;             // any shape, float32 or bfloat16, contiguous
  int64_t step = 0;             // updates taken (torch's per-parameter "step")
  bool eight_bit = false;
  bool paged = false;
  at::Tensor state1, state2;    // (n) float32 m, v; or (n) uint8 codes into qmap1 / qmap2
  at::Tensor absmax1, absmax2;  // (ceil(n/256)) float32, 8-bit only
  at::Tensor qmap1, qmap2;      // (256) float32 on the parameter's device, 8-bit only
};

PagedAdamW::PagedAdamW(NamedParameters params, AdamWOptions options) : options_(options) {
  float map1[256], map2[256];
  ref::dynamic_map(true, map1);
  ref::dynamic_map(false, map2);
  qmap1_cpu_ = at::from_blob(map1, {256}, at::kFloat).clone();
  qmap2_cpu_ = at::from_blob(map2, {256}, at::kFloat).clone();

  std::set<std::string> seen;
  states_.reserve(params.size());
  for (auto& [name, p] : params) {
    QLORA_CHECK(seen.insert(name).second, "duplicate optimizer parameter name ", name);
    QLORA_CHECK(p.defined() && p.is_contiguous(), "optimizer parameter ", name, " must be a contiguous tensor");
    QLORA_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16, "optimizer parameter ", name,
                " has dtype ", c10::toString(p.scalar_type()), ", expected float32 or bfloat16");
    ParamState st;
    st.name = name;
    st.param = p;
    init_state(st);
    states_.push_back(std::move(st));
  }
}

PagedAdamW::~PagedAdamW() = default;

void PagedAdamW::init_state(ParamState& st) {
  const int64_t n = st.param.numel();
  const auto device = st.param.device();
  st.eight_bit = options_.state_bits == StateBits::k8 && n >= options_.min_8bit_numel;
  st.paged = device.is_cuda() && options_.paged && n >= options_.paged_min_numel;
  const auto state_dtype = st.eight_bit ? at::kByte : at::kFloat;
  st.state1 = alloc_state_tensor(n, state_dtype, device, st.paged);
  st.state2 = alloc_state_tensor(n, state_dtype, device, st.paged);
  if (st.eight_bit) {
    st.absmax1 = alloc_state_tensor(num_blocks(n), at::kFloat, device, st.paged);
    st.absmax2 = alloc_state_tensor(num_blocks(n), at::kFloat, device, st.paged);
    st.qmap1 = qmap1_cpu_.to(device);
    st.qmap2 = qmap2_cpu_.to(device);
  }
}

void PagedAdamW::step() {
  const bool decay_after = options_.decay_order == DecayOrder::AfterUpdate;
  for (auto& st : states_) {
    const at::Tensor& grad_ref = st.param.grad();
    if (!grad_ref.defined()) continue;
    QLORA_CHECK(grad_ref.sizes() == st.param.sizes() && grad_ref.scalar_type() == st.param.scalar_type() &&
                    grad_ref.device() == st.param.device(),
                "gradient of ", st.name, " does not match its parameter (shape, dtype or device)");
    const at::Tensor grad = grad_ref.contiguous();
    st.step += 1;
    const auto s = ref::adamw_scalars(options_.lr, options_.beta1, options_.beta2, options_.eps,
                                      options_.weight_decay, st.step, decay_after);
    const int64_t n = st.param.numel();
    if (st.param.is_cuda()) {
      for (const auto* t : {&st.state1, &st.state2, &st.absmax1, &st.absmax2})
        if (t->defined()) prefetch_to_device(*t);
      if (st.eight_bit)
        detail::cuda_adamw8(st.param, grad, st.state1, st.state2, st.absmax1, st.absmax2, st.qmap1, st.qmap2, s);
      else
        detail::cuda_adamw32(st.param, grad, st.state1, st.state2, s);
      continue;
    }
    const bool bf16 = st.param.scalar_type() == at::kBFloat16;
    if (!st.eight_bit) {
      float* m = st.state1.data_ptr<float>();
      float* v = st.state2.data_ptr<float>();
      at::parallel_for(0, n, kCpuGrain, [&](int64_t begin, int64_t end) {
        if (bf16)
          ref::adamw32_step_bf16(reinterpret_cast<uint16_t*>(st.param.data_ptr()) + begin,
                                 reinterpret_cast<const uint16_t*>(grad.data_ptr()) + begin, m + begin, v + begin,
                                 end - begin, s);
        else
          ref::adamw32_step_f32(st.param.data_ptr<float>() + begin, grad.data_ptr<float>() + begin, m + begin,
                                v + begin, end - begin, s);
      });
    } else {
      uint8_t* c1 = st.state1.data_ptr<uint8_t>();
      uint8_t* c2 = st.state2.data_ptr<uint8_t>();
      float* a1 = st.absmax1.data_ptr<float>();
      float* a2 = st.absmax2.data_ptr<float>();
      const float* q1 = st.qmap1.data_ptr<float>();
      const float* q2 = st.qmap2.data_ptr<float>();
      // Parallel over whole absmax blocks: each block's update is independent of every other.
      at::parallel_for(0, num_blocks(n), kCpuGrain / ref::kAdamW8bitBlock, [&](int64_t b0, int64_t b1) {
        const int64_t begin = b0 * ref::kAdamW8bitBlock;
        const int64_t end = std::min(n, b1 * ref::kAdamW8bitBlock);
        if (bf16)
          ref::adamw8_blockwise_step_bf16(reinterpret_cast<uint16_t*>(st.param.data_ptr()) + begin,
                                          reinterpret_cast<const uint16_t*>(grad.data_ptr()) + begin, c1 + begin,
                                          c2 + begin, a1 + b0, a2 + b0, q1, q2, end - begin, s);
        else
          ref::adamw8_blockwise_step_f32(st.param.data_ptr<float>() + begin, grad.data_ptr<float>() + begin,
                                         c1 + begin, c2 + begin, a1 + b0, a2 + b0, q1, q2, end - begin, s);
      });
    }
  }
}

void PagedAdamW::zero_grad() {
  for (auto& st : states_) st.param.mutable_grad().reset();
}

int64_t PagedAdamW::step_count() const {
  int64_t most = 0;
  for (const auto& st : states_) most = std::max(most, st.step);
  return most;
}

int64_t PagedAdamW::state_bytes() const {
  int64_t total = 0;
  for (const auto& st : states_)
    for (const auto* t : {&st.state1, &st.state2, &st.absmax1, &st.absmax2})
      if (t->defined()) total += static_cast<int64_t>(t->nbytes());
  return total;
}

int64_t PagedAdamW::paged_state_bytes() const {
  int64_t total = 0;
  for (const auto& st : states_)
    for (const auto* t : {&st.state1, &st.state2, &st.absmax1, &st.absmax2})
      if (t->defined() && is_managed(*t)) total += static_cast<int64_t>(t->nbytes());
  return total;
}

const PagedAdamW::ParamState& PagedAdamW::find(const std::string& name) const {
  for (const auto& st : states_)
    if (st.name == name) return st;
  QLORA_INPUT_ERROR("optimizer has no parameter named '", name, "'");
}

bool PagedAdamW::state_is_paged(const std::string& name) const {
  const auto& st = find(name);
  return is_managed(st.state1) && is_managed(st.state2);
}

std::pair<at::Tensor, at::Tensor> PagedAdamW::state_as_float(const std::string& name) const {
  const auto& st = find(name);
  if (!st.eight_bit) return {st.state1.to(at::kCPU).clone(), st.state2.to(at::kCPU).clone()};
  const int64_t n = st.param.numel();
  at::Tensor m = at::empty({n}, at::kFloat), v = at::empty({n}, at::kFloat);
  const auto c1 = st.state1.to(at::kCPU), c2 = st.state2.to(at::kCPU);
  const auto a1 = st.absmax1.to(at::kCPU), a2 = st.absmax2.to(at::kCPU);
  ref::dequantize_state8(c1.data_ptr<uint8_t>(), a1.data_ptr<float>(), qmap1_cpu_.data_ptr<float>(), n,
                         m.data_ptr<float>());
  ref::dequantize_state8(c2.data_ptr<uint8_t>(), a2.data_ptr<float>(), qmap2_cpu_.data_ptr<float>(), n,
                         v.data_ptr<float>());
  return {m, v};
}

void PagedAdamW::save(const std::string& dir) const {
  NamedTensors tensors;
  json params = json::array();
  bool any8 = false;
  for (const auto& st : states_) {
    tensors.emplace_back(st.name + ".state1", st.state1);
    tensors.emplace_back(st.name + ".state2", st.state2);
    if (st.eight_bit) {
      any8 = true;
      tensors.emplace_back(st.name + ".absmax1", st.absmax1);
      tensors.emplace_back(st.name + ".absmax2", st.absmax2);
    }
    params.push_back({{"name", st.name},
                      {"shape", st.param.sizes().vec()},
                      {"dtype", std::string(c10::toString(st.param.scalar_type()))},
                      {"step", st.step},
                      {"state", st.eight_bit ? "8bit" : "32bit"}});
  }
  if (any8) {
    tensors.emplace_back("qmap1", qmap1_cpu_);
    tensors.emplace_back("qmap2", qmap2_cpu_);
  }
  fs::make_dirs(dir);
  save_tensors(fs::join(dir, kStateFile), tensors);
  const json meta = {{"format", kFormat},
                     {"version", kFormatVersion},
                     {"hyperparameters",
                      {{"lr", options_.lr},
                       {"beta1", options_.beta1},
                       {"beta2", options_.beta2},
                       {"eps", options_.eps},
                       {"weight_decay", options_.weight_decay},
                       {"decay_order", to_string(options_.decay_order)},
                       {"state_bits", to_string(options_.state_bits)}}},
                     {"params", params}};
  fs::write_text_atomic(fs::join(dir, kMetaFile), meta.dump(2) + "\n");
}

void PagedAdamW::load(const std::string& dir) {
  const std::string meta_path = fs::join(dir, kMetaFile);
  const std::string state_path = fs::join(dir, kStateFile);
  // A checkpoint edited or damaged by hand: wrong JSON types (json::type_error) or tensors torch refuses
  // (c10::Error) are bad input naming the file, not internal errors.
  try {
    json meta;
    try {
      meta = json::parse(fs::read_text(meta_path));
    } catch (const json::exception& e) {
      QLORA_INPUT_ERROR(meta_path, ": not valid JSON: ", e.what());
    }
    QLORA_INPUT_CHECK(meta.is_object() && meta.value("format", "") == kFormat, meta_path,
                      ": not a qlora optimizer state (expected \"format\": \"", kFormat, "\")");
    QLORA_INPUT_CHECK(meta.value("version", 0) == kFormatVersion, meta_path, ": unsupported version ",
                      meta.value("version", 0), " (expected ", kFormatVersion, ")");
    QLORA_INPUT_CHECK(meta.contains("params") && meta["params"].is_array(), meta_path, ": missing key 'params'");

    std::map<std::string, json> saved;
    for (const auto& p : meta["params"]) {
      QLORA_INPUT_CHECK(p.is_object() && p.contains("name") && p["name"].is_string(), meta_path,
                        ": every entry of 'params' needs a string 'name'");
      saved[p["name"].get<std::string>()] = p;
    }
    for (const auto& st : states_)
      QLORA_INPUT_CHECK(saved.count(st.name), meta_path, ": missing state of parameter '", st.name, "'");
    std::set<std::string> ours;
    for (const auto& st : states_) ours.insert(st.name);
    for (const auto& [name, p] : saved)
      QLORA_INPUT_CHECK(ours.count(name), meta_path, ": unexpected parameter '", name,
                        "' (not trained by this run: different LoRA targets or rank?)");

    const auto file = safetensors::File::open(state_path);
    const auto hp = meta.value("hyperparameters", json::object());
    if (hp.value("beta1", options_.beta1) != options_.beta1 || hp.value("beta2", options_.beta2) != options_.beta2 ||
        hp.value("eps", options_.eps) != options_.eps)
      log::warn(str(meta_path, ": saved betas/eps differ from the configured ones; the configured ones apply"));
    for (auto& st : states_) {
      const json& p = saved[st.name];
      const auto shape = p.value("shape", std::vector<int64_t>{});
      QLORA_INPUT_CHECK(shape == st.param.sizes().vec(), meta_path, ": parameter '", st.name, "' has shape ",
                        json(shape).dump(), " in the checkpoint but ", json(st.param.sizes().vec()).dump(), " here");
      const std::string kind = p.value("state", "");
      QLORA_INPUT_CHECK(kind == (st.eight_bit ? "8bit" : "32bit"), meta_path, ": parameter '", st.name, "' has ",
                        kind, " state in the checkpoint but this optimizer uses ", st.eight_bit ? "8bit" : "32bit",
                        " (optim setting changed?)");
      QLORA_INPUT_CHECK(p.contains("step") && p["step"].is_number_integer() && p["step"].get<int64_t>() >= 0,
                        meta_path, ": parameter '", st.name, "' needs a non-negative integer 'step'");
      auto copy_in = [&](const std::string& suffix, at::Tensor& dst) {
        const std::string key = st.name + suffix;
        QLORA_INPUT_CHECK(file->has(key), state_path, ": missing tensor '", key, "'");
        const at::Tensor src = tensor_view(file, key);
        QLORA_INPUT_CHECK(src.scalar_type() == dst.scalar_type() && src.numel() == dst.numel(), state_path,
                          ": tensor '", key, "' has dtype ", c10::toString(src.scalar_type()), " and ", src.numel(),
                          " elements, expected ", c10::toString(dst.scalar_type()), " and ", dst.numel());
        dst.copy_(src.reshape({dst.numel()}));  // into the existing (possibly managed) allocation: stays paged
      };
      copy_in(".state1", st.state1);
      copy_in(".state2", st.state2);
      if (st.eight_bit) {
        copy_in(".absmax1", st.absmax1);
        copy_in(".absmax2", st.absmax2);
      }
      st.step = p["step"].get<int64_t>();
    }
  } catch (const json::exception& e) {
    QLORA_INPUT_ERROR(meta_path, ": unreadable optimizer state: ", e.what());
  } catch (const c10::Error& e) {
    QLORA_INPUT_ERROR(state_path, ": unreadable optimizer state: ", e.what_without_backtrace());
  }
}

}  // namespace qlora::optim
