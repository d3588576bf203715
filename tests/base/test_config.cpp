// TrainConfig: reference defaults, strict JSON/YAML/--set parsing, messages naming file:line and key,
// validate(), base chains, to_json round trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "input_error_capture.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/config/train_config.h"
#include "qlora/data/dataset.h"

namespace {

using qlora::TrainConfig;

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/qlora_config_XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { qlora::fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = qlora::fs::join(dir_, name);
    qlora::fs::make_dirs(qlora::fs::dirname(path));
    qlora::fs::write_text_atomic(path, text);
    return path;
  }
  std::string dir_;
};

TrainConfig minimal() {
  TrainConfig c;
  c.model_name_or_path = "models/x";
  c.dataset = "data/x.jsonl";
  return c;
}

// docs/qlora-reference.md section 2.1: the TrainingArguments/DataArguments defaults of qlora.py (7f4e95a).
TEST(TrainConfig, DefaultsAreTheReferenceCodeDefaults) {
  TrainConfig c;
  EXPECT_EQ(c.optim, qlora::Optim::PagedAdamW32bit);
  EXPECT_DOUBLE_EQ(c.learning_rate, 2e-4);
  EXPECT_EQ(c.lr_scheduler_type, qlora::LrScheduler::Constant);
  EXPECT_DOUBLE_EQ(c.warmup_ratio, 0.03);
  EXPECT_EQ(c.per_device_train_batch_size, 1);
  EXPECT_EQ(c.gradient_accumulation_steps, 16);
  EXPECT_EQ(c.max_steps, 10000);
  EXPECT_DOUBLE_EQ(c.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.3);
  EXPECT_DOUBLE_EQ(c.adam_beta1, 0.9);
  EXPECT_DOUBLE_EQ(c.adam_beta2, 0.999);
  EXPECT_DOUBLE_EQ(c.adam_epsilon, 1e-8);
  EXPECT_TRUE(c.gradient_checkpointing);
  EXPECT_TRUE(c.group_by_length);
  EXPECT_EQ(c.logging_steps, 10);
  EXPECT_EQ(c.save_strategy, qlora::IntervalStrategy::Steps);
  EXPECT_EQ(c.save_steps, 250);
  EXPECT_EQ(c.save_total_limit, 40);
  EXPECT_EQ(c.lora_r, 64);
  EXPECT_DOUBLE_EQ(c.lora_alpha, 16);
  EXPECT_DOUBLE_EQ(c.lora_dropout, 0.0);
  EXPECT_EQ(c.bits, 4);
  EXPECT_EQ(c.quant_type, qlora::QuantType::NF4);
  EXPECT_TRUE(c.double_quant);
  EXPECT_EQ(c.source_max_len, 1024);
  EXPECT_EQ(c.target_max_len, 256);
  EXPECT_EQ(c.eval_dataset_size, 1024);
  EXPECT_EQ(c.mmlu_split, qlora::MmluSplit::Eval);
  EXPECT_EQ(c.mmlu_shots, 5);  // mmlu-fs
  EXPECT_EQ(c.mmlu_source_max_len, 2048);
  EXPECT_FALSE(c.train_on_source);
  EXPECT_EQ(c.seed, 42);
  EXPECT_EQ(c.output_dir, "./output");
  // GenerationArguments (section 7).
  EXPECT_EQ(c.max_new_tokens, 256);
  EXPECT_FALSE(c.do_sample);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_DOUBLE_EQ(c.top_p, 1.0);
  EXPECT_DOUBLE_EQ(c.temperature, 1.0);
  // find_all_linear_names for LLaMA (section 1).
  EXPECT_EQ(c.lora_modules, (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"}));
  EXPECT_EQ(c.loss_normalization, qlora::LossNormalization::MicrobatchMean);
}

TEST(TrainConfig, DerivedValues) {
  TrainConfig c;
  // The LoRA scale and the sampler seed are the components' rules (tests/core/test_builders.cpp).
  EXPECT_EQ(c.effective_batch_size(), 16);
  EXPECT_EQ(c.effective_eval_steps(), 10);  // eval_steps 0 -> logging_steps (HF)
  EXPECT_EQ(c.effective_warmup_steps(1875), 0);  // constant: warmup_ratio is inert (section 2.1)
  c.lr_scheduler_type = qlora::LrScheduler::Linear;
  EXPECT_EQ(c.effective_warmup_steps(1875), 57);  // ceil(0.03 * 1875) = ceil(56.25)
  c.warmup_steps = 5;
  EXPECT_EQ(c.effective_warmup_steps(1875), 5);
}

TEST(TrainConfig, SchemaCoversEveryKeyWithItsDefault) {
  const auto& schema = qlora::config_schema();
  const auto j = qlora::to_json(TrainConfig{});
  ASSERT_EQ(schema.size(), j.size());
  size_t i = 0;
  for (auto it = j.begin(); it != j.end(); ++it, ++i) {
    EXPECT_EQ(schema[i].name, it.key());
    EXPECT_EQ(schema[i].default_value, it.value().dump());
    EXPECT_FALSE(schema[i].doc.empty()) << it.key();
  }
  const std::string help = qlora::format_schema();
  for (const auto& s : schema) EXPECT_NE(help.find(s.name), std::string::npos) << s.name;
  EXPECT_NE(help.find("\"paged_adamw_32bit\""), std::string::npos);
}

TEST(TrainConfig, EditDistance) {
  EXPECT_EQ(qlora::edit_distance("", ""), 0u);
  EXPECT_EQ(qlora::edit_distance("lora_r", "lora_rank"), 3u);
  EXPECT_EQ(qlora::edit_distance("learnig_rate", "learning_rate"), 1u);
  EXPECT_EQ(qlora::edit_distance("kitten", "sitting"), 3u);
}

TEST_F(ConfigFiles, JsonFileSetsKeysAndRecordsOrigin) {
  auto path = write("a.json", R"({
  "model_name_or_path": "models/llama-7b-hf",
  "learning_rate": 1e-4,
  "max_steps": 1875,
  "lora_modules": ["q_proj", "v_proj"],
  "quant_type": "fp4",
  "group_by_length": false
})");
  TrainConfig c = qlora::load_config(path);
  EXPECT_EQ(c.model_name_or_path, "models/llama-7b-hf");
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-4);
  EXPECT_EQ(c.max_steps, 1875);
  EXPECT_EQ(c.lora_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c.quant_type, qlora::QuantType::FP4);
  EXPECT_FALSE(c.group_by_length);
  EXPECT_EQ(c.origin.at("learning_rate"), path + ":3");
  EXPECT_EQ(c.origin.at("group_by_length"), path + ":7");
  EXPECT_EQ(c.origin.count("lora_r"), 0u);
  EXPECT_EQ(c.config_files, std::vector<std::string>{path});
}

TEST_F(ConfigFiles, YamlFileMatchesJson) {
  auto json = write("a.json", R"({"model_name_or_path": "m", "dataset": "d.jsonl", "learning_rate": 0.0001,
    "lora_modules": ["q_proj", "v_proj"], "bf16": true, "lr_scheduler_type": "cosine", "max_steps": 100})");
  auto yaml = write("a.yaml",
                    "# a comment\n"
                    "model_name_or_path: m\n"
                    "dataset: d.jsonl\n"
                    "learning_rate: 1e-4\n"
                    "lora_modules: [q_proj, v_proj]\n"
                    "bf16: True\n"
                    "lr_scheduler_type: cosine\n"
                    "max_steps: 100\n");
  TrainConfig a = qlora::load_config(json), b = qlora::load_config(yaml);
  EXPECT_EQ(qlora::to_json(a), qlora::to_json(b));
  EXPECT_EQ(b.origin.at("learning_rate"), yaml + ":4");
  auto block_list = write("b.yml", "lora_modules:\n  - k_proj\n  - o_proj\n");
  EXPECT_EQ(qlora::load_config(block_list).lora_modules, (std::vector<std::string>{"k_proj", "o_proj"}));
}

TEST_F(ConfigFiles, UnknownKeySuggestsNearestAndNamesLine) {
  auto path = write("typo.json", "{\n  \"model_name_or_path\": \"m\",\n  \"lora_rank\": 8\n}\n");
  std::string msg = input_error([&] { qlora::load_config(path); });
  EXPECT_NE(msg.find(path + ":3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key \"lora_rank\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean \"lora_r\"?"), std::string::npos) << msg;

  auto yaml = write("typo.yaml", "model_name_or_path: m\nlearnig_rate: 1e-4\n");
  msg = input_error([&] { qlora::load_config(yaml); });
  EXPECT_NE(msg.find(yaml + ":2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean \"learning_rate\"?"), std::string::npos) << msg;

  // Nothing plausible: no suggestion.
  auto far = write("far.json", R"({"zzzzzzzzzzzz": 1})");
  msg = input_error([&] { qlora::load_config(far); });
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, WrongTypesNameFileLineAndKey) {
  auto path = write("t.json", "{\"model_name_or_path\": \"m\",\n\"lora_r\": \"sixty-four\"}");
  std::string msg = input_error([&] { qlora::load_config(path); });
  EXPECT_NE(msg.find(path + ":2: key \"lora_r\": expected an integer, got string \"sixty-four\""), std::string::npos)
      << msg;
  msg = input_error([&] { qlora::load_config(write("b.json", R"({"bf16": "yes"})")); });
  EXPECT_NE(msg.find("key \"bf16\": expected true or false"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("l.json", R"({"lora_modules": "q_proj"})")); });
  EXPECT_NE(msg.find("expected a list of strings"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("n.json", R"({"learning_rate": null})")); });
  EXPECT_NE(msg.find("expected a number, got null"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("i.json", R"({"max_steps": 10.5})")); });
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  // A whole number written as a float is an integer.
  EXPECT_EQ(qlora::load_config(write("w.json", R"({"max_steps": 1e4})")).max_steps, 10000);
}

TEST_F(ConfigFiles, BadEnumListsValidValues) {
  auto path = write("e.json", R"({"quant_type": "nf5"})");
  std::string msg = input_error([&] { qlora::load_config(path); });
  EXPECT_NE(msg.find("key \"quant_type\": \"nf5\" is not valid (did you mean \"nf4\"?); valid values: \"nf4\", \"fp4\", "
                     "\"none\""),
            std::string::npos)
      << msg;
}

TEST_F(ConfigFiles, SyntaxErrorsAndDuplicates) {
  auto bad = write("bad.json", "{\n  \"lora_r\": 8,\n  \"bits\": 4,,\n}\n");
  std::string msg = input_error([&] { qlora::load_config(bad); });
  EXPECT_NE(msg.find(bad + ":3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON"), std::string::npos) << msg;

  auto dup = write("dup.json", "{\n  \"lora_r\": 8,\n  \"bits\": 4,\n  \"lora_r\": 16\n}\n");
  msg = input_error([&] { qlora::load_config(dup); });
  EXPECT_NE(msg.find(dup + ":4: key \"lora_r\" is given twice (first at line 2)"), std::string::npos) << msg;

  auto ybad = write("bad.yaml", "lora_r: 8\nbits: [4\n");
  msg = input_error([&] { qlora::load_config(ybad); });
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;

  // Found by the fuzz target: 1e999 overflows a double (nlohmann out_of_range, which was not caught).
  msg = input_error([&] { qlora::load_config(write("big.json", "{\"learning_rate\": 1e999}")); });
  EXPECT_NE(msg.find("big.json: invalid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow"), std::string::npos) << msg;

  msg = input_error([&] { qlora::load_config(write("arr.json", "[1, 2]")); });
  EXPECT_NE(msg.find("a config must be a JSON object"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("x.toml", "a = 1")); });
  EXPECT_NE(msg.find("unknown config format"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(dir_ + "/missing.json"); });
  EXPECT_NE(msg.find("missing.json: config file not found"), std::string::npos) << msg;
}

// A value nested a million deep used to overflow the stack when the reader copied it (nlohmann copies
// recurse per level). JSON is refused by our depth check, YAML by yaml-cpp's own depth guard.
TEST_F(ConfigFiles, DeeplyNestedValueIsInputError) {
  const size_t depth = 1000000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  auto path = write("deep.json", "{\n  \"lora_r\": 8,\n  \"lora_modules\": " + deep + "\n}\n");
  std::string msg = input_error([&] { qlora::load_config(path); });
  EXPECT_NE(msg.find(path + ": JSON nested deeper than 64 levels (line 3)"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("deep.yaml", "lora_r: 8\nlora_modules: " + deep + "\n")); });
  EXPECT_NE(msg.find("deep.yaml:"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, NestedObjectsDoNotConfuseLineScan) {
  // A key nested in a value must not be taken for a top-level key, and strings with braces and escaped
  // quotes must not change the nesting depth.
  auto path = write("n.json", "{\"description\": \"a {\\\"b\\\": [\",\n \"lora_modules\": [\"q_proj\"],\n \"bits\": 4}");
  TrainConfig c = qlora::load_config(path);
  EXPECT_EQ(c.description, "a {\"b\": [");
  EXPECT_EQ(c.origin.at("bits"), path + ":3");
  std::string msg = input_error([&] { qlora::load_config(write("o.json", R"({"lora_r": {"lora_r": 1}})")); });
  EXPECT_NE(msg.find("expected an integer, got object"), std::string::npos) << msg;
}

TEST(TrainConfig, SetOverridesParseByType) {
  TrainConfig c;
  qlora::apply_overrides(c, {"learning_rate=3e-5", "lora_r=16", "bf16=true", "lora_modules=q_proj, v_proj",
                             "optim=adamw_torch", "dataset=a=b.jsonl", "description="});
  EXPECT_DOUBLE_EQ(c.learning_rate, 3e-5);
  EXPECT_EQ(c.lora_r, 16);
  EXPECT_TRUE(c.bf16);
  EXPECT_EQ(c.lora_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c.optim, qlora::Optim::AdamWTorch);
  EXPECT_EQ(c.dataset, "a=b.jsonl");  // only the first '=' splits
  EXPECT_EQ(c.description, "");
  EXPECT_EQ(c.origin.at("lora_r"), "--set lora_r=16");
  qlora::apply_override(c, R"(lora_modules=["gate_proj","up_proj"])");
  EXPECT_EQ(c.lora_modules, (std::vector<std::string>{"gate_proj", "up_proj"}));

  std::string msg = input_error([&] { qlora::apply_override(c, "lora_r=abc"); });
  EXPECT_NE(msg.find("--set lora_r=abc: key \"lora_r\": expected an integer, got \"abc\""), std::string::npos) << msg;
  msg = input_error([&] { qlora::apply_override(c, "lora_r"); });
  EXPECT_NE(msg.find("expected key=value"), std::string::npos) << msg;
  msg = input_error([&] { qlora::apply_override(c, "lr=1e-4"); });
  EXPECT_NE(msg.find("unknown key \"lr\""), std::string::npos) << msg;
  msg = input_error([&] { qlora::apply_override(c, "learning_rate=1e-4x"); });
  EXPECT_NE(msg.find("expected a number"), std::string::npos) << msg;
  msg = input_error([&] { qlora::apply_override(c, "lora_modules=[1,2]"); });
  EXPECT_NE(msg.find("expected a list of strings"), std::string::npos) << msg;
}

TEST(TrainConfig, ValidateAcceptsMinimalConfig) { EXPECT_NO_THROW(qlora::validate(minimal())); }

TEST(TrainConfig, ValidateRejectsBadValuesNamingKeyAndOrigin) {
  struct Case {
    std::string set;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"learning_rate=-1e-4", "learning_rate = -0.0001: must be > 0"},
      {"lora_r=0", "lora_r = 0: must be > 0"},
      {"lora_dropout=1", "lora_dropout = 1.0: must be in [0, 1)"},
      {"lora_dropout=-0.1", "lora_dropout = -0.1: must be in [0, 1)"},
      {"bits=8", "bits = 8: must be 4 (QLoRA) or 16"},
      {"blocksize=48", "blocksize = 48: must be a power of two from 32 to 4096"},
      {"quant_type=none", "quant_type = \"none\": \"none\" needs bits 16"},
      {"max_steps=0", "max_steps = 0: must be > 0, or -1"},
      {"gradient_accumulation_steps=0", "gradient_accumulation_steps = 0: must be > 0"},
      {"lora_modules=q_proj,lm_head", "\"lm_head\" is not a LLaMA linear layer; valid: q_proj, k_proj"},
      {"lora_modules=q_proj,q_proj", "\"q_proj\" is listed twice"},
      {"mmlu_shots=6", "mmlu_shots = 6: must be in 0..5"},
      {"top_p=0", "top_p = 0.0: must be in (0, 1]"},
      {"adam_beta2=1", "adam_beta2 = 1.0: must be in [0, 1)"},
      {"evaluation_strategy=steps", "evaluation_strategy = \"steps\": needs do_eval true"},
      {"do_mmlu_eval=true", "MMLU runs after each evaluation"},
  };
  for (const auto& tc : cases) {
    TrainConfig c = minimal();
    qlora::apply_override(c, tc.set);
    std::string msg = input_error([&] { qlora::validate(c); });
    EXPECT_NE(msg.find(tc.expect), std::string::npos) << tc.set << " -> " << msg;
    EXPECT_EQ(msg.find("--set " + tc.set), 0u) << "origin first: " << msg;
  }
}

// Integer keys cannot wrap (issue 10 item 3): an unsigned JSON number past int64 is an error naming file:line
// and key (it used to become -1: max_steps 18446744073709551615 ran with -1), and every integer key has an upper
// bound that validate() checks (batch x accumulation overflowed; huge accumulation hit vector::reserve).
TEST_F(ConfigFiles, IntegersThatDoNotFitInt64AreErrors) {
  const auto path = write("big.json", "{\"model_name_or_path\": \"m\", \"dataset\": \"d.jsonl\",\n"
                                      " \"max_steps\": 18446744073709551615}\n");
  std::string msg = input_error([&] { qlora::load_config(path); });
  EXPECT_NE(msg.find(path + ":2: key \"max_steps\": 18446744073709551615 does not fit a 64-bit signed integer"),
            std::string::npos) << msg;
  TrainConfig c = minimal();
  msg = input_error([&] { qlora::apply_override(c, "seed=99999999999999999999"); });
  EXPECT_NE(msg.find("--set seed=99999999999999999999: key \"seed\": 99999999999999999999 does not fit"),
            std::string::npos) << msg;
  const auto yaml = write("big.yaml", "max_steps: 18446744073709551615\n");
  msg = input_error([&] { qlora::load_config(yaml); });
  EXPECT_NE(msg.find(yaml + ":1: key \"max_steps\""), std::string::npos) << msg;
}

TEST(TrainConfig, EveryIntegerKeyHasAnUpperBound) {
  for (const auto& s : qlora::config_schema()) {
    if (s.type != qlora::KeyType::Int) continue;
    EXPECT_GT(s.max_value, 0) << s.name;
    // Far below int64 wrap, and batch x accumulation (both <= 2^16) below 2^32.
    EXPECT_LE(s.max_value, int64_t{1} << 40) << s.name;
    TrainConfig c = minimal();
    qlora::apply_override(c, s.name + "=" + std::to_string(s.max_value + 1));
    const std::string msg = input_error([&] { qlora::validate(c); });
    EXPECT_NE(msg.find(s.name + " = " + std::to_string(s.max_value + 1)), std::string::npos) << msg;
    EXPECT_NE(msg.find("must be"), std::string::npos) << msg;
  }
  TrainConfig c = minimal();
  qlora::apply_override(c, "gradient_accumulation_steps=10000000000000");
  qlora::apply_override(c, "per_device_train_batch_size=10000000000000");
  const std::string msg = input_error([&] { qlora::validate(c); });
  EXPECT_NE(msg.find("gradient_accumulation_steps = 10000000000000: must be <= 65536"), std::string::npos) << msg;
  EXPECT_NE(msg.find("per_device_train_batch_size = 10000000000000: must be <= 65536"), std::string::npos) << msg;
  EXPECT_NE(qlora::format_schema().find("(<= 65536)"), std::string::npos);
}

// --resume compares the config with the checkpoint's (issue 10 item 2).
TEST(TrainConfig, ResumeConfigChangesListTheKeysThatBreakExactness) {
  TrainConfig old_cfg = minimal();
  const nlohmann::json saved = qlora::to_json(old_cfg);
  TrainConfig now = old_cfg;
  EXPECT_TRUE(qlora::resume_config_changes(saved, now).empty());
  qlora::apply_override(now, "lora_alpha=32");
  qlora::apply_override(now, "dataset=other.jsonl");
  now.seed = 7;  // not from a file or --set: named as the default's origin
  // Allowed: the run length, intervals, output-only keys.
  qlora::apply_override(now, "max_steps=20000");
  qlora::apply_override(now, "save_steps=10");
  qlora::apply_override(now, "log_level=debug");
  qlora::apply_override(now, "nan_policy=skip_step");
  const auto changes = qlora::resume_config_changes(saved, now);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0], "dataset: \"data/x.jsonl\" -> \"other.jsonl\" (--set dataset=other.jsonl)");
  EXPECT_EQ(changes[1], "lora_alpha: 16.0 -> 32.0 (--set lora_alpha=32)");
  EXPECT_EQ(changes[2], "seed: 42 -> 7 (default)");
  // A key the checkpoint's config lacks (written before the key existed) is not compared.
  nlohmann::json older = saved;
  older.erase("lora_alpha");
  older.erase("dataset");
  EXPECT_EQ(qlora::resume_config_changes(older, now).size(), 1u);
  // Every allowed key is a real key, listed once, with its reason.
  std::set<std::string> seen;
  for (const auto& [key, why] : qlora::resume_mutable_keys()) {
    EXPECT_TRUE(seen.insert(key).second) << key;
    EXPECT_FALSE(why.empty()) << key;
    EXPECT_TRUE(qlora::to_json(TrainConfig{}).contains(key)) << key;
  }
  for (const char* k : {"dataset", "model_name_or_path", "lora_alpha", "lora_r", "seed", "data_seed",
                        "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate"})
    EXPECT_EQ(seen.count(k), 0u) << k << " breaks exactness";
}

TEST(TrainConfig, ValidateBits16NeedsNoQuantization) {
  TrainConfig c = minimal();
  c.bits = 16;
  std::string msg = input_error([&] { qlora::validate(c); });
  EXPECT_NE(msg.find("2 problems"), std::string::npos) << msg;
  EXPECT_NE(msg.find("set quant_type to \"none\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("double quantization applies to 4-bit weights only"), std::string::npos) << msg;
  c.quant_type = qlora::QuantType::None;
  c.double_quant = false;
  EXPECT_NO_THROW(qlora::validate(c));
}

TEST_F(ConfigFiles, ValidateNamesFileForMissingModelPathAndCollectsAll) {
  auto path = write("m.json", "{\n  \"dataset\": \"d.jsonl\",\n  \"learning_rate\": -1,\n  \"lora_r\": 0\n}\n");
  TrainConfig c = qlora::load_config(path);
  std::string msg = input_error([&] { qlora::validate(c); });
  EXPECT_NE(msg.find("3 problems in the configuration"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path + " (not set, default): model_name_or_path is not set"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path + ":3: learning_rate = -1.0: must be > 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path + ":4: lora_r = 0: must be > 0"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, CheckPathsNamesTheMissingPath) {
  TrainConfig c = minimal();
  c.model_name_or_path = dir_;
  c.dataset = write("d.jsonl", "{}\n");
  EXPECT_NO_THROW(qlora::check_paths(c));
  qlora::apply_override(c, "model_name_or_path=" + dir_ + "/nope");
  std::string msg = input_error([&] { qlora::check_paths(c); });
  EXPECT_NE(msg.find("model_name_or_path = \"" + dir_ + "/nope\": no such directory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("relative paths resolve against the current directory"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, BaseChainOverridesAndResolvesRelativeToFile) {
  write("presets/parent.json", R"({"model_name_or_path": "m", "dataset": "d.jsonl", "lora_r": 64, "bits": 4})");
  auto child = write("variants/child.json", R"({"base": "../presets/parent.json", "lora_r": 8})");
  TrainConfig c = qlora::load_config(child);
  EXPECT_EQ(c.lora_r, 8);
  EXPECT_EQ(c.model_name_or_path, "m");
  EXPECT_EQ(c.config_files.size(), 2u);
  EXPECT_EQ(c.config_files.back(), child);
  EXPECT_NE(c.origin.at("model_name_or_path").find("parent.json:1"), std::string::npos);

  write("loop_a.json", R"({"base": "loop_b.json"})");
  auto b = write("loop_b.json", R"({"base": "loop_a.json"})");
  std::string msg = input_error([&] { qlora::load_config(b); });
  EXPECT_NE(msg.find("loops back"), std::string::npos) << msg;
  msg = input_error([&] { qlora::load_config(write("nobase.json", R"({"base": "absent.json"})")); });
  EXPECT_NE(msg.find("absent.json: config file not found"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, ToJsonRoundTripsThroughApplyJson) {
  TrainConfig a = minimal();
  qlora::apply_overrides(a, {"lora_modules=k_proj", "learning_rate=1.5e-4", "quant_type=fp4", "device=cpu",
                             "dataset_format=hh-rlhf", "loss_normalization=token_mean", "log_level=debug"});
  auto j = qlora::to_json(a);
  EXPECT_EQ(j["dataset_format"], "hh-rlhf");
  TrainConfig b;
  qlora::apply_json(b, j, "saved.json");
  EXPECT_EQ(qlora::to_json(b), j);
  // And through a file, as --dry-run output fed back as --config.
  TrainConfig c = qlora::load_config(write("effective.json", j.dump(2)));
  EXPECT_EQ(qlora::to_json(c), j);
}

TEST(TrainConfig, FormatTableHasOneRowPerKey) {
  TrainConfig c = minimal();
  std::string t = qlora::format_table(c);
  EXPECT_NE(t.find("| learning_rate "), std::string::npos);
  EXPECT_NE(t.find("| q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"), std::string::npos) << t;
  EXPECT_NE(t.find("| model_name_or_path"), std::string::npos);
  size_t rows = 0;
  for (size_t p = t.find("\n| "); p != std::string::npos; p = t.find("\n| ", p + 1)) ++rows;
  EXPECT_EQ(rows, qlora::config_schema().size() + 1);  // + header row (the first line is a rule)
}

}  // namespace

// The config's dataset_format values are exactly the data module's formats plus "auto" (the config names the
// data module's own table, data::kDatasetFormatNames): a format the data module reads can always be named.
TEST(ConfigSchema, DatasetFormatsMatchTheDataModule) {
  std::vector<std::string> config_names;
  for (const auto& k : qlora::config_schema())
    if (k.name == "dataset_format") config_names = k.choices;
  ASSERT_FALSE(config_names.empty());
  std::vector<std::string> want = qlora::data::dataset_format_names();
  want.push_back("auto");
  std::sort(want.begin(), want.end());
  std::sort(config_names.begin(), config_names.end());
  EXPECT_EQ(config_names, want);
}
