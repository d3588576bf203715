// The LLaMA model: config.json parsing and its errors, packing and padding against one-by-one runs, the loss
// helper, strict loading (each corrupt input an Input error naming the file and tensor), sharded checkpoints,
// layer-by-layer load memory, and the save/load round trip.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/llama_save.h"
#include "qlora/quant/quantized_weight.h"
#include "qlora/tensor/safetensors_torch.h"
#include "test_model_helpers.h"

namespace {

const std::string kStories = std::string(QLORA_SOURCE_DIR) + "/models/stories260k";

// Runs fn, expects a qlora Input error whose message contains every string of `needles`.
void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input) << e.what();
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

std::string temp_dir(const std::string& name) {
  std::string dir = std::string(QLORA_BINARY_DIR) + "/test_model_tmp/" + name;
  qlora::fs::remove_all(dir);
  qlora::fs::make_dirs(dir);
  return dir;
}

void copy_file(const std::string& from, const std::string& to) {
  const auto bytes = qlora::fs::read_bytes(from);
  qlora::fs::write_atomic(to, [&](int fd) { qlora::fs::write_all(fd, bytes.data(), bytes.size(), to); });
}

// Odd sizes: head_dim 12, GQA 3:1, intermediate not a multiple of 64, vocab prime.
qlora::LlamaConfig odd_config() { return qlora::testing::tiny_config(131, 72, 200, 2, 6, 2, 12); }

// ---- config ----------------------------------------------------------------------------------------------

TEST(ModelConfig, ParsesTheBundledModel) {
  auto c = qlora::LlamaConfig::load(kStories);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.kv_groups(), 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c.quantization.present);
  // to_json_text reads back to the same config
  auto again = qlora::LlamaConfig::from_json_text(c.to_json_text(), "roundtrip");
  EXPECT_EQ(again.to_json_text(), c.to_json_text());
}

TEST(ModelConfig, Llama3FieldsAndDefaults) {
  auto c = qlora::LlamaConfig::from_json_text(R"({
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "rope_theta": 500000.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": false})", "llama3.json");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.kv_groups(), 4);
  EXPECT_EQ(c.rope_scaling.type, qlora::RopeScaling::Type::Llama3);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);  // transformers' default
}

TEST(ModelConfig, PrequantizedConfig) {
  auto c = qlora::LlamaConfig::from_json_text(R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
    "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false,
      "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": "bfloat16",
      "llm_int8_skip_modules": ["lm_head"]}})", "q.json");
  EXPECT_TRUE(c.quantization.present);
  EXPECT_EQ(c.quantization.quant_type, "nf4");
  EXPECT_TRUE(c.quantization.double_quant);
  EXPECT_EQ(c.quantization.compute_dtype, "bfloat16");
  EXPECT_EQ(c.quantization.skip_modules, std::vector<std::string>{"lm_head"});
}

TEST(ModelConfig, ClearErrorsNamingFileAndKey) {
  const std::string base = R"("vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                             "num_attention_heads": 2)";
  auto parse = [](const std::string& body) { return [body] { qlora::LlamaConfig::from_json_text(body, "dir/config.json"); }; };
  expect_input_error(parse(R"({"model_type": "mistral", )" + base + "}"), {"dir/config.json", "model_type", "mistral"});
  expect_input_error(parse(R"({)" + base + "}"), {"dir/config.json", "model_type"});
  expect_input_error(parse(R"({"model_type": "llama", "architectures": ["GPT2LMHeadModel"], )" + base + "}"),
                     {"dir/config.json", "architectures"});
  expect_input_error(parse(R"({"model_type": "llama", "attention_bias": true, )" + base + "}"), {"attention_bias"});
  expect_input_error(parse(R"({"model_type": "llama", "mlp_bias": true, )" + base + "}"), {"mlp_bias"});
  expect_input_error(parse(R"({"model_type": "llama", "hidden_act": "gelu", )" + base + "}"), {"hidden_act"});
  expect_input_error(parse(R"({"model_type": "llama", "num_key_value_heads": 3, )" + base + "}"),
                     {"num_key_value_heads"});
  expect_input_error(parse(R"({"model_type": "llama", "rope_scaling": {"rope_type": "yarn", "factor": 4}, )" + base + "}"),
                     {"rope_scaling", "yarn"});
  expect_input_error(parse(R"({"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8}, )" + base + "}"),
                     {"low_freq_factor"});
  expect_input_error(parse(R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 8, "num_hidden_layers": 1,
                              "num_attention_heads": 2})"),
                     {"dir/config.json", "intermediate_size"});
  expect_input_error(parse(R"({"model_type": "llama", "hidden_size": "64", "vocab_size": 32, )" +
                           base.substr(base.find("\"intermediate")) + "}"),
                     {"hidden_size", "integer"});
  expect_input_error(parse(R"({"model_type": "llama", "quantization_config": {"quant_method": "gptq"}, )" + base + "}"),
                     {"quant_method", "gptq"});
  expect_input_error(parse(R"({"model_type": "llama", "quantization_config": {"load_in_8bit": true}, )" + base + "}"),
                     {"load_in_8bit"});
  expect_input_error(parse("{not json"), {"dir/config.json", "JSON"});
  expect_input_error([] { qlora::LlamaConfig::load("/nonexistent/model"); }, {"/nonexistent/model/config.json"});
}

// ---- forward: packing, padding, loss ---------------------------------------------------------------------

// Logits of a packed row equal those of its sequences run alone; a right-padded batch equals one-by-one runs.
void check_packing_and_padding(qlora::LlamaForCausalLM& model, int64_t vocab, double tol) {
  model->eval();
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(42);
  const std::vector<int64_t> lengths = {9, 1, 14, 5};
  const int64_t T = 29;
  at::Tensor ids = at::randint(0, vocab, {1, T}, gen, at::kLong);
  at::Tensor seg = at::empty({1, T}, at::kLong);
  int64_t start = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    seg[0].narrow(0, start, lengths[i]).fill_(static_cast<int64_t>(i));
    start += lengths[i];
  }
  qlora::ForwardOptions packed_options;
  packed_options.segment_ids = seg;
  at::Tensor packed = model->forward(ids, packed_options);  // (1, T, V)
  start = 0;
  double worst = 0;
  for (int64_t n : lengths) {
    at::Tensor alone = model->forward(ids.narrow(1, start, n));
    worst = std::max(worst, (packed.narrow(1, start, n) - alone).abs().max().item<double>());
    start += n;
  }
  std::printf("packed vs one by one: max |diff| %.3g\n", worst);
  // fp32; the same math through different SDPA kernels (masked vs causal) and row counts. 1e-5 on logits of
  // order 1 (the random model: measured 2e-7); stories260K's logits reach 20, so its bound scales with them.
  EXPECT_LE(worst, tol);

  // Right padding: rows of lengths 17, 6, 11 padded to 17 with garbage ids.
  const std::vector<int64_t> rows = {17, 6, 11};
  at::Tensor batch = at::randint(0, vocab, {3, 17}, gen, at::kLong);
  at::Tensor mask = at::zeros({3, 17}, at::kLong);
  for (int64_t b = 0; b < 3; ++b) mask[b].narrow(0, 0, rows[b]).fill_(1);
  qlora::ForwardOptions padded;
  padded.attention_mask = mask;
  at::Tensor out = model->forward(batch, padded);
  worst = 0;
  for (int64_t b = 0; b < 3; ++b) {
    at::Tensor alone = model->forward(batch[b].narrow(0, 0, rows[b]).unsqueeze(0));
    worst = std::max(worst, (out[b].narrow(0, 0, rows[b]) - alone[0]).abs().max().item<double>());
  }
  std::printf("right-padded vs one by one: max |diff| %.3g\n", worst);
  EXPECT_LE(worst, tol);
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());  // padded rows are never fully masked
}

TEST(ModelForward, PackingEqualsOneByOneOnOddRandomModel) {
  auto model = qlora::init_random_llama(odd_config(), {}, 3);
  check_packing_and_padding(model, 131, 1e-5);
}

TEST(ModelForward, PackingEqualsOneByOneOnStories) {
  auto model = qlora::load_llama(kStories, {});
  check_packing_and_padding(model, 512, 5e-5);  // 1e-5 relative to |logit| <= 20, rounded up
}

TEST(ModelForward, SegmentPositionsRestartAtZero) {
  auto model = qlora::init_random_llama(odd_config(), {}, 3);
  model->eval();
  at::NoGradGuard no_grad;
  at::Tensor ids = at::randint(0, 131, {1, 10}, at::kLong);
  at::Tensor seg = at::tensor({0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, at::kLong).view({1, 10});
  qlora::ForwardOptions implicit, explicit_positions;
  implicit.segment_ids = seg;
  explicit_positions.segment_ids = seg;
  explicit_positions.position_ids = at::tensor({0, 1, 2, 3, 0, 1, 2, 3, 4, 5}, at::kLong).view({1, 10});
  EXPECT_TRUE(at::equal(model->forward(ids, implicit), model->forward(ids, explicit_positions)));
}

// Batched generation: left-padded prompts prefilled together, then decoded one token at a time through the
// KV cache with a growing attention_mask and per-row positions, equal to each prompt run alone.
TEST(ModelForward, LeftPaddedKvCacheDecodeEqualsPromptsAlone) {
  auto model = qlora::load_llama(kStories, {});
  model->eval();
  at::NoGradGuard no_grad;
  const std::vector<std::vector<int64_t>> prompts = {{1, 403, 407, 261, 378}, {1, 346}, {1, 403, 407}};
  const int64_t B = 3, P = 5, steps = 4;
  at::Tensor ids = at::zeros({B, P}, at::kLong), mask = at::zeros({B, P}, at::kLong), pos = at::zeros({B, P}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(prompts[b].size()), pad = P - n;
    ids[b].narrow(0, pad, n).copy_(at::tensor(prompts[b], at::kLong));
    mask[b].narrow(0, pad, n).fill_(1);
    pos[b].narrow(0, pad, n).copy_(at::arange(n, at::kLong));
  }
  // A fixed continuation, the same for every row, fed one token at a time.
  const std::vector<int64_t> next = {432, 383, 286, 261};
  qlora::KVCache cache = model->make_kv_cache(B, P + steps);
  qlora::ForwardOptions fo;
  fo.attention_mask = mask;
  fo.position_ids = pos;
  std::vector<at::Tensor> batched = {model->forward(ids, fo, &cache).select(1, P - 1)};  // (B, V) per step
  for (int64_t s = 0; s + 1 < steps; ++s) {
    mask = at::cat({mask, at::ones({B, 1}, at::kLong)}, 1);
    qlora::ForwardOptions step;
    step.attention_mask = mask;
    step.position_ids = at::empty({B, 1}, at::kLong);
    for (int64_t b = 0; b < B; ++b) step.position_ids[b][0] = static_cast<int64_t>(prompts[b].size()) + s;
    batched.push_back(model->forward(at::full({B, 1}, next[s], at::kLong), step, &cache).select(1, 0));
  }
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> seq = prompts[b];
    seq.insert(seq.end(), next.begin(), next.begin() + steps - 1);
    at::Tensor alone = model->forward(at::tensor(seq, at::kLong).view({1, -1}))[0];  // (n + steps - 1, V)
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t t = static_cast<int64_t>(prompts[b].size()) - 1 + s;
      worst = std::max(worst, (batched[s][b] - alone[t]).abs().max().item<double>());
    }
  }
  std::printf("left-padded cached decode vs alone: max |diff| %.3g\n", worst);
  EXPECT_LE(worst, 5e-5);  // as the packing bound on stories260K
}

TEST(ModelForward, CausalLmLossShiftsAndIgnoresMinus100) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  at::Tensor logits = at::empty({2, 6, 11}).normal_(0, 2, gen);
  at::Tensor labels = at::randint(0, 11, {2, 6}, gen, at::kLong);
  labels[0][3] = -100;
  labels[1][0] = -100;  // position 0 is never a target anyway
  labels[1][5] = -100;
  auto loss = qlora::causal_lm_loss(logits, labels);
  double sum = 0;
  int64_t count = 0;
  at::Tensor logp = at::log_softmax(logits, -1);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t + 1 < 6; ++t) {
      const int64_t y = labels[b][t + 1].item<int64_t>();
      if (y == -100) continue;
      sum -= logp[b][t][y].item<double>();
      ++count;
    }
  EXPECT_EQ(loss.token_count.item<int64_t>(), count);
  EXPECT_EQ(count, 8);
  EXPECT_NEAR(loss.nll_sum.item<double>(), sum, 1e-4);
}

// ---- loading -----------------------------------------------------------------------------------------------

// A copy of the bundled model whose model.safetensors is rewritten by `edit` (name -> tensor list).
std::string stories_variant(const std::string& name, const std::function<void(qlora::NamedTensors&)>& edit) {
  const std::string dir = temp_dir(name);
  for (const char* f : {"config.json", "tokenizer.model", "tokenizer_config.json"})
    copy_file(kStories + "/" + f, dir + "/" + f);
  qlora::NamedTensors tensors = qlora::load_tensors(kStories + "/model.safetensors");
  edit(tensors);
  qlora::save_tensors(dir + "/model.safetensors", tensors);
  return dir;
}

TEST(ModelLoad, CorruptCheckpointsAreInputErrors) {
  auto load = [](const std::string& dir) { return [dir] { qlora::load_llama(dir, {}); }; };
  const std::string q = "model.layers.1.self_attn.q_proj.weight";
  std::string dir = stories_variant("wrong_shape", [&](qlora::NamedTensors& t) {
    for (auto& [n, x] : t)
      if (n == q) x = x.narrow(0, 0, 63).contiguous();
  });
  expect_input_error(load(dir), {dir + "/model.safetensors", q, "[63, 64]", "[64, 64]"});

  dir = stories_variant("missing", [&](qlora::NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& p) { return p.first == q; }), t.end());
  });
  expect_input_error(load(dir), {q, "missing"});

  dir = stories_variant("unexpected", [&](qlora::NamedTensors& t) { t.emplace_back("model.layers.9.extra", at::zeros({2})); });
  expect_input_error(load(dir), {dir + "/model.safetensors", "model.layers.9.extra", "unexpected"});

  dir = stories_variant("wrong_dtype", [&](qlora::NamedTensors& t) {
    for (auto& [n, x] : t)
      if (n == q) x = x.to(at::kInt);
  });
  expect_input_error(load(dir), {q, "I32"});

  // Truncated file: the safetensors reader names it.
  dir = stories_variant("truncated", [](qlora::NamedTensors&) {});
  {
    auto bytes = qlora::fs::read_bytes(dir + "/model.safetensors");
    bytes.resize(bytes.size() - 1000);
    std::ofstream(dir + "/model.safetensors", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  expect_input_error(load(dir), {dir + "/model.safetensors"});

  // Config and weights that disagree: more layers than stored.
  dir = stories_variant("more_layers", [](qlora::NamedTensors&) {});
  {
    auto c = qlora::LlamaConfig::load(dir);
    c.num_hidden_layers = 6;
    qlora::fs::write_text_atomic(dir + "/config.json", c.to_json_text());
  }
  expect_input_error(load(dir), {"model.layers.5.", "missing"});

  const std::string empty = temp_dir("no_weights");
  copy_file(kStories + "/config.json", empty + "/config.json");
  expect_input_error(load(empty), {empty, "model.safetensors"});
}

TEST(ModelLoad, ShardedCheckpointAndIndexErrors) {
  // Split the bundled model into two shards with an index, as save_pretrained(max_shard_size=...) does.
  const std::string dir = temp_dir("sharded");
  copy_file(kStories + "/config.json", dir + "/config.json");
  qlora::NamedTensors all = qlora::load_tensors(kStories + "/model.safetensors");
  qlora::NamedTensors first(all.begin(), all.begin() + all.size() / 2), second(all.begin() + all.size() / 2, all.end());
  qlora::save_tensors(dir + "/model-00001-of-00002.safetensors", first);
  qlora::save_tensors(dir + "/model-00002-of-00002.safetensors", second);
  std::string index = R"({"metadata": {}, "weight_map": {)";
  for (size_t i = 0; i < all.size(); ++i) {
    index += (i ? ", \"" : "\"") + all[i].first + "\": \"model-0000" + (i < first.size() ? "1" : "2") + "-of-00002.safetensors\"";
  }
  index += "}}";
  qlora::fs::write_text_atomic(dir + "/model.safetensors.index.json", index);
  auto sharded = qlora::load_llama(dir, {});
  auto single = qlora::load_llama(kStories, {});
  at::Tensor ids = at::tensor({1, 403, 407, 261}, at::kLong).view({1, 4});
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(sharded->forward(ids), single->forward(ids)));

  // The index places a tensor in the wrong shard.
  std::string bad = index;
  const std::string key = "\"" + all[0].first + "\": \"model-00001-of-00002.safetensors\"";
  bad.replace(bad.find(key), key.size(), "\"" + all[0].first + "\": \"model-00002-of-00002.safetensors\"");
  qlora::fs::write_text_atomic(dir + "/model.safetensors.index.json", bad);
  expect_input_error([&] { qlora::load_llama(dir, {}); }, {"model-00002-of-00002.safetensors", all[0].first});
  qlora::fs::write_text_atomic(dir + "/model.safetensors.index.json", "{\"weight_map\": ");
  expect_input_error([&] { qlora::load_llama(dir, {}); }, {"model.safetensors.index.json", "JSON"});
}

TEST(ModelLoad, QuantizedLoadPeakStaysNearTheFinalModel) {
  // Loading converts one tensor at a time from the mapping, quantizes it and drops the dense copy, so the
  // peak of CPU tensor memory exceeds the final model by about one dense weight plus quantization scratch,
  // never by the dense model (4x the 4-bit projections).
  qlora::ModelOptions o;
  o.quantize = true;
  int64_t final_bytes = 0, peak = 0;
  {
    qlora::testing::CpuMemoryTracker tracker;
    auto model = qlora::load_llama(kStories, o);
    final_bytes = tracker.live();
    peak = tracker.peak();
  }
  const auto c = qlora::LlamaConfig::load(kStories);
  const int64_t largest_projection = c.intermediate_size * c.hidden_size * 4;  // fp32 (F, C)
  int64_t dense_projections = 0;
  for (const auto& [name, shape] : qlora::llama_tensor_shapes(c))
    if (name.find("_proj") != std::string::npos) dense_projections += shape[0] * shape[1] * 4;
  std::printf("quantized load: final %lld bytes, peak %lld, largest dense projection %lld, all dense projections %lld\n",
              static_cast<long long>(final_bytes), static_cast<long long>(peak),
              static_cast<long long>(largest_projection), static_cast<long long>(dense_projections));
  EXPECT_LE(peak, final_bytes + 3 * largest_projection);
  EXPECT_LT(peak, final_bytes + dense_projections / 2);
}

TEST(ModelSave, DenseAndFourBitRoundTrips) {
  auto model = qlora::load_llama(kStories, {});
  const std::string dense_dir = temp_dir("saved_dense");
  qlora::SaveOptions so;
  so.copy_files_from = kStories;
  qlora::save_llama(*model, dense_dir, so);
  auto reloaded = qlora::load_llama(dense_dir, {});
  at::Tensor ids = at::tensor({1, 403, 407, 261, 378}, at::kLong).view({1, 5});
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(reloaded->forward(ids), model->forward(ids)));
  EXPECT_TRUE(qlora::fs::exists(dense_dir + "/tokenizer.model"));

  qlora::ModelOptions o;
  o.quantize = true;
  auto q = qlora::load_llama(kStories, o);
  const std::string q_dir = temp_dir("saved_4bit");
  qlora::save_llama(*q, q_dir, {});
  auto c = qlora::LlamaConfig::load(q_dir);
  EXPECT_TRUE(c.quantization.present);
  EXPECT_EQ(c.quantization.quant_type, "nf4");
  EXPECT_TRUE(c.quantization.double_quant);
  auto q_again = qlora::load_llama(q_dir, {});  // stored 4-bit weights load as they are
  EXPECT_TRUE(q_again->named_lora_layers()[0].second->quantized());
  EXPECT_TRUE(at::equal(q_again->forward(ids), q->forward(ids)));

  // Merged export: dequantize + merge -> dense, equal to the adapted model's output.
  qlora::ModelOptions lo = o;
  lo.lora.r = 4;
  lo.lora.alpha = 8;
  auto adapted = qlora::load_llama(kStories, lo);
  for (auto& [name, layer] : adapted->named_lora_layers()) layer->lora_B().normal_(0, 0.05);
  adapted->eval();
  const std::string m_dir = temp_dir("saved_merged");
  qlora::SaveOptions mo;
  mo.merge_lora = true;
  qlora::save_llama(*adapted, m_dir, mo);
  auto merged = qlora::load_llama(m_dir, {});
  EXPECT_FALSE(qlora::LlamaConfig::load(m_dir).quantization.present);
  const double diff = (merged->forward(ids) - adapted->forward(ids)).abs().max().item<double>();
  std::printf("merged export vs adapted 4-bit model: max |diff| %.3g\n", diff);
  EXPECT_LT(diff, 1e-4);  // fp32: x(W + sBA)^T vs xW^T + s(xA^T)B^T, reassociated sums
}

TEST(ModelInit, RandomModelIsDeterministicPerSeed) {
  auto a = qlora::init_random_llama(odd_config(), {}, 9), b = qlora::init_random_llama(odd_config(), {}, 9);
  auto c = qlora::init_random_llama(odd_config(), {}, 10);
  at::Tensor ids = at::tensor({1, 2, 3}, at::kLong).view({1, 3});
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(a->forward(ids), b->forward(ids)));
  EXPECT_FALSE(at::equal(a->forward(ids), c->forward(ids)));
  expect_input_error([&] { a->forward(at::tensor({1, 131}, at::kLong).view({1, 2})); }, {"131", "vocabulary"});
}

}  // namespace
