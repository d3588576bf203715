// MMLU protocol on real data (tests/data/mmlu, see its SOURCE.md): CSV parsing of both layouts, the
// 57-subject category map, prompts byte-exact against qlora's prebuilt zero-/five-shot files, fitting a
// prompt to the context, and the report. Expected counts come from Python's csv module on the same files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include "input_error_capture.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/data/tokenizer.h"
#include "qlora/io/csv.h"
#include "qlora/io/mmlu.h"

namespace {

namespace mmlu = qlora::mmlu;
const std::string kData = std::string(QLORA_SOURCE_DIR) + "/tests/data/mmlu";

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(qlora::fs::read_text(path));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A zero-shot prompt "HEADER{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:" back into a Question.
mmlu::Question parse_zero_shot(const nlohmann::json& rec, int64_t index) {
  mmlu::Question q;
  q.subject = rec["subject"];
  q.index = index;
  std::string body = rec["input"].get<std::string>().substr(mmlu::prompt_header(q.subject).size());
  size_t end = body.rfind("\nAnswer:");
  for (int c = mmlu::kNumChoices - 1; c >= 0; --c) {
    const std::string tag = std::string("\n") + mmlu::kChoiceLetters[c] + ". ";
    size_t at = body.rfind(tag, end);
    q.choices[c] = body.substr(at + tag.size(), end - at - tag.size());
    end = at;
  }
  q.question = body.substr(0, end);
  q.answer = rec["output"].get<std::string>()[0] - 'A';
  return q;
}

// ---- CSV ----

TEST(Csv, QuotesNewlinesAndDelimiters) {
  const std::string text =
      "\xEF\xBB\xBFplain,\"with, comma\",\"say \"\"hi\"\"\"\r\n"  // BOM, CRLF record end, doubled quotes
      "\n"                                                            // blank line: skipped
      "\"two\nlines\",\"crlf\r\ninside\",\"tail\"after,\n"            // newline kept, text after quote, trailing empty
      "x\"y,z";                                                       // quote inside an unquoted field: literal
  auto rows = qlora::csv::parse(text, "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"plain", "with, comma", "say \"hi\""}));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"two\nlines", "crlf\r\ninside", "tailafter", ""}));
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"x\"y", "z"}));
  EXPECT_EQ(rows[2].line, 6);
  auto tsv = qlora::csv::parse("a\tb,c\n", "t.tsv", '\t');
  ASSERT_EQ(tsv.size(), 1u);
  EXPECT_EQ(tsv[0].fields, (std::vector<std::string>{"a", "b,c"}));
  EXPECT_TRUE(qlora::csv::parse("", "e.csv").empty());
}

TEST(Csv, UnterminatedQuoteNamesLine) {
  std::string msg = input_error([] { qlora::csv::parse("a,b\nc,\"never\nclosed\n", "bad.csv"); });
  EXPECT_NE(msg.find("bad.csv:2: unterminated quoted field"), std::string::npos) << msg;
}

TEST(Csv, AllHendrycksDevFilesMatchPythonCsv) {
  // Python csv.reader over the same 57 files: 285 rows of 6 fields, 109768 bytes of field text.
  int64_t rows = 0, bytes = 0, files = 0;
  for (const auto& name : qlora::fs::list_dir(kData + "/hendrycks/dev")) {
    ++files;
    for (const auto& r : qlora::csv::read(kData + "/hendrycks/dev/" + name)) {
      ASSERT_EQ(r.fields.size(), 6u) << name << ":" << r.line;
      ++rows;
      for (const auto& f : r.fields) bytes += static_cast<int64_t>(f.size());
    }
  }
  EXPECT_EQ(files, 57);
  EXPECT_EQ(rows, 285);
  EXPECT_EQ(bytes, 109768);
  // Fields with embedded newlines, CRLF and quotes (values from Python).
  auto us = qlora::csv::read(kData + "/hendrycks/dev/high_school_us_history_dev.csv");
  EXPECT_EQ(us[0].fields[0].size(), 1295u);
  EXPECT_EQ(std::count(us[0].fields[0].begin(), us[0].fields[0].end(), '\n'), 3);
  EXPECT_EQ(us[0].fields[0].rfind("condemned by Anti-Federalists of the post-Revolutionary era?"), 1295u - 60u);
  auto math = qlora::csv::read(kData + "/hendrycks/dev/college_mathematics_dev.csv");
  EXPECT_EQ(math[2].fields[0].substr(0, 78),
            "Let A be a real 2x2 matrix. Which of the following statements must be true?\r\nI");
  auto nutrition = qlora::csv::read(kData + "/hendrycks/dev/nutrition_dev.csv");
  EXPECT_EQ(nutrition[2].fields[2],
            "Butyric acid, formed during colonic fibre fermentation stimulates \"silencing\" of the SLC5A8 tumour "
            "suppressor gene");
  EXPECT_EQ(nutrition[2].fields[0].back(), '\n');
}

// ---- subjects ----

TEST(MmluSubjects, FiftySevenWithHendrycksCategories) {
  const auto& subjects = mmlu::subjects();
  ASSERT_EQ(subjects.size(), 57u);
  // The same names as the dev files of the release.
  size_t i = 0;
  for (const auto& name : qlora::fs::list_dir(kData + "/hendrycks/dev"))
    EXPECT_EQ(name, std::string(subjects[i++].name) + "_dev.csv");
  std::map<std::string, int> per_category;
  for (const auto& s : subjects) ++per_category[s.category];
  // docs/qlora-reference.md section 6.2: STEM 18, humanities 13, social sciences 12, other 14.
  EXPECT_EQ(per_category["STEM"], 18);
  EXPECT_EQ(per_category["humanities"], 13);
  EXPECT_EQ(per_category["social sciences"], 12);
  EXPECT_EQ(per_category["other (business, health, misc.)"], 14);
  EXPECT_EQ(mmlu::categories().size(), 4u);
  EXPECT_EQ(mmlu::subcategories().size(), 17u);
  const auto* fl = mmlu::find_subject("formal_logic");
  ASSERT_NE(fl, nullptr);
  EXPECT_STREQ(fl->subcategory, "philosophy");
  EXPECT_STREQ(fl->category, "humanities");
  EXPECT_STREQ(mmlu::find_subject("high_school_geography")->category, "social sciences");
  EXPECT_EQ(mmlu::find_subject("not_a_subject"), nullptr);
}

// ---- data ----

TEST(MmluData, HendrycksAndCaisLayoutsReadTheSameQuestions) {
  for (const std::string s : {"abstract_algebra", "college_mathematics", "high_school_us_history"}) {
    SCOPED_TRACE(s);
    auto h = mmlu::read_subject_csv(kData + "/hendrycks/dev/" + s + "_dev.csv", s);
    auto c = mmlu::read_subject_csv(kData + "/cais/dev/" + s + "_dev.csv", s);
    ASSERT_EQ(h.size(), 5u);
    ASSERT_EQ(c.size(), 5u);
    for (size_t i = 0; i < h.size(); ++i) {
      EXPECT_EQ(h[i].question, c[i].question);
      EXPECT_EQ(h[i].choices, c[i].choices);
      EXPECT_EQ(h[i].answer, c[i].answer);
      EXPECT_EQ(h[i].index, static_cast<int64_t>(i));
    }
  }
  auto aa = mmlu::read_subject_csv(kData + "/hendrycks/dev/abstract_algebra_dev.csv", "abstract_algebra");
  EXPECT_EQ(aa[0].question, "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.");
  EXPECT_EQ(aa[0].choices[3], "3");
  EXPECT_EQ(aa[0].answer, 1);  // "B"
}

TEST(MmluData, LoadBenchmarkTestSplit) {
  auto b = mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Test);
  EXPECT_EQ(b.subjects, (std::vector<std::string>{"abstract_algebra", "management"}));
  ASSERT_EQ(b.questions.size(), 203u);  // 100 + 103
  // Answer letters per subject, from Python csv.
  std::map<std::string, std::array<int, 4>> counts;
  for (const auto& q : b.questions) ++counts[q.subject][q.answer];
  EXPECT_EQ(counts["abstract_algebra"], (std::array<int, 4>{22, 26, 31, 21}));
  EXPECT_EQ(counts["management"], (std::array<int, 4>{18, 26, 20, 39}));
  EXPECT_EQ(b.questions[100].subject, "management");
  EXPECT_EQ(b.questions[100].index, 0);
  ASSERT_EQ(b.shots.size(), 2u);
  EXPECT_EQ(b.shots.at("management").size(), 5u);
  EXPECT_FALSE(b.prebuilt);

  auto first = mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Test, 150);
  ASSERT_EQ(first.questions.size(), 150u);
  EXPECT_EQ(first.questions.back().subject, "management");
  EXPECT_EQ(first.questions.back().index, 49);

  std::string msg = input_error([] { mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Val); });
  EXPECT_NE(msg.find("no val/ directory"), std::string::npos) << msg;
  msg = input_error([] { mmlu::load_benchmark(kData + "/nope", mmlu::Split::Val); });
  EXPECT_NE(msg.find("MMLU data not found"), std::string::npos) << msg;
  EXPECT_EQ(mmlu::parse_split("eval"), mmlu::Split::Val);
  msg = input_error([] { mmlu::parse_split("validation"); });
  EXPECT_NE(msg.find("expected \"dev\", \"val\""), std::string::npos) << msg;
}

TEST(MmluData, BadRowsNameFileAndLine) {
  char tmpl[] = "/tmp/qlora_mmlu_XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  qlora::fs::write_text_atomic(dir + "/x_test.csv", "q,a,b,c,d,A\nq2,a,b,c,E\n");
  std::string msg = input_error([&] { mmlu::read_subject_csv(dir + "/x_test.csv", "x"); });
  EXPECT_NE(msg.find("x_test.csv:2: expected 6 fields"), std::string::npos) << msg;
  qlora::fs::write_text_atomic(dir + "/y_test.csv", "q,a,b,c,d,A\nq2,a,b,c,d,E\n");
  msg = input_error([&] { mmlu::read_subject_csv(dir + "/y_test.csv", "y"); });
  EXPECT_NE(msg.find("y_test.csv:2: answer \"E\": expected a letter A-D or an index 0-3"), std::string::npos) << msg;
  qlora::fs::write_text_atomic(dir + "/p.jsonl", "{\"subject\": \"x\", \"input\": \"q\", \"output\": \"A\"}\n"
                                                "{\"subject\": \"x\", \"input\": \"q\"}\n");
  msg = input_error([&] { mmlu::load_benchmark(dir + "/p.jsonl", mmlu::Split::Val); });
  EXPECT_NE(msg.find("p.jsonl:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("output"), std::string::npos) << msg;
  qlora::fs::remove_all(dir);
}

// A split directory whose CSVs hold no question: an Input error naming it, not an evaluation of 0/0.
TEST(MmluData, NoQuestionsNamesTheDirectory) {
  char tmpl[] = "/tmp/qlora_mmlu_XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  qlora::fs::make_dirs(dir + "/val");
  qlora::fs::write_text_atomic(dir + "/val/x_val.csv", "");
  qlora::fs::write_text_atomic(dir + "/val/y_val.csv", "question,A,B,C,D,answer\n");  // cais header only
  std::string msg = input_error([&] { mmlu::load_benchmark(dir, mmlu::Split::Val); });
  EXPECT_NE(msg.find(dir + "/val: the .csv files hold no questions"), std::string::npos) << msg;
  qlora::fs::remove_all(dir);
}

// ---- prompts, against qlora's prebuilt files ----

TEST(MmluPrompt, HeaderHasTheDoubleSpace) {
  EXPECT_EQ(mmlu::format_subject("abstract_algebra"), " abstract algebra");
  EXPECT_EQ(mmlu::prompt_header("high_school_us_history"),
            "The following are multiple choice questions (with answers) about  high school us history.\n\n");
}

TEST(MmluPrompt, ZeroShotMatchesQloraFileForAll57Subjects) {
  auto records = read_jsonl(kData + "/qlora/zero_shot_mmlu_val.2_per_subject.jsonl");
  ASSERT_EQ(records.size(), 114u);
  std::map<std::string, int64_t> seen;
  for (const auto& rec : records) {
    const std::string subject = rec["subject"];
    ASSERT_NE(mmlu::find_subject(subject), nullptr) << subject;
    const std::string& input = rec["input"].get_ref<const std::string&>();
    ASSERT_EQ(input.rfind(mmlu::prompt_header(subject), 0), 0u) << input.substr(0, 120);
    mmlu::Question q = parse_zero_shot(rec, seen[subject]++);
    EXPECT_EQ(mmlu::build_prompt({}, 0, q), input);
  }
  EXPECT_EQ(seen.size(), 57u);
}

TEST(MmluPrompt, FiveShotMatchesQloraFile) {
  // Records of qlora's five_shot_mmlu_val.json: header, the 5 dev rows of hendrycks/dev in file order, the
  // val question (taken from the zero-shot file, which holds the same questions).
  auto five = read_jsonl(kData + "/qlora/five_shot_mmlu_val.excerpt.jsonl");
  auto zero = read_jsonl(kData + "/qlora/zero_shot_mmlu_val.2_per_subject.jsonl");
  ASSERT_EQ(five.size(), 4u);
  int matched = 0;
  for (const auto& rec : five) {
    const std::string subject = rec["subject"];
    auto shots = mmlu::read_subject_csv(kData + "/hendrycks/dev/" + subject + "_dev.csv", subject);
    for (const auto& z : zero) {
      if (z["subject"] != subject || z["output"] != rec["output"]) continue;
      mmlu::Question q = parse_zero_shot(z, 0);
      const std::string& want = rec["input"].get_ref<const std::string&>();
      if (want.size() < q.question.size() || want.find(q.question) == std::string::npos) continue;
      EXPECT_EQ(mmlu::build_prompt(shots, 5, q), want) << subject;
      ++matched;
    }
  }
  EXPECT_EQ(matched, 4);
}

TEST(MmluData, PrebuiltFileLoads) {
  auto b = mmlu::load_benchmark(kData + "/qlora/zero_shot_mmlu_val.2_per_subject.jsonl", mmlu::Split::Val);
  EXPECT_TRUE(b.prebuilt);
  ASSERT_EQ(b.questions.size(), 114u);
  EXPECT_EQ(b.subjects.size(), 57u);
  EXPECT_EQ(b.questions[1].subject, "abstract_algebra");
  EXPECT_EQ(b.questions[1].index, 1);
  EXPECT_EQ(b.questions[1].answer, 1);  // "B"
  EXPECT_EQ(b.questions[2].index, 0);
  EXPECT_EQ(b.questions[0].prebuilt_prompt.rfind(mmlu::prompt_header("abstract_algebra"), 0), 0u);
}

// ---- requests: fitting the prompt ----

// One token per byte (ids 3..258, as SentencePiece byte fallback), so token counts are string lengths.
std::vector<int32_t> byte_encode(const std::string& text) {
  std::vector<int32_t> ids;
  for (unsigned char c : text) ids.push_back(3 + c);
  return ids;
}

TEST(MmluRequests, DropShotsUntilThePromptFits) {
  auto b = mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Test, 3);
  const auto& q = b.questions[2];
  const auto& shots = b.shots.at(q.subject);
  std::array<int64_t, 6> len{};
  for (int k = 0; k <= 5; ++k) len[k] = static_cast<int64_t>(mmlu::build_prompt(shots, k, q).size());
  ASSERT_LT(len[2], len[3]);

  // Everything fits: 5 shots, BOS first, the prompt verbatim, " A".." D" = encode("A").."D".
  auto all = mmlu::build_requests(b, {5, 4096, 1}, byte_encode);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].shots, 5);
  EXPECT_FALSE(all[2].truncated);
  EXPECT_EQ(all[2].prompt_ids.size(), static_cast<size_t>(len[5] + 1));
  EXPECT_EQ(all[2].prompt_ids[0], 1);
  EXPECT_EQ(all[2].continuations[1], std::vector<int32_t>{3 + 'B'});
  EXPECT_EQ(all[2].gold, q.answer);
  EXPECT_EQ(all[2].subject, "abstract_algebra");

  // Context = BOS + the 3-shot prompt + 1 continuation token: exactly 3 shots are kept.
  auto three = mmlu::build_requests(b, {5, 1 + len[3] + 1, 1}, byte_encode);
  EXPECT_EQ(three[2].shots, 3);
  EXPECT_EQ(static_cast<int64_t>(three[2].prompt_ids.size()), 1 + len[3]);
  // One token less: 2 shots.
  auto two = mmlu::build_requests(b, {5, len[3] + 1, 1}, byte_encode);
  EXPECT_EQ(two[2].shots, 2);

  // Not even zero shots fit: BOS + the prompt's last tokens (the question end and "Answer:").
  const int64_t max_len = len[0] - 20;
  auto cut = mmlu::build_requests(b, {5, max_len, 1}, byte_encode);
  EXPECT_TRUE(cut[2].truncated);
  EXPECT_EQ(cut[2].shots, 0);
  ASSERT_EQ(static_cast<int64_t>(cut[2].prompt_ids.size()), max_len - 1);
  EXPECT_EQ(cut[2].prompt_ids[0], 1);
  const std::string zero = mmlu::build_prompt(shots, 0, q);
  std::vector<int32_t> tail = byte_encode(zero.substr(zero.size() - static_cast<size_t>(max_len - 2)));
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), cut[2].prompt_ids.begin() + 1));

  // Zero-shot on request.
  auto zs = mmlu::build_requests(b, {0, 4096, 1}, byte_encode);
  EXPECT_EQ(zs[0].shots, 0);
  EXPECT_EQ(static_cast<int64_t>(zs[0].prompt_ids.size()), 1 + static_cast<int64_t>(mmlu::build_prompt(shots, 0, b.questions[0]).size()));

  std::string msg = input_error([&] { mmlu::build_requests(b, {5, 2, 1}, byte_encode); });
  EXPECT_NE(msg.find("cannot hold BOS"), std::string::npos) << msg;
  msg = input_error([&] { mmlu::build_requests(b, {6, 4096, 1}, byte_encode); });
  EXPECT_NE(msg.find("must be in 0..5"), std::string::npos) << msg;
}

TEST(MmluRequests, LongestContinuationIsReserved) {
  // An encoder that makes "C" two tokens: the budget shrinks by 2, not 1.
  auto encode = [](const std::string& t) {
    auto ids = byte_encode(t);
    if (t == "C") ids.push_back(0);
    return ids;
  };
  auto b = mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Test, 1);
  const int64_t len0 = static_cast<int64_t>(mmlu::build_prompt(b.shots.at("abstract_algebra"), 0, b.questions[0]).size());
  auto fits = mmlu::build_requests(b, {0, 1 + len0 + 2, 1}, encode);
  EXPECT_FALSE(fits[0].truncated);
  auto cut = mmlu::build_requests(b, {0, 1 + len0 + 1, 1}, encode);
  EXPECT_TRUE(cut[0].truncated);
  EXPECT_EQ(static_cast<int64_t>(cut[0].prompt_ids.size()), len0);
  EXPECT_EQ(cut[0].continuations[2].size(), 2u);
}

TEST(MmluRequests, PrebuiltPromptsAreUsedVerbatim) {
  auto b = mmlu::load_benchmark(kData + "/qlora/five_shot_mmlu_val.excerpt.jsonl", mmlu::Split::Val);
  auto r = mmlu::build_requests(b, {5, 8192, 1}, byte_encode);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].shots, -1);
  EXPECT_EQ(r[0].prompt_ids.size(), b.questions[0].prebuilt_prompt.size() + 1);
}

TEST(MmluRequests, RealTokenizerMatchesTheReferenceCollator) {
  // Expected ids: transformers LlamaTokenizer(tok512.model, legacy=True) on the reference collator's source
  // "<s>" + prompt and target "X</s>" (qlora.py DataCollatorForCausalLM), for abstract_algebra test row 0.
  // With this 512-piece tokenizer "A" is two tokens (410 "\u2581", 447 "A") while "B" is one (368 "\u2581B").
  auto tok = qlora::data::Tokenizer::load(std::string(QLORA_SOURCE_DIR) + "/tests/data/tokenizer/tok512.model");
  mmlu::Encode encode = [&](const std::string& t) { return tok.encode(t); };
  auto b = mmlu::load_benchmark(kData + "/hendrycks", mmlu::Split::Test, 1);
  struct Want {
    int shots;
    size_t size;
    int64_t sum;
  };
  for (const Want w : {Want{5, 730, 270762}, Want{0, 146, 54930}}) {
    auto r = mmlu::build_requests(b, {w.shots, 2048, tok.bos_id()}, encode);
    ASSERT_EQ(r.size(), 1u);
    const auto& ids = r[0].prompt_ids;
    ASSERT_EQ(ids.size(), w.size) << w.shots;
    EXPECT_EQ(std::accumulate(ids.begin(), ids.end(), int64_t{0}), w.sum);
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 8), (std::vector<int32_t>{1, 291, 272, 414, 306, 327, 299, 261}));
    EXPECT_EQ(std::vector<int32_t>(ids.end() - 8, ids.end()), (std::vector<int32_t>{490, 13, 447, 416, 419, 424, 285, 467}));
    EXPECT_EQ(r[0].continuations[0], (std::vector<int32_t>{410, 447}));
    EXPECT_EQ(r[0].continuations[1], (std::vector<int32_t>{368}));
    EXPECT_EQ(r[0].continuations[2], (std::vector<int32_t>{410, 457}));
    EXPECT_EQ(r[0].continuations[3], (std::vector<int32_t>{410, 455}));
  }
  // 730 prompt ids + the 2-token longest continuation fill a 732-token context exactly; one less drops a shot.
  EXPECT_EQ(mmlu::build_requests(b, {5, 732, tok.bos_id()}, encode)[0].shots, 5);
  EXPECT_EQ(mmlu::build_requests(b, {5, 731, tok.bos_id()}, encode)[0].shots, 4);
}

// ---- scoring ----

TEST(MmluReport, MicroMacroAndCategories) {
  EXPECT_EQ(mmlu::predict({-1.0, -0.5, -0.5, -2.0}), 1);  // first maximum wins
  EXPECT_EQ(mmlu::predict({-3.0, -2.0, -1.0, -0.1}), 3);
  std::vector<mmlu::Prediction> p = {
      {"abstract_algebra", 0, 1, 1}, {"abstract_algebra", 1, 2, 2}, {"abstract_algebra", 2, 0, 0},
      {"abstract_algebra", 3, 3, 0}, {"anatomy", 0, 1, 1},          {"anatomy", 1, 0, 2},
      {"formal_logic", 0, 2, 3},     {"x_custom", 0, 3, 3},
  };
  auto r = mmlu::score(p, "val");
  EXPECT_EQ(r.correct, 5);
  EXPECT_EQ(r.total, 8);
  EXPECT_DOUBLE_EQ(r.micro, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(r.macro, (0.75 + 0.5 + 0.0 + 1.0) / 4.0);
  ASSERT_EQ(r.subjects.size(), 4u);
  EXPECT_EQ(r.subjects[0].name, "abstract_algebra");
  ASSERT_EQ(r.categories.size(), 4u);  // STEM, humanities, other, unknown (no social sciences question)
  EXPECT_EQ(r.categories[0].name, "STEM");
  EXPECT_EQ(r.categories[0].correct, 3);
  EXPECT_EQ(r.categories[1].name, "humanities");
  EXPECT_EQ(r.categories[2].name, "other (business, health, misc.)");
  EXPECT_EQ(r.categories[2].total, 2);
  EXPECT_EQ(r.categories[3].name, "unknown");
  EXPECT_EQ(r.subcategories[0].name, "math");

  auto j = mmlu::to_json(r);
  EXPECT_DOUBLE_EQ(j["micro_accuracy"].get<double>(), 0.625);
  EXPECT_EQ(j["subjects"]["anatomy"]["total"], 2);
  auto m = mmlu::metrics(r, "eval");
  EXPECT_DOUBLE_EQ(m["mmlu_eval_accuracy"].get<double>(), 0.5625);  // qlora.py's logged value: macro
  EXPECT_DOUBLE_EQ(m["mmlu_eval_accuracy_micro"].get<double>(), 0.625);
  EXPECT_DOUBLE_EQ(m["mmlu_eval_accuracy_abstract_algebra"].get<double>(), 0.75);
  EXPECT_TRUE(m.contains("mmlu_eval_accuracy_other__business__health__misc__"));

  std::string t = mmlu::format_table(r);
  EXPECT_NE(t.find("| all, micro (hendrycks)"), std::string::npos) << t;
  EXPECT_NE(t.find("0.6250"), std::string::npos) << t;
  EXPECT_NE(t.find("0.5625"), std::string::npos) << t;
}

TEST(MmluReport, PredictionsFileHasOneLinePerQuestion) {
  char tmpl[] = "/tmp/qlora_mmlu_XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  mmlu::Prediction a{"anatomy", 7, 2, 3};
  a.loglik = {-1.5, -2.0, -0.25, -0.5};
  mmlu::Prediction b{"formal_logic", 0, 0, 0};
  mmlu::write_predictions(dir + "/p.jsonl", {a, b});
  auto lines = read_jsonl(dir + "/p.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["subject"], "anatomy");
  EXPECT_EQ(lines[0]["index"], 7);
  EXPECT_EQ(lines[0]["prediction"], "C");
  EXPECT_EQ(lines[0]["gold"], "D");
  EXPECT_EQ(lines[0]["correct"], false);
  EXPECT_EQ(lines[0]["loglik"][2], -0.25);
  EXPECT_EQ(lines[1]["correct"], true);
  EXPECT_FALSE(lines[1].contains("loglik"));  // not given
  qlora::fs::remove_all(dir);
}

}  // namespace
