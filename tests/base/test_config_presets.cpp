// Shipped configs: every file under configs/ loads and validates, and the paper presets carry the values
// of Table 9 (Dettmers et al. 2023, App. B.2), transcribed here from docs/qlora-reference.md section 2.3.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "qlora/config/train_config.h"

namespace {

using qlora::TrainConfig;

const std::string kConfigs = std::string(QLORA_SOURCE_DIR) + "/configs";

std::vector<std::string> shipped_configs() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(kConfigs)) {
    const auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".json" || ext == ".yaml" || ext == ".yml")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ShippedConfigs, EveryFileLoadsAndValidates) {
  auto files = shipped_configs();
  // 4 sizes x 8 datasets, 4 sizes x 2 datasets x 3 Table 4 variants, the demo.
  EXPECT_EQ(files.size(), 32u + 24u + 1u);
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    TrainConfig c;
    ASSERT_NO_THROW(c = qlora::load_config(f));
    EXPECT_NO_THROW(qlora::validate(c));
    EXPECT_FALSE(c.description.empty());
  }
}

// Table 9. "All" = every dataset but OASST1, HH-RLHF and Longform. Source "-" (whole conversation is the
// target) is 0 here and maps to the scripts' --source_max_len 16.
struct Row {
  int64_t batch;
  double lr;
  int64_t steps;
  int64_t source;
  int64_t target;
};
const std::map<std::string, std::map<std::string, Row>> kTable9 = {
    {"All", {{"7b", {16, 2e-4, 10000, 384, 128}}, {"13b", {16, 2e-4, 10000, 384, 128}},
             {"33b", {32, 1e-4, 5000, 384, 128}}, {"65b", {64, 1e-4, 2500, 384, 128}}}},
    {"OASST1", {{"7b", {16, 2e-4, 1875, 0, 512}}, {"13b", {16, 2e-4, 1875, 0, 512}},
                {"33b", {16, 1e-4, 1875, 0, 512}}, {"65b", {16, 1e-4, 1875, 0, 512}}}},
    {"HH-RLHF", {{"7b", {16, 2e-4, 10000, 0, 768}}, {"13b", {16, 2e-4, 10000, 0, 768}},
                 {"33b", {32, 1e-4, 5000, 0, 768}}, {"65b", {64, 1e-4, 2500, 0, 768}}}},
    {"Longform", {{"7b", {16, 2e-4, 4000, 512, 1024}}, {"13b", {16, 2e-4, 4000, 512, 1024}},
                  {"33b", {32, 1e-4, 2343, 512, 1024}}, {"65b", {32, 1e-4, 2343, 512, 1024}}}},
};
const std::map<std::string, std::string> kDatasetRow = {
    {"alpaca", "All"},   {"chip2", "All"},     {"flan_v2", "All"},          {"self_instruct", "All"},
    {"unnatural_instructions", "All"},         {"oasst1", "OASST1"},        {"hh_rlhf", "HH-RLHF"},
    {"longform", "Longform"}};

TEST(ShippedConfigs, PresetsMatchPaperTable9) {
  for (const std::string size : {"7b", "13b", "33b", "65b"}) {
    for (const auto& [dataset, row_name] : kDatasetRow) {
      const std::string path = kConfigs + "/" + size + "_" + dataset + ".json";
      SCOPED_TRACE(path);
      TrainConfig c = qlora::load_config(path);
      const Row& row = kTable9.at(row_name).at(size);
      EXPECT_EQ(c.effective_batch_size(), row.batch);
      EXPECT_EQ(c.per_device_train_batch_size, 1);  // micro-batch 1 as the Guanaco scripts (every sequence weighs 1)
      EXPECT_DOUBLE_EQ(c.learning_rate, row.lr);
      EXPECT_EQ(c.max_steps, row.steps);
      EXPECT_EQ(c.source_max_len, row.source == 0 ? 16 : row.source);
      EXPECT_EQ(c.target_max_len, row.target);
      // Common to all runs (App. B.2, model card; spec section 2.3 notes).
      EXPECT_EQ(c.bits, 4);
      EXPECT_EQ(c.quant_type, qlora::QuantType::NF4);
      EXPECT_TRUE(c.double_quant);
      EXPECT_EQ(c.blocksize, 64);  // paper Sec. 3: NF4 block size 64
      EXPECT_TRUE(c.bf16);
      EXPECT_EQ(c.lora_r, 64);
      EXPECT_DOUBLE_EQ(c.lora_alpha, 16);
      EXPECT_EQ(c.lora_modules, qlora::llama_projection_names());
      // Dropout: 0.1 up to 13B, 0.05 for 33B/65B (paper App. B.2 and model card, spec section 2.2).
      EXPECT_DOUBLE_EQ(c.lora_dropout, (size == "7b" || size == "13b") ? 0.1 : 0.05);
      EXPECT_EQ(c.optim, qlora::Optim::PagedAdamW32bit);
      EXPECT_DOUBLE_EQ(c.adam_beta2, 0.999);
      EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.3);
      EXPECT_DOUBLE_EQ(c.weight_decay, 0.0);
      EXPECT_EQ(c.lr_scheduler_type, qlora::LrScheduler::Constant);
      EXPECT_TRUE(c.group_by_length);
      EXPECT_TRUE(c.gradient_checkpointing);
      EXPECT_FALSE(c.train_on_source);
      EXPECT_EQ(c.loss_normalization, qlora::LossNormalization::MicrobatchMean);
      EXPECT_TRUE(c.do_mmlu_eval);
      EXPECT_EQ(c.mmlu_shots, 5);
      EXPECT_EQ(c.output_dir, "output/" + size + "_" + dataset);
      if (dataset == "oasst1") {
        // scripts/finetune_guanaco_*.sh (spec section 2.2).
        EXPECT_EQ(c.eval_steps, 187);
        EXPECT_EQ(c.save_steps, (size == "7b" || size == "13b") ? 500 : 200);
        EXPECT_EQ(c.max_eval_samples, 1000);
        EXPECT_EQ(c.eval_dataset_size, 1024);
        EXPECT_EQ(c.seed, 0);
        EXPECT_EQ(c.data_seed, 42);
        EXPECT_EQ(c.dataset_format, qlora::data::DatasetFormat::Oasst1);
      }
    }
  }
}

TEST(ShippedConfigs, Table4VariantsChangeOnlyTheWeightFormat) {
  struct Variant {
    int64_t bits;
    qlora::QuantType quant;
    bool dq;
  };
  const std::map<std::string, Variant> variants = {{"bf16", {16, qlora::QuantType::None, false}},
                                                   {"fp4", {4, qlora::QuantType::FP4, false}},
                                                   {"nf4_dq", {4, qlora::QuantType::NF4, true}}};
  for (const std::string size : {"7b", "13b", "33b", "65b"}) {
    for (const std::string dataset : {"alpaca", "flan_v2"}) {
      auto base = qlora::to_json(qlora::load_config(kConfigs + "/" + size + "_" + dataset + ".json"));
      for (const auto& [name, v] : variants) {
        const std::string path = kConfigs + "/table4/" + size + "_" + dataset + "_" + name + ".json";
        SCOPED_TRACE(path);
        TrainConfig c = qlora::load_config(path);
        EXPECT_EQ(c.bits, v.bits);
        EXPECT_EQ(c.quant_type, v.quant);
        EXPECT_EQ(c.double_quant, v.dq);
        auto j = qlora::to_json(c);
        for (const char* k : {"bits", "quant_type", "double_quant", "output_dir", "description"}) {
          j.erase(k);
          base.erase(k);
        }
        EXPECT_EQ(j, base);
      }
    }
  }
}

TEST(ShippedConfigs, DemoIsSmall) {
  TrainConfig c = qlora::load_config(kConfigs + "/demo.json");
  EXPECT_EQ(c.model_name_or_path, "models/stories260k");
  EXPECT_EQ(c.dataset, "data/demo/alpaca_demo.jsonl");
  EXPECT_LE(c.max_steps, 100);
  EXPECT_LE(c.effective_batch_size(), 8);
  // stories260K: dim 64, seq_len 512 (tests/data/stories260K/SOURCE.md): blocksize must divide 64 and a
  // whole sequence must fit the context.
  EXPECT_EQ(64 % c.blocksize, 0);
  EXPECT_LE(c.source_max_len + c.target_max_len, 512);
}

}  // namespace
