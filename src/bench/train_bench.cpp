#include "qlora/common/util.h"
#include "qlora/bench/train_bench.h"

#include <chrono>

#include "qlora/common/error.h"
#include "qlora/tensor/device.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/threads.h"
#include "qlora/optim/grad_clip.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/train/metrics.h"
#include "qlora/train/train_step.h"

namespace qlora::train {

nlohmann::json run_train_bench(const TrainBenchOptions& o, const std::function<void(const std::string&)>& print) {
  QLORA_INPUT_CHECK(o.seq_len >= 2 && o.batch >= 1, "--seq-len must be >= 2 and --batch >= 1");
  QLORA_INPUT_CHECK(o.steps > o.warmup && o.warmup >= 0, "--steps must exceed --warmup");
  const at::Device device = resolve_device(o.device, "--device");
  const std::string shape = o.shape == "auto" ? (device.is_cuda() ? "7b" : "small") : o.shape;
  const LlamaConfig config = llama_shape(shape, "--shape");
  // The programs' thread rule, applied here because the shape ("auto") is only known here.
  const ThreadChoice threads = apply_intra_op_threads(config);

  ModelOptions mo;
  mo.quantize = o.quantize;
  mo.quant.type = QuantType::NF4;
  mo.quant.blocksize = 64;
  mo.quant.double_quant = true;
  mo.compute_dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  mo.device = device;
  mo.lora.r = o.lora_r;
  mo.lora.alpha = o.lora_alpha;
  mo.lora.dropout = o.lora_dropout;
  mo.lora.seed = o.seed;
  mo.gradient_checkpointing = o.gradient_checkpointing;

  print(str("train bench: ", shape, " (hidden ", config.hidden_size, ", ", config.num_hidden_layers, " layers, vocab ",
            config.vocab_size, ") on ", device.str(), ", ", o.quantize ? "NF4+DQ" : "16-bit", " base, LoRA r ",
            o.lora_r, ", seq ", o.seq_len, " x batch ", o.batch, ", checkpointing ",
            o.gradient_checkpointing ? "on" : "off", ", ", threads.threads, " intra-op thread",
            threads.threads == 1 ? "" : "s"));
  const auto t_load = std::chrono::steady_clock::now();
  LlamaForCausalLM model = init_random_llama(config, mo, o.seed);
  model->train();
  const double load_seconds = seconds_since(t_load);
  const MemoryStats after_load = memory_stats(device);

  optim::AdamWOptions ao;
  ao.lr = 2e-4;
  ao.weight_decay = 0;
  optim::PagedAdamW optimizer(named_lora_parameters(*model), ao);
  const std::vector<at::Tensor> params = model->trainable_parameters();
  int64_t trainable = 0;
  for (const auto& p : params) trainable += p.numel();

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  const at::Tensor ids = at::randint(config.vocab_size, {o.batch, o.seq_len}, gen, at::kLong).to(device);  // (B, T)

  double timed_seconds = 0;
  double last_loss = 0;
  nlohmann::json losses = nlohmann::json::array();
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor logits = model->forward(ids);                 // (B, T, V) fp32
    const CausalLmLoss l = causal_lm_loss(logits, ids);
    const at::Tensor loss = l.nll_sum / l.token_count.to(at::kFloat);
    loss.backward();
    optim::clip_grad_norm(params, 0.3);
    optimizer.step();
    optimizer.zero_grad();
    last_loss = loss.item<double>();  // synchronizes the device
    const double dt = seconds_since(t0);
    if (step >= o.warmup) timed_seconds += dt;
    losses.push_back(last_loss);
    print(str("step ", step + 1, "/", o.steps, ": loss ", last_loss, ", ", dt, " s"));
  }
  const MemoryStats mem = memory_stats(device);
  const double tokens = static_cast<double>((o.steps - o.warmup) * o.batch * o.seq_len);
  const double tps = tokens / timed_seconds;
  print(str("tokens/s ", tps, " over steps ", o.warmup + 1, "..", o.steps, "; peak device memory ",
            mem.device_peak_bytes / (1 << 20), " MiB (after load ", after_load.device_allocated_bytes / (1 << 20),
            " MiB), optimizer state ", optimizer.state_bytes() / (1 << 20), " MiB (", optimizer.paged_state_bytes() / (1 << 20),
            " MiB paged), host RSS ", mem.host_rss_bytes / (1 << 20), " MiB"));
  return {{"shape", shape},
          {"device", device.str()},
          {"intra_op_threads", threads.threads},
          {"hidden_size", config.hidden_size},
          {"num_hidden_layers", config.num_hidden_layers},
          {"quantized", o.quantize},
          {"lora_r", o.lora_r},
          {"trainable_parameters", trainable},
          {"seq_len", o.seq_len},
          {"batch", o.batch},
          {"steps", o.steps},
          {"warmup_steps", o.warmup},
          {"gradient_checkpointing", o.gradient_checkpointing},
          {"load_seconds", load_seconds},
          {"tokens_per_second", tps},
          {"losses", losses},
          {"device_peak_bytes", mem.device_peak_bytes},
          {"device_allocated_after_load_bytes", after_load.device_allocated_bytes},
          {"optimizer_state_bytes", optimizer.state_bytes()},
          {"optimizer_paged_bytes", optimizer.paged_state_bytes()},
          {"host_rss_bytes", mem.host_rss_bytes}};
}

}  // namespace qlora::train
