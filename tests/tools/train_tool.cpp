// Drives the live training parity tests (tests/python/test_train_*.py, test_peft_*.py). Our side of each
// comparison; Python computes the reference side.
//
//   train_tool adamw --in IN --out OUT --bits 32|8 --lr X --wd X --steps N --save-at K --dir TMP
//       IN: p<i> initial parameters (F32), g<s>.<i> the gradient of step s = 1..N. PagedAdamW (torch order),
//       saved to TMP after step K and loaded into a fresh optimizer. OUT: p<i> final, m<i>/v<i> state as float,
//       and for 8-bit state code1_<i>, code2_<i>, absmax1_<i>, absmax2_<i>, plus qmap1/qmap2.
//   train_tool schedule --kind K --base-lr X --warmup W --total T
//       prints [lr(0), ..., lr(T)] as JSON.
//   train_tool adapter-logits --model DIR --adapter DIR --inputs IN --out OUT [--quantize nf4]
//       loads the model (fp32 CPU), adds LoRA per DIR/adapter_config.json, loads the adapter through our
//       PEFT reader, writes logits (B, T, V) of IN's input_ids/attention_mask.
//   train_tool make-adapter --model DIR --r R --alpha A --targets q_proj,v_proj --seed S --out DIR
//       a LoRA with random A and B (B ~ N(0, 0.05^2) from seed S, so the adapter changes the output), written
//       by our PEFT writer.
//   train_tool train-steps --model DIR --adapter DIR --batches IN --steps N --ga G --lr X --max-grad-norm C
//                          --out OUT [--normalization microbatch_mean|token_mean]
//       starts from the adapter in DIR, runs N optimizer steps over IN's micro-batches
//       (input_ids_<s>_<k>, labels_<s>_<k>, attention_mask_<s>_<k>), AdamW(0.9, 0.999, 1e-8, wd 0).
//       OUT: loss (N) F64, grad.<param> of step 1 before clipping, and the final adapter as final.<param>.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/model/llama_load.h"
#include "qlora/optim/grad_clip.h"
#include "qlora/optim/lr_schedule.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/tensor/safetensors_torch.h"
#include "qlora/model/adapter.h"
#include "qlora/train/train_step.h"

namespace {

using Flags = std::map<std::string, std::string>;

Flags parse_flags(int argc, char** argv, int first) {
  Flags flags;
  for (int i = first; i < argc; ++i) {
    std::string key = argv[i];
    QLORA_INPUT_CHECK(key.rfind("--", 0) == 0, "train_tool: unexpected argument ", key);
    QLORA_INPUT_CHECK(i + 1 < argc, "train_tool: ", key, " needs a value");
    flags[key.substr(2)] = argv[++i];
  }
  return flags;
}

std::string need(const Flags& flags, const std::string& key) {
  auto it = flags.find(key);
  QLORA_INPUT_CHECK(it != flags.end(), "train_tool: --", key, " is required");
  return it->second;
}

std::string get(const Flags& flags, const std::string& key, const std::string& fallback) {
  auto it = flags.find(key);
  return it == flags.end() ? fallback : it->second;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

int run_adamw(const Flags& flags) {
  const auto in = qlora::safetensors::File::open(need(flags, "in"));
  std::vector<at::Tensor> params;
  for (int i = 0; in->has("p" + std::to_string(i)); ++i)
    params.push_back(qlora::tensor_view(in, "p" + std::to_string(i)).clone().set_requires_grad(true));
  qlora::optim::NamedParameters named;
  for (size_t i = 0; i < params.size(); ++i) named.emplace_back("p" + std::to_string(i), params[i]);
  qlora::optim::AdamWOptions o;
  o.lr = std::stod(need(flags, "lr"));
  o.weight_decay = std::stod(need(flags, "wd"));
  o.state_bits = need(flags, "bits") == "8" ? qlora::optim::StateBits::k8 : qlora::optim::StateBits::k32;
  const int steps = std::stoi(need(flags, "steps")), save_at = std::stoi(need(flags, "save-at"));
  auto optimizer = std::make_unique<qlora::optim::PagedAdamW>(named, o);
  for (int s = 1; s <= steps; ++s) {
    for (size_t i = 0; i < params.size(); ++i)
      params[i].mutable_grad() = qlora::tensor_view(in, "g" + std::to_string(s) + "." + std::to_string(i)).clone();
    optimizer->step();
    if (s == save_at) {
      optimizer->save(need(flags, "dir"));
      optimizer = std::make_unique<qlora::optim::PagedAdamW>(named, o);
      optimizer->load(need(flags, "dir"));
    }
  }
  qlora::NamedTensors out;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string n = std::to_string(i);
    out.emplace_back("p" + n, params[i].detach());
    auto [m, v] = optimizer->state_as_float("p" + n);
    out.emplace_back("m" + n, m);
    out.emplace_back("v" + n, v);
  }
  // The raw 8-bit state, read back from the saved state dict format.
  optimizer->save(need(flags, "dir"));
  for (auto& [name, t] : qlora::load_tensors(qlora::fs::join(need(flags, "dir"), "optimizer.safetensors"))) {
    if (name == "qmap1" || name == "qmap2") {
      out.emplace_back(name, t);
      continue;
    }
    const auto dot = name.find('.');  // "p3.state1" -> index "3", field "state1"
    const std::string index = name.substr(1, dot - 1), field = name.substr(dot + 1);
    if (field == "absmax1" || field == "absmax2") out.emplace_back(field + "_" + index, t);
    else if (t.scalar_type() == at::kByte) out.emplace_back((field == "state1" ? "code1_" : "code2_") + index, t);
  }
  qlora::save_tensors(need(flags, "out"), out);
  return 0;
}

int run_schedule(const Flags& flags) {
  qlora::optim::LrSchedule s;
  const std::string kind = need(flags, "kind");
  bool known = false;
  for (auto k : {qlora::LrScheduler::Constant, qlora::LrScheduler::ConstantWithWarmup, qlora::LrScheduler::Linear,
                 qlora::LrScheduler::Cosine})
    if (qlora::to_string(k) == kind) s.kind = k, known = true;
  QLORA_INPUT_CHECK(known, "train_tool: unknown --kind ", kind);
  s.base_lr = std::stod(need(flags, "base-lr"));
  s.warmup_steps = std::stoll(need(flags, "warmup"));
  s.total_steps = std::stoll(need(flags, "total"));
  nlohmann::json out = nlohmann::json::array();
  for (int64_t step = 0; step <= s.total_steps; ++step) out.push_back(s.lr(step));
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

qlora::ModelOptions options_for(const qlora::AdapterConfig& a, const Flags& flags) {
  qlora::ModelOptions o;
  o.compute_dtype = at::kFloat;
  o.lora.r = a.r;
  o.lora.alpha = a.lora_alpha;
  o.lora.use_rslora = a.use_rslora;
  o.lora.dropout = 0.0;
  o.lora_targets = a.target_modules;
  if (flags.count("quantize")) {
    o.quantize = true;
    o.quant.type = qlora::parse_quant_type4(flags.at("quantize"), "train_tool --quantize");
  }
  return o;
}

qlora::LlamaForCausalLM load_with_adapter(const Flags& flags, const std::string& adapter_dir) {
  const auto adapter = qlora::load_adapter(adapter_dir);
  auto model = qlora::load_llama(need(flags, "model"), options_for(adapter.config, flags));
  qlora::copy_adapter_into(adapter, qlora::lora_layer_weights(*model), adapter_dir);
  return model;
}

int run_adapter_logits(const Flags& flags) {
  auto model = load_with_adapter(flags, need(flags, "adapter"));
  model->eval();
  const auto in = qlora::safetensors::File::open(need(flags, "inputs"));
  qlora::ForwardOptions fo;
  if (in->has("attention_mask")) fo.attention_mask = qlora::tensor_view(in, "attention_mask").clone();
  at::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(qlora::tensor_view(in, "input_ids").clone(), fo);  // (B, T, V) fp32
  qlora::save_tensors(need(flags, "out"), {{"logits", logits.contiguous()}});
  return 0;
}

int run_make_adapter(const Flags& flags) {
  qlora::AdapterConfig a;
  a.r = std::stoll(need(flags, "r"));
  a.lora_alpha = std::stod(need(flags, "alpha"));
  a.target_modules = split(need(flags, "targets"), ',');
  a.base_model_name_or_path = need(flags, "model");
  auto model = qlora::load_llama(need(flags, "model"), options_for(a, flags));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(std::stoull(need(flags, "seed")));
  const auto layers = qlora::lora_layer_weights(*model);
  {
    at::NoGradGuard no_grad;
    for (const auto& l : layers) l.lora_B.copy_(at::randn(l.lora_B.sizes(), gen) * 0.05);
  }
  qlora::save_adapter(need(flags, "out"), a, layers);
  return 0;
}

// A collated batch rebuilt from (B, T) input_ids / labels / attention_mask tensors.
qlora::data::Batch batch_from(const at::Tensor& ids, const at::Tensor& labels, const at::Tensor& mask) {
  qlora::data::Batch b;
  b.batch_size = ids.size(0);
  b.seq_len = ids.size(1);
  const auto ids_c = ids.contiguous(), labels_c = labels.contiguous(), mask_c = mask.to(at::kInt).contiguous();
  b.input_ids.assign(ids_c.data_ptr<int64_t>(), ids_c.data_ptr<int64_t>() + ids_c.numel());
  b.labels.assign(labels_c.data_ptr<int64_t>(), labels_c.data_ptr<int64_t>() + labels_c.numel());
  b.attention_mask.assign(mask_c.data_ptr<int32_t>(), mask_c.data_ptr<int32_t>() + mask_c.numel());
  b.position_ids.resize(b.input_ids.size());
  b.segment_ids.resize(b.input_ids.size());
  for (int64_t r = 0; r < b.batch_size; ++r)
    for (int64_t t = 0; t < b.seq_len; ++t) {
      const size_t i = static_cast<size_t>(r * b.seq_len + t);
      b.position_ids[i] = t;
      b.segment_ids[i] = b.attention_mask[i] ? 1 : 0;
      if (t >= 1 && b.labels[i] != qlora::data::kIgnoreIndex) ++b.num_loss_tokens;
    }
  return b;
}

int run_train_steps(const Flags& flags) {
  auto model = load_with_adapter(flags, need(flags, "adapter"));
  model->train();
  const int64_t steps = std::stoll(need(flags, "steps")), ga = std::stoll(need(flags, "ga"));
  const double max_norm = std::stod(need(flags, "max-grad-norm"));
  const auto norm = get(flags, "normalization", "microbatch_mean") == "token_mean"
                        ? qlora::LossNormalization::TokenMean
                        : qlora::LossNormalization::MicrobatchMean;
  const auto named = qlora::train::named_lora_parameters(*model);
  std::vector<at::Tensor> params;
  for (const auto& [n, p] : named) params.push_back(p);
  qlora::optim::AdamWOptions o;
  o.lr = std::stod(need(flags, "lr"));
  qlora::optim::PagedAdamW optimizer(named, o);
  const auto in = qlora::safetensors::File::open(need(flags, "batches"));
  auto tensor = [&](const std::string& name) { return qlora::tensor_view(in, name).clone(); };

  qlora::NamedTensors out;
  at::Tensor losses = at::zeros({steps}, at::kDouble);
  for (int64_t s = 0; s < steps; ++s) {
    std::vector<qlora::data::Batch> micro;
    for (int64_t k = 0; k < ga; ++k) {
      const std::string sfx = "_" + std::to_string(s) + "_" + std::to_string(k);
      micro.push_back(batch_from(tensor("input_ids" + sfx), tensor("labels" + sfx), tensor("attention_mask" + sfx)));
    }
    const auto loss = qlora::train::accumulate_gradients(*model, micro, norm, at::kCPU);
    losses[s] = loss.loss;
    if (s == 0)
      for (const auto& [n, p] : named) out.emplace_back("grad." + n, p.grad().clone());
    qlora::optim::clip_grad_norm(params, max_norm);
    optimizer.step();
    optimizer.zero_grad();
  }
  out.emplace_back("loss", losses);
  for (const auto& [n, p] : named) out.emplace_back("final." + n, p.detach());
  qlora::save_tensors(need(flags, "out"), out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qlora::run_cli("train_tool", [&]() -> int {
    QLORA_INPUT_CHECK(argc >= 2, "usage: train_tool adamw|schedule|adapter-logits|make-adapter|train-steps --flags");
    const std::string cmd = argv[1];
    const Flags flags = parse_flags(argc, argv, 2);
    if (cmd == "adamw") return run_adamw(flags);
    if (cmd == "schedule") return run_schedule(flags);
    if (cmd == "adapter-logits") return run_adapter_logits(flags);
    if (cmd == "make-adapter") return run_make_adapter(flags);
    if (cmd == "train-steps") return run_train_steps(flags);
    QLORA_INPUT_ERROR("train_tool: unknown subcommand ", cmd);
  });
}
