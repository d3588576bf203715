// Dataset formats: the (source, target) strings of each format. Expected strings are written out by hand from
// qlora.py (templates, chip2 split, hh-rlhf / oasst1 mapping) and from the fixtures' trees; token-level
// parity with the reference collator is tests/python/test_data_parity.py.
#include "qlora/data/dataset.h"
#include "qlora/data/json_records.h"
#include "test_data_common.h"

namespace qlora::data {
namespace {

using testing::expect_input_error;
using testing::fixture;
using testing::TempDir;

TEST(DatasetFormats, AlpacaTemplatesByteForByte) {
  EXPECT_EQ(alpaca_prompt("Name a colour.", ""),
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nName a colour.\n\n### Response: ");
  EXPECT_EQ(alpaca_prompt("Add.", "2 and {x}"),
            "Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n"
            "2 and {x}\n\n### Response: ");
  const auto ds = load_dataset(fixture("datasets/written/alpaca_missing_input.json"));
  ASSERT_EQ(ds.samples.size(), 3u);
  EXPECT_EQ(ds.samples[0].source, alpaca_prompt("Name a primary colour.", ""));  // input missing
  EXPECT_EQ(ds.samples[1].source, alpaca_prompt("Add the numbers.", ""));        // input null
  EXPECT_EQ(ds.samples[2].source, alpaca_prompt("Add the numbers.", "2 and 40"));
  EXPECT_EQ(ds.samples[2].target, "42");
  EXPECT_EQ(ds.samples[2].line, 11);  // the pretty-printed array's third record opens ("{") on line 11
}

TEST(DatasetFormats, InferredFromWellKnownLayouts) {
  const std::vector<std::pair<std::string, DatasetFormat>> cases = {
      {"alpaca/alpaca_data_1k.json", DatasetFormat::Alpaca},
      {"self-instruct/p3-t0_train_50k-ag_news_classify.head100.jsonl", DatasetFormat::SelfInstruct},
      {"hh-rlhf/harmless-base-test.head200.jsonl", DatasetFormat::HhRlhf},
      {"oasst/oa_questions_first400.jsonl", DatasetFormat::InputOutput},
      {"oasst1/oasst1-validation-en.head83.messages.jsonl", DatasetFormat::Oasst1},
      {"oasst1/oasst-export-en_100_tree.head16.trees.jsonl", DatasetFormat::Oasst1},
      {"written/guanaco_rows.jsonl", DatasetFormat::Oasst1},
      {"sharegpt-vicuna/fastchat-dummy_conversation.json", DatasetFormat::Vicuna},
      {"written/unnatural_instructions.jsonl", DatasetFormat::UnnaturalInstructions},
      {"written/longform.jsonl", DatasetFormat::InputOutput},
      {"written/chip2.jsonl", DatasetFormat::Chip2},
      {"written/flan_v2.jsonl", DatasetFormat::FlanV2},
  };
  for (const auto& [rel, format] : cases) {
    const auto ds = load_dataset(fixture("datasets/" + rel));
    EXPECT_EQ(dataset_format_name(ds.format), dataset_format_name(format)) << rel;
    EXPECT_TRUE(ds.format_inferred) << rel;
    EXPECT_FALSE(ds.samples.empty()) << rel;
  }
}

TEST(DatasetFormats, FormatNames) {
  for (const auto& name : dataset_format_names()) EXPECT_EQ(dataset_format_name(parse_dataset_format(name)), name);
  EXPECT_EQ(parse_dataset_format("sharegpt"), DatasetFormat::Vicuna);
  expect_input_error([] { parse_dataset_format("alpacca"); }, {"\"alpacca\"", "alpaca, alpaca-clean"});
}

TEST(DatasetFormats, Chip2KeepsFirstBotTurnAndStripsHumanMarkers) {
  const auto ds = load_dataset(fixture("datasets/written/chip2.jsonl"));
  ASSERT_EQ(ds.samples.size(), 4u);
  EXPECT_EQ(ds.samples[0].source, "What is the boiling point of water at sea level?");
  EXPECT_EQ(ds.samples[0].target, "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.");
  // split("\n<bot>: ")[1]: the text between the first and the second bot marker, human turn included.
  EXPECT_EQ(ds.samples[2].source, "Can you recommend a book?");
  EXPECT_EQ(ds.samples[2].target, "Try \"The Hobbit\" by J. R. R. Tolkien.\n<human>: Why that one?");
  EXPECT_EQ(ds.samples[3].source, "Quote this for me: \"hello\"");  // every "<human>: " removed
  EXPECT_EQ(ds.samples[3].target, "Sure: \"hello\"");
  TempDir dir;
  const auto bad = dir.file("c.jsonl", "{\"text\": \"<human>: hi\\n<bot>: yo\"}\n{\"text\": \"<human>: no bot\"}\n");
  expect_input_error([&] { load_dataset(bad, {DatasetFormat::Chip2}); }, {bad + ":2: field \"text\": no \"\\n<bot>: \" turn"});
}

TEST(DatasetFormats, ChosenAndGuanacoRowsAreTargetsWithEmptySource) {
  const auto hh = load_dataset(fixture("datasets/hh-rlhf/harmless-base-test.head200.jsonl"));
  EXPECT_EQ(hh.samples[9].source, "");
  EXPECT_EQ(hh.samples[9].target,
            "\n\nHuman: Is it possible to download a car?\n\nAssistant: I\xE2\x80\x99m not sure what you mean. Can you "
            "clarify?");
  const auto rows = load_dataset(fixture("datasets/written/guanaco_rows.jsonl"));
  EXPECT_EQ(rows.layout, "guanaco text rows");
  EXPECT_EQ(rows.samples[0].source, "");
  EXPECT_EQ(rows.samples[0].target.rfind("### Human: What is a prime number?### Assistant: A prime", 0), 0u);
}

TEST(DatasetFormats, UnnaturalInstructionsOnePairPerInstance) {
  const auto ds = load_dataset(fixture("datasets/written/unnatural_instructions.jsonl"));
  ASSERT_EQ(ds.samples.size(), 3u);
  EXPECT_EQ(ds.samples[1].source, "You are given a list of numbers. Output the largest one.\nList: -4, -9, -1");
  EXPECT_EQ(ds.samples[1].target, "-1");
  DatasetLoadOptions with_reformulations;
  with_reformulations.unnatural_reformulations = true;
  const auto all = load_dataset(fixture("datasets/written/unnatural_instructions.jsonl"), with_reformulations);
  ASSERT_EQ(all.samples.size(), 4u);  // one reformulation in record 1; record 2 has reformulations: null
  EXPECT_EQ(all.samples[2].source, "Find the maximum of the numbers in List: 5, 2.");
}

TEST(DatasetFormats, VicunaConversationsRenderAsGuanaco) {
  const auto ds = load_dataset(fixture("datasets/sharegpt-vicuna/fastchat-dummy_conversation.json"));
  ASSERT_EQ(ds.samples.size(), 500u);
  EXPECT_EQ(ds.samples[1].target, "### Human: Who are you?### Assistant: My name is Vicuna, and I'm a language model "
                                  "developed by Large Model Systems Organization (LMSYS).");
  TempDir dir;
  const auto p = dir.file("v.jsonl",
                          "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"Hi!\"}, {\"from\": \"human\", \"value\": "
                          "\"Hello\"}, {\"from\": \"gpt\", \"value\": \"How can I help?\"}]}\n"
                          "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"only the bot\"}]}\n"
                          "{\"conversations\": [{\"from\": \"user\", \"value\": \"u\"}, {\"from\": \"assistant\", "
                          "\"value\": \"a\"}]}\n");
  const auto v = load_dataset(p);
  ASSERT_EQ(v.samples.size(), 2u);  // FastChat skips a leading bot turn; a record with only that gives nothing
  EXPECT_EQ(v.samples[0].target, "### Human: Hello### Assistant: How can I help?");
  EXPECT_EQ(v.samples[1].target, "### Human: u### Assistant: a");
  EXPECT_EQ(v.num_skipped, 1);
  const auto bad = dir.file("b.jsonl", "{\"conversations\": [{\"from\": \"system\", \"value\": \"x\"}]}\n");
  expect_input_error([&] { load_dataset(bad); }, {bad + ":1: field \"conversations[0].from\": unknown role \"system\""});
}

// The written multi-language trees (tests/data/datasets/SOURCE.md), path by path.
const std::vector<std::string> kWrittenTreePaths = {
    // es: rank 0 deleted -> rank 1; the deleted follow-up is skipped; then rank 0.
    "### Human: \xC2\xBFQu\xC3\xA9 es la fotos\xC3\xADntesis?### Assistant: Es el proceso con el que las plantas "
    "convierten la luz en energ\xC3\xAD" "a qu\xC3\xADmica.### Human: \xC2\xBFY los animales la hacen?### Assistant: "
    "No, los animales obtienen la energ\xC3\xAD" "a de los alimentos.",
    // ru: rank 0 is the second reply in file order; the path ends on the unanswered follow-up.
    "### Human: \xD0\x9A\xD0\xB0\xD0\xBA \xD1\x81\xD0\xB2\xD0\xB0\xD1\x80\xD0\xB8\xD1\x82\xD1\x8C "
    "\xD0\xB3\xD1\x80\xD0\xB5\xD1\x87\xD0\xBA\xD1\x83?### Assistant: \xD0\x9F\xD1\x80\xD0\xBE\xD0\xBC\xD0\xBE\xD0\xB9"
    "\xD1\x82\xD0\xB5 \xD0\xBA\xD1\x80\xD1\x83\xD0\xBF\xD1\x83, \xD0\xB7\xD0\xB0\xD0\xBB\xD0\xB5\xD0\xB9\xD1\x82\xD0"
    "\xB5 \xD0\xB2\xD0\xBE\xD0\xB4\xD0\xBE\xD0\xB9 1:2, \xD0\xB2\xD0\xB0\xD1\x80\xD0\xB8\xD1\x82\xD0\xB5 15 \xD0\xBC"
    "\xD0\xB8\xD0\xBD\xD1\x83\xD1\x82 \xD0\xBF\xD0\xBE\xD0\xB4 \xD0\xBA\xD1\x80\xD1\x8B\xD1\x88\xD0\xBA\xD0\xBE\xD0"
    "\xB9.### Human: \xD0\x90 \xD1\x81\xD0\xBA\xD0\xBE\xD0\xBB\xD1\x8C\xD0\xBA\xD0\xBE \xD1\x81\xD0\xBE\xD0\xBB\xD0"
    "\xB8?",
    // de: a lone unranked reply is taken.
    "### Human: Wie sp\xC3\xA4t ist es in Tokio, wenn es in Berlin 12 Uhr ist?### Assistant: Dann ist es in Tokio 20 "
    "Uhr (im Winter).### Human: Und im Sommer?### Assistant: Im Sommer sind es nur 7 Stunden Unterschied, also 19 Uhr.",
    // fr: two replies share rank 0, the first in file order wins.
    "### Human: Traduis \xC2\xAB good night \xC2\xBB en fran\xC3\xA7" "ais.### Assistant: Bonne nuit.",
};

TEST(DatasetFormats, OasstNestedTreesTopRankedPath) {
  const auto ds = load_dataset(fixture("datasets/written/oasst_multilang.trees.jsonl"));
  EXPECT_EQ(ds.num_records, 6);
  EXPECT_EQ(ds.num_skipped, 2);  // zh: deleted root; th: every reply deleted
  ASSERT_EQ(ds.samples.size(), kWrittenTreePaths.size());
  for (size_t i = 0; i < kWrittenTreePaths.size(); ++i) {
    EXPECT_EQ(ds.samples[i].source, "");
    EXPECT_EQ(ds.samples[i].target, kWrittenTreePaths[i]) << "tree " << i;
  }
}

TEST(DatasetFormats, OasstFlatMessagesEqualNestedTrees) {
  const auto ds = load_dataset(fixture("datasets/written/oasst_multilang.messages.jsonl"));
  EXPECT_EQ(ds.num_orphans, 1);
  ASSERT_EQ(ds.samples.size(), kWrittenTreePaths.size());
  for (size_t i = 0; i < kWrittenTreePaths.size(); ++i) EXPECT_EQ(ds.samples[i].target, kWrittenTreePaths[i]);
}

TEST(DatasetFormats, OasstRealValidationTrees) {
  // oasst1 validation: tree e0cf4fa2: rank-0 reply 7d05acb7, its follow-up 384ad8e0, then rank-0 c8dc7c16.
  const auto ds = load_dataset(fixture("datasets/oasst1/oasst1-validation-en.head83.messages.jsonl"));
  ASSERT_EQ(ds.samples.size(), 8u);  // 8 whole trees
  const std::string& t = ds.samples[0].target;
  EXPECT_EQ(t.rfind("### Human: What do you think about ChatGPT?### Assistant: As an open source alternative to "
                    "ChatGPT", 0), 0u);
  EXPECT_NE(t.find("### Human: What are your thoughts on the censorship"), std::string::npos);
  EXPECT_NE(t.find("### Assistant: As a large language model trained on tex"), std::string::npos);
  EXPECT_EQ(t.find("I think that AI should be free"), std::string::npos);  // rank 1 sibling not taken
  EXPECT_EQ(t.find("ChatGPT is an artificial intelligence ch"), std::string::npos);
}

TEST(DatasetFormats, OasstBadMessagesNameTheField) {
  TempDir dir;
  const auto role = dir.file("r.jsonl", "{\"message_id\": \"a\", \"parent_id\": null, \"text\": \"q\", \"role\": \"user\"}\n");
  expect_input_error([&] { load_dataset(role, {DatasetFormat::Oasst1}); }, {role + ":1: field \"role\": expected \"prompter\" or "
                                                               "\"assistant\", got \"user\""});
  const auto rank = dir.file("k.jsonl",
                             "{\"message_tree_id\": \"a\", \"prompt\": {\"message_id\": \"a\", \"text\": \"q\", "
                             "\"role\": \"prompter\", \"replies\": [{\"message_id\": \"b\", \"text\": \"r\", \"role\": "
                             "\"assistant\", \"rank\": \"first\", \"replies\": []}]}}\n");
  expect_input_error([&] { load_dataset(rank); }, {rank + ":1: field \"prompt.replies[0].rank\": expected an integer"});
  const auto dup = dir.file("d.jsonl",
                            "{\"message_id\": \"a\", \"parent_id\": null, \"text\": \"q\", \"role\": \"prompter\"}\n"
                            "{\"message_id\": \"a\", \"parent_id\": null, \"text\": \"q\", \"role\": \"prompter\"}\n");
  expect_input_error([&] { load_dataset(dup); }, {dup + ":2: field \"message_id\": duplicate id a"});
}

// A reply chain as OASST1 flat messages (one per line) or as one nested tree; message k is "m<k>", turns
// alternate prompter / assistant.
std::string flat_chain(size_t n) {
  std::string out;
  for (size_t k = 0; k < n; ++k) {
    out += "{\"message_id\": \"m" + std::to_string(k) + "\", \"parent_id\": " +
           (k == 0 ? std::string("null") : "\"m" + std::to_string(k - 1) + "\"") + ", \"text\": \"t" +
           std::to_string(k) + "\", \"role\": \"" + (k % 2 == 0 ? "prompter" : "assistant") + "\"}\n";
  }
  return out;
}
std::string nested_chain(size_t n) {
  std::string out = "{\"message_tree_id\": \"m0\", \"prompt\": ";
  for (size_t k = 0; k < n; ++k) {
    out += "{\"message_id\": \"m" + std::to_string(k) + "\", \"text\": \"t" + std::to_string(k) + "\", \"role\": \"" +
           (k % 2 == 0 ? "prompter" : "assistant") + "\", \"replies\": [";
  }
  for (size_t k = 0; k < n; ++k) out += "]}";
  return out + "}\n";
}

// Item 5 of issue 10: deep reply chains. The flat layout loads a 100,000-message chain (the path walk is a
// loop); a nested tree that deep used to recurse once per message (and build an O(depth) field path per
// level) until the stack or memory ran out. Now the nested tree is walked with an explicit stack, and a
// record nested past kMaxRecordDepth is refused as FILE:LINE before it is walked.
TEST(DatasetFormats, OasstDeepReplyChainsLoadOrFailCleanly) {
  TempDir dir;
  const size_t n = 100000;
  const auto flat = dir.file("flat.jsonl", flat_chain(n));
  const auto ds = load_dataset(flat, {DatasetFormat::Oasst1});
  ASSERT_EQ(ds.samples.size(), 1u);
  const std::string& t = ds.samples[0].target;
  EXPECT_EQ(t.rfind("### Human: t0### Assistant: t1### Human: t2", 0), 0u);
  EXPECT_EQ(t.size() - t.rfind("### Assistant: t99999"), std::string("### Assistant: t99999").size());

  const auto deep = dir.file("deep.jsonl", "\n" + nested_chain(n));
  expect_input_error([&] { load_dataset(deep, {DatasetFormat::Oasst1}); },
                     {deep + ":2: record nested deeper than 1000 levels"});

  // Within the limit (499 messages: 998 levels + the record) the nested tree gives the flat chain's path.
  const size_t m = (kMaxRecordDepth - 1) / 2;
  const auto nested = load_dataset(dir.file("nested.jsonl", nested_chain(m)), {DatasetFormat::Oasst1});
  const auto same = load_dataset(dir.file("flat499.jsonl", flat_chain(m)), {DatasetFormat::Oasst1});
  ASSERT_EQ(nested.samples.size(), 1u);
  EXPECT_EQ(nested.samples[0].target, same.samples[0].target);
}

}  // namespace
}  // namespace qlora::data
