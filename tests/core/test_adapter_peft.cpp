// PEFT adapter files: round trip, the exact key names and config text, and the errors that name the key.
// The live interop with peft itself (PeftModel.from_pretrained on our files, ours on peft's) is
// tests/python/test_peft_adapter_interop.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/io/safetensors.h"
#include "qlora/tensor/safetensors_torch.h"
#include "qlora/model/adapter.h"

namespace {

using qlora::AdapterConfig;
using qlora::LoraLayerWeights;

std::string temp_dir(const std::string& tag) {
  auto dir = qlora::fs::join(::testing::TempDir(), "qlora_adapter_" + tag + "_" + std::to_string(::getpid()));
  qlora::fs::remove_all(dir);
  qlora::fs::make_dirs(dir);
  return dir;
}

// Two layers with odd shapes: q_proj (in 13, out 13) and down_proj (in 29, out 13), rank 3.
std::vector<LoraLayerWeights> make_layers() {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  return {{"model.layers.0.self_attn.q_proj", at::randn({3, 13}, gen), at::randn({13, 3}, gen)},
          {"model.layers.1.mlp.down_proj", at::randn({3, 29}, gen), at::randn({13, 3}, gen)}};
}

AdapterConfig make_config() {
  AdapterConfig c;
  c.r = 3;
  c.lora_alpha = 16;
  c.lora_dropout = 0.05;
  c.target_modules = {"q_proj", "down_proj"};
  c.base_model_name_or_path = "models/tiny";
  return c;
}

std::string expect_input_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an Input error";
  return "";
}

TEST(PeftAdapter, RoundTripKeepsNamesShapesAndValues) {
  const auto dir = temp_dir("roundtrip");
  const auto layers = make_layers();
  qlora::save_adapter(dir, make_config(), layers);

  const auto file = qlora::safetensors::File::open(qlora::fs::join(dir, "adapter_model.safetensors"));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  std::vector<std::string> names;
  for (const auto& t : file->tensors()) {
    names.push_back(t.name);
    EXPECT_EQ(t.dtype, qlora::safetensors::Dtype::F32);
  }
  std::sort(names.begin(), names.end());
  const std::vector<std::string> expected = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                             "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                                             "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight",
                                             "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"};
  EXPECT_EQ(names, expected);

  const auto loaded = qlora::load_adapter(dir);
  EXPECT_EQ(loaded.config.r, 3);
  EXPECT_EQ(loaded.config.lora_alpha, 16);
  EXPECT_DOUBLE_EQ(loaded.config.lora_dropout, 0.05);
  EXPECT_EQ(loaded.config.target_modules, make_config().target_modules);
  ASSERT_EQ(loaded.layers.size(), 2u);
  for (const auto& l : loaded.layers) {
    const auto& orig = l.module_path == layers[0].module_path ? layers[0] : layers[1];
    EXPECT_TRUE(at::equal(l.lora_A, orig.lora_A));
    EXPECT_TRUE(at::equal(l.lora_B, orig.lora_B));
  }

  // copy_adapter_into writes into the model's tensors.
  std::vector<LoraLayerWeights> model = {{layers[0].module_path, at::zeros({3, 13}), at::zeros({13, 3})},
                                         {layers[1].module_path, at::zeros({3, 29}), at::zeros({13, 3})}};
  qlora::copy_adapter_into(loaded, model, dir);
  EXPECT_TRUE(at::equal(model[1].lora_A, layers[1].lora_A));
  qlora::fs::remove_all(dir);
}

TEST(PeftAdapter, ConfigIsPythonJsonDumpsSortedIndent2) {
  const std::string text = make_config().to_peft_json();
  // Keys sorted, two-space indent, ", " / ": " separators, no trailing newline, ints without ".0".
  EXPECT_EQ(text.substr(0, 26), "{\n  \"alpha_pattern\": {},\n ");
  EXPECT_NE(text.find("\n  \"lora_alpha\": 16,\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  \"lora_dropout\": 0.05,\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\n  \"target_modules\": [\n    \"q_proj\",\n    \"down_proj\"\n  ],\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.back(), '}');
  const auto j = nlohmann::json::parse(text);
  std::string previous;
  for (const auto& [key, value] : j.items()) {
    EXPECT_LT(previous, key);
    previous = key;
  }
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["inference_mode"], true);
}

TEST(PeftAdapter, ScalingAndTargetsFollowPeft) {
  AdapterConfig c = make_config();
  EXPECT_DOUBLE_EQ(c.lora_options().scaling(), 16.0 / 3.0);
  c.use_rslora = true;
  EXPECT_DOUBLE_EQ(c.lora_options().scaling(), 16.0 / std::sqrt(3.0));
  EXPECT_TRUE(c.targets("model.layers.7.self_attn.q_proj"));
  EXPECT_FALSE(c.targets("model.layers.7.self_attn.k_proj"));
  EXPECT_FALSE(c.targets("model.layers.7.self_attn.xq_proj"));  // suffix match only at a dot
  c.target_modules_regex = R"(.*\.(q|v)_proj)";
  EXPECT_TRUE(c.targets("model.layers.0.self_attn.v_proj"));
  EXPECT_FALSE(c.targets("model.layers.0.mlp.up_proj"));
}

TEST(PeftAdapter, MismatchesAreInputErrorsNamingTheKey) {
  const auto dir = temp_dir("errors");
  const auto layers = make_layers();
  qlora::save_adapter(dir, make_config(), layers);
  const auto adapter = qlora::load_adapter(dir);

  // The model has a layer the adapter lacks.
  std::vector<LoraLayerWeights> more = {
      {layers[0].module_path, at::zeros({3, 13}), at::zeros({13, 3})},
      {layers[1].module_path, at::zeros({3, 29}), at::zeros({13, 3})},
      {"model.layers.1.self_attn.v_proj", at::zeros({3, 13}), at::zeros({5, 3})}};
  auto msg = expect_input_error([&] { qlora::copy_adapter_into(adapter, more, dir); });
  EXPECT_NE(msg.find("missing key 'base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight'"),
            std::string::npos) << msg;

  // The adapter has a layer the model lacks.
  std::vector<LoraLayerWeights> fewer = {{layers[0].module_path, at::zeros({3, 13}), at::zeros({13, 3})}};
  msg = expect_input_error([&] { qlora::copy_adapter_into(adapter, fewer, dir); });
  EXPECT_NE(msg.find("unexpected key 'base_model.model.model.layers.1.mlp.down_proj.lora_A.weight'"),
            std::string::npos) << msg;

  // Shape mismatch (a model of another rank).
  std::vector<LoraLayerWeights> rank4 = {{layers[0].module_path, at::zeros({4, 13}), at::zeros({13, 4})},
                                         {layers[1].module_path, at::zeros({4, 29}), at::zeros({13, 4})}};
  msg = expect_input_error([&] { qlora::copy_adapter_into(adapter, rank4, dir); });
  EXPECT_NE(msg.find("q_proj.lora_A.weight' has shape"), std::string::npos) << msg;

  // A file with a stray key, and one with a lora_A but no lora_B.
  const auto weights = qlora::fs::join(dir, "adapter_model.safetensors");
  qlora::save_tensors(weights, {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", layers[0].lora_A},
                                {"base_model.model.model.embed_tokens.weight", at::zeros({4, 4})}});
  msg = expect_input_error([&] { qlora::load_adapter(dir); });
  EXPECT_NE(msg.find("unexpected key 'base_model.model.model.embed_tokens.weight'"), std::string::npos) << msg;
  qlora::save_tensors(weights, {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", layers[0].lora_A}});
  msg = expect_input_error([&] { qlora::load_adapter(dir); });
  EXPECT_NE(msg.find("missing key 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight'"),
            std::string::npos) << msg;

  // r in the config disagrees with the tensors.
  qlora::save_adapter(dir, make_config(), layers);
  auto cfg = nlohmann::json::parse(qlora::fs::read_text(qlora::fs::join(dir, "adapter_config.json")));
  cfg["r"] = 8;
  qlora::fs::write_text_atomic(qlora::fs::join(dir, "adapter_config.json"), cfg.dump());
  msg = expect_input_error([&] { qlora::load_adapter(dir); });
  EXPECT_NE(msg.find("expected (r=8"), std::string::npos) << msg;

  // Unsupported peft features are refused by name.
  cfg["r"] = 3;
  cfg["use_dora"] = true;
  qlora::fs::write_text_atomic(qlora::fs::join(dir, "adapter_config.json"), cfg.dump());
  msg = expect_input_error([&] { qlora::load_adapter(dir); });
  EXPECT_NE(msg.find("'use_dora'"), std::string::npos) << msg;

  // The legacy pickle format.
  qlora::fs::remove_all(weights);
  qlora::fs::write_text_atomic(qlora::fs::join(dir, "adapter_model.bin"), "pickle");
  msg = expect_input_error([&] { qlora::load_adapter(dir); });
  EXPECT_NE(msg.find("adapter_model.bin"), std::string::npos) << msg;
  qlora::fs::remove_all(dir);
}

}  // namespace
