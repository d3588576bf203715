// MMLU protocol: data, prompts (hendrycks format), fitting to the context, requests, report.
// See include/qlora/io/mmlu.h; reference: docs/qlora-reference.md section 6, hendrycks/test evaluate.py,
// evaluate_flan.py and categories.py.
#include "qlora/common/util.h"
#include "qlora/io/mmlu.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/data/json_records.h"
#include "qlora/io/csv.h"

namespace qlora::mmlu {

// ---- subjects ----

namespace {

// hendrycks/test categories.py `subcategories` (every subject has exactly one).
struct SubjectRow {
  const char* name;
  const char* subcategory;
};
constexpr SubjectRow kSubjects[] = {
    {"abstract_algebra", "math"},
    {"anatomy", "health"},
    {"astronomy", "physics"},
    {"business_ethics", "business"},
    {"clinical_knowledge", "health"},
    {"college_biology", "biology"},
    {"college_chemistry", "chemistry"},
    {"college_computer_science", "computer science"},
    {"college_mathematics", "math"},
    {"college_medicine", "health"},
    {"college_physics", "physics"},
    {"computer_security", "computer science"},
    {"conceptual_physics", "physics"},
    {"econometrics", "economics"},
    {"electrical_engineering", "engineering"},
    {"elementary_mathematics", "math"},
    {"formal_logic", "philosophy"},
    {"global_facts", "other"},
    {"high_school_biology", "biology"},
    {"high_school_chemistry", "chemistry"},
    {"high_school_computer_science", "computer science"},
    {"high_school_european_history", "history"},
    {"high_school_geography", "geography"},
    {"high_school_government_and_politics", "politics"},
    {"high_school_macroeconomics", "economics"},
    {"high_school_mathematics", "math"},
    {"high_school_microeconomics", "economics"},
    {"high_school_physics", "physics"},
    {"high_school_psychology", "psychology"},
    {"high_school_statistics", "math"},
    {"high_school_us_history", "history"},
    {"high_school_world_history", "history"},
    {"human_aging", "health"},
    {"human_sexuality", "culture"},
    {"international_law", "law"},
    {"jurisprudence", "law"},
    {"logical_fallacies", "philosophy"},
    {"machine_learning", "computer science"},
    {"management", "business"},
    {"marketing", "business"},
    {"medical_genetics", "health"},
    {"miscellaneous", "other"},
    {"moral_disputes", "philosophy"},
    {"moral_scenarios", "philosophy"},
    {"nutrition", "health"},
    {"philosophy", "philosophy"},
    {"prehistory", "history"},
    {"professional_accounting", "other"},
    {"professional_law", "law"},
    {"professional_medicine", "health"},
    {"professional_psychology", "psychology"},
    {"public_relations", "politics"},
    {"security_studies", "politics"},
    {"sociology", "culture"},
    {"us_foreign_policy", "politics"},
    {"virology", "health"},
    {"world_religions", "philosophy"},
};

// categories.py `categories`: category -> its subcategories, in file order.
struct CategoryRow {
  const char* name;
  std::vector<const char*> subcategories;
};
const std::vector<CategoryRow>& category_rows() {
  static const std::vector<CategoryRow> kRows = {
      {"STEM", {"physics", "chemistry", "biology", "computer science", "math", "engineering"}},
      {"humanities", {"history", "philosophy", "law"}},
      {"social sciences", {"politics", "culture", "economics", "geography", "psychology"}},
      {"other (business, health, misc.)", {"other", "business", "health"}},
  };
  return kRows;
}

const char* category_of(const char* subcategory) {
  for (const auto& c : category_rows())
    for (const char* s : c.subcategories)
      if (std::string(s) == subcategory) return c.name;
  QLORA_CHECK(false, "subcategory without a category: ", subcategory);
  return "";
}

constexpr const char* kUnknown = "unknown";

}  // namespace

const std::vector<SubjectInfo>& subjects() {
  static const std::vector<SubjectInfo> kInfo = [] {
    std::vector<SubjectInfo> v;
    for (const auto& s : kSubjects) v.push_back({s.name, s.subcategory, category_of(s.subcategory)});
    return v;
  }();
  return kInfo;
}

const SubjectInfo* find_subject(const std::string& name) {
  for (const auto& s : subjects())
    if (name == s.name) return &s;
  return nullptr;
}

const std::vector<std::string>& categories() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& c : category_rows()) v.push_back(c.name);
    return v;
  }();
  return kNames;
}

const std::vector<std::string>& subcategories() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& c : category_rows()) v.insert(v.end(), c.subcategories.begin(), c.subcategories.end());
    return v;
  }();
  return kNames;
}

// ---- data ----

Split parse_split(const std::string& name) {
  if (name == "dev") return Split::Dev;
  if (name == "val" || name == "eval") return Split::Val;
  if (name == "test") return Split::Test;
  QLORA_INPUT_ERROR("MMLU split \"", name, "\": expected \"dev\", \"val\" (or \"eval\") or \"test\"");
}

std::string split_name(Split s) {
  switch (s) {
    case Split::Dev: return "dev";
    case Split::Val: return "val";
    case Split::Test: return "test";
  }
  return "";
}

namespace {

int parse_answer(const std::string& raw, const std::string& where) {
  std::string a = raw;
  a.erase(0, a.find_first_not_of(" \t\r\n"));
  a.erase(a.find_last_not_of(" \t\r\n") + 1);
  if (a.size() == 1 && a[0] >= 'A' && a[0] <= 'D') return a[0] - 'A';
  if (a.size() == 1 && a[0] >= '0' && a[0] <= '3') return a[0] - '0';  // cais layout
  QLORA_INPUT_ERROR(where, ": answer \"", raw, "\": expected a letter A-D or an index 0-3");
}

// The directory holding one split's CSVs: DIR/{split} or DIR/data/{split} (hendrycks data.tar layout).
std::string split_dir(const std::string& root, Split split) {
  for (const std::string& d : {fs::join(root, split_name(split)), fs::join(root, "data/" + split_name(split))})
    if (fs::is_dir(d)) return d;
  QLORA_INPUT_ERROR(root, ": no ", split_name(split), "/ directory; expected the MMLU CSV layout DIR/{dev,val,test}/",
                    "SUBJECT_{dev,val,test}.csv (hendrycks data.tar or cais), or a qlora prebuilt .json file");
}

// Subject -> CSV path for one split directory. Files are SUBJECT_{split}.csv, or SUBJECT.csv.
std::map<std::string, std::string> subject_files(const std::string& dir, Split split) {
  std::map<std::string, std::string> out;
  const std::string suffix = "_" + split_name(split) + ".csv";
  for (const auto& name : fs::list_dir(dir)) {
    if (!ends_with(name, ".csv")) continue;
    std::string subject = ends_with(name, suffix) ? name.substr(0, name.size() - suffix.size())
                                                  : name.substr(0, name.size() - 4);
    out[subject] = fs::join(dir, name);
  }
  QLORA_INPUT_CHECK(!out.empty(), dir, ": no .csv files (expected SUBJECT_", split_name(split), ".csv)");
  return out;
}

// qlora data/mmlu/{zero,five}_shot_mmlu_{val,test}.json: JSON Lines {"subject","input","output"}.
std::vector<Question> read_prebuilt(const std::string& path) {
  std::vector<Question> out;
  std::map<std::string, int64_t> next_index;
  for (const auto& rec : data::read_json_records(path)) {
    data::require_object(path, rec);
    Question q;
    q.subject = data::string_field(path, rec, rec.value, "subject", /*required=*/true);
    q.prebuilt_prompt = data::string_field(path, rec, rec.value, "input", /*required=*/true);
    q.answer = parse_answer(data::string_field(path, rec, rec.value, "output", /*required=*/true),
                            data::record_where(path, rec));
    q.index = next_index[q.subject]++;
    out.push_back(std::move(q));
  }
  QLORA_INPUT_CHECK(!out.empty(), path, ": no questions");
  return out;
}

}  // namespace

std::vector<Question> read_subject_csv(const std::string& path, const std::string& subject) {
  std::vector<csv::Row> rows = csv::read(path);
  size_t first = 0;
  // cais layout: a header "question,choice0,...,answer" (or "question,A,B,C,D,answer").
  if (!rows.empty() && rows[0].fields.size() == 6 && rows[0].fields[0] == "question" && rows[0].fields[5] == "answer")
    first = 1;
  std::vector<Question> out;
  for (size_t r = first; r < rows.size(); ++r) {
    const auto& f = rows[r].fields;
    const std::string where = path + ":" + std::to_string(rows[r].line);
    QLORA_INPUT_CHECK(f.size() == 6, where, ": expected 6 fields (question, A, B, C, D, answer), got ", f.size());
    Question q;
    q.subject = subject;
    q.index = static_cast<int64_t>(out.size());
    q.question = f[0];
    for (int c = 0; c < kNumChoices; ++c) q.choices[c] = f[1 + c];
    q.answer = parse_answer(f[5], where);
    out.push_back(std::move(q));
  }
  return out;
}

Benchmark load_benchmark(const std::string& path, Split split, int64_t max_questions, bool load_shots) {
  Benchmark b;
  b.source = path;
  b.split = split;
  QLORA_INPUT_CHECK(fs::exists(path), path, ": MMLU data not found (a CSV directory or a qlora prebuilt .json file)");
  if (!fs::is_dir(path)) {
    b.prebuilt = true;
    b.questions = read_prebuilt(path);
  } else {
    const std::string dir = split_dir(path, split);
    for (const auto& [subject, file] : subject_files(dir, split)) {
      auto qs = read_subject_csv(file, subject);
      b.questions.insert(b.questions.end(), qs.begin(), qs.end());
    }
    // Without this, an evaluation of nothing would report 0/0 correct and succeed.
    QLORA_INPUT_CHECK(!b.questions.empty(), dir, ": the .csv files hold no questions (expected rows of question, "
                      "A, B, C, D, answer)");
  }
  if (max_questions > 0 && static_cast<int64_t>(b.questions.size()) > max_questions)
    b.questions.resize(static_cast<size_t>(max_questions));
  std::set<std::string> names;
  for (const auto& q : b.questions) names.insert(q.subject);
  b.subjects.assign(names.begin(), names.end());
  if (load_shots && !b.prebuilt) {
    const auto dev = subject_files(split_dir(path, Split::Dev), Split::Dev);
    for (const auto& s : b.subjects) {
      auto it = dev.find(s);
      QLORA_INPUT_CHECK(it != dev.end(), path, ": no dev file for subject \"", s, "\" (the few-shot examples)");
      b.shots[s] = read_subject_csv(it->second, s);
    }
  }
  return b;
}

// ---- prompts (hendrycks evaluate.py format_subject / format_example / gen_prompt) ----

std::string format_subject(const std::string& subject) {
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t us = subject.find('_', start);
    out += " " + subject.substr(start, us == std::string::npos ? std::string::npos : us - start);
    if (us == std::string::npos) return out;
    start = us + 1;
  }
}

std::string prompt_header(const std::string& subject) {
  // hendrycks: "... about {}.\n\n".format(format_subject(subject)); format_subject starts with a space.
  return "The following are multiple choice questions (with answers) about " + format_subject(subject) + ".\n\n";
}

std::string format_example(const Question& q, bool with_answer) {
  std::string s = q.question;
  for (int c = 0; c < kNumChoices; ++c) s += std::string("\n") + kChoiceLetters[c] + ". " + q.choices[c];
  s += "\nAnswer:";
  if (with_answer) s += std::string(" ") + kChoiceLetters[q.answer] + "\n\n";
  return s;
}

std::string build_prompt(const std::vector<Question>& shots, int k, const Question& q) {
  QLORA_CHECK(k >= 0 && static_cast<size_t>(k) <= shots.size(), "k=", k, " of ", shots.size(), " shots");
  std::string s = prompt_header(q.subject);
  for (int i = 0; i < k; ++i) s += format_example(shots[i], true);
  return s + format_example(q, false);
}

// ---- requests ----

std::array<std::vector<int32_t>, kNumChoices> answer_continuations(const Encode& encode) {
  std::array<std::vector<int32_t>, kNumChoices> out;
  for (int c = 0; c < kNumChoices; ++c) {
    out[c] = encode(std::string(1, kChoiceLetters[c]));
    QLORA_INPUT_CHECK(!out[c].empty(), "MMLU: the tokenizer encodes answer \"", kChoiceLetters[c], "\" as no tokens");
  }
  return out;
}

std::vector<Request> build_requests(const Benchmark& bench, const RequestOptions& options, const Encode& encode) {
  QLORA_INPUT_CHECK(options.shots >= 0 && options.shots <= kMaxShots, "MMLU shots = ", options.shots,
                    ": must be in 0..", kMaxShots);
  const auto continuations = answer_continuations(encode);
  size_t longest = 0;
  for (const auto& c : continuations) longest = std::max(longest, c.size());
  // Room for the prompt tokens: the context minus BOS minus the longest continuation.
  const int64_t budget = options.max_len - 1 - static_cast<int64_t>(longest);
  QLORA_INPUT_CHECK(budget >= 1, "MMLU: a context of ", options.max_len, " tokens cannot hold BOS, a prompt and the ",
                    longest, "-token answer");
  static const std::vector<Question> kNoShots;

  std::vector<Request> out;
  out.reserve(bench.questions.size());
  for (const auto& q : bench.questions) {
    Request r;
    r.subject = q.subject;
    r.index = q.index;
    r.gold = q.answer;
    r.continuations = continuations;
    std::vector<int32_t> ids;
    if (bench.prebuilt) {
      r.shots = -1;
      ids = encode(q.prebuilt_prompt);
    } else {
      auto it = bench.shots.find(q.subject);
      const auto& shots = it == bench.shots.end() ? kNoShots : it->second;
      QLORA_INPUT_CHECK(options.shots == 0 || it != bench.shots.end(), bench.source, ": ", options.shots,
                        "-shot prompts need the dev split, which was not loaded for \"", q.subject, "\"");
      // Drop shots one at a time until the prompt fits (hendrycks evaluate_flan.py).
      for (int k = std::min<int>(options.shots, static_cast<int>(shots.size()));; --k) {
        ids = encode(build_prompt(shots, k, q));
        r.shots = k;
        if (static_cast<int64_t>(ids.size()) <= budget || k == 0) break;
      }
    }
    if (static_cast<int64_t>(ids.size()) > budget) {
      ids.erase(ids.begin(), ids.end() - budget);  // keep the prompt's end: the question and "Answer:"
      r.truncated = true;
    }
    r.prompt_ids.reserve(ids.size() + 1);
    r.prompt_ids.push_back(options.bos_id);
    r.prompt_ids.insert(r.prompt_ids.end(), ids.begin(), ids.end());
    out.push_back(std::move(r));
  }
  return out;
}

// ---- scoring and reporting ----

int predict(const std::array<double, kNumChoices>& loglik) {
  int best = 0;
  for (int c = 1; c < kNumChoices; ++c)
    if (loglik[c] > loglik[best]) best = c;
  return best;
}

Report score(const std::vector<Prediction>& predictions, const std::string& split) {
  Report r;
  r.split = split;
  std::map<std::string, GroupScore> by_subject, by_sub, by_cat;
  for (const auto& p : predictions) {
    QLORA_CHECK(p.predicted >= 0 && p.predicted < kNumChoices && p.gold >= 0 && p.gold < kNumChoices,
                "prediction ", p.predicted, " / gold ", p.gold, " for ", p.subject, " #", p.index);
    const SubjectInfo* info = find_subject(p.subject);
    const int hit = p.predicted == p.gold ? 1 : 0;
    for (auto* g : {&by_subject[p.subject], &by_sub[info ? info->subcategory : kUnknown],
                    &by_cat[info ? info->category : kUnknown]}) {
      g->correct += hit;
      g->total += 1;
    }
    r.correct += hit;
    r.total += 1;
  }
  for (auto& [name, g] : by_subject) {
    g.name = name;
    r.subjects.push_back(g);
    r.macro += g.accuracy();
  }
  if (!r.subjects.empty()) r.macro /= static_cast<double>(r.subjects.size());
  r.micro = r.total > 0 ? static_cast<double>(r.correct) / static_cast<double>(r.total) : 0.0;
  auto ordered = [](std::map<std::string, GroupScore>& groups, const std::vector<std::string>& order) {
    std::vector<GroupScore> v;
    for (const auto& name : order) {
      auto it = groups.find(name);
      if (it == groups.end()) continue;
      it->second.name = name;
      v.push_back(it->second);
    }
    auto unknown = groups.find(kUnknown);
    if (unknown != groups.end()) unknown->second.name = kUnknown, v.push_back(unknown->second);
    return v;
  };
  r.subcategories = ordered(by_sub, subcategories());
  r.categories = ordered(by_cat, categories());
  return r;
}

namespace {

nlohmann::ordered_json group_json(const std::vector<GroupScore>& groups) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& g : groups) j[g.name] = {{"correct", g.correct}, {"total", g.total}, {"accuracy", g.accuracy()}};
  return j;
}

std::string metric_name(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace

nlohmann::ordered_json to_json(const Report& r) {
  nlohmann::ordered_json j;
  j["split"] = r.split;
  j["micro_accuracy"] = r.micro;
  j["macro_accuracy"] = r.macro;
  j["correct"] = r.correct;
  j["total"] = r.total;
  j["categories"] = group_json(r.categories);
  j["subcategories"] = group_json(r.subcategories);
  j["subjects"] = group_json(r.subjects);
  return j;
}

nlohmann::ordered_json metrics(const Report& r, const std::string& split) {
  const std::string p = "mmlu_" + split + "_accuracy";
  nlohmann::ordered_json j;
  j[p] = r.macro;
  j[p + "_micro"] = r.micro;
  for (const auto& g : r.categories) j[p + "_" + metric_name(g.name)] = g.accuracy();
  for (const auto& g : r.subjects) j[p + "_" + g.name] = g.accuracy();
  return j;
}

std::string format_table(const Report& r) {
  std::vector<std::array<std::string, 4>> rows;
  auto add = [&](const std::string& name, int64_t correct, int64_t total, double acc) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", acc);
    rows.push_back({name, std::to_string(correct), std::to_string(total), buf});
  };
  add("all, micro (hendrycks)", r.correct, r.total, r.micro);
  add("all, macro over " + std::to_string(r.subjects.size()) + " subjects (qlora)", r.correct, r.total, r.macro);
  rows.back()[1] = rows.back()[2] = "";  // a mean of subject accuracies has no counts
  for (const auto& g : r.categories) add(g.name, g.correct, g.total, g.accuracy());
  for (const auto& g : r.subjects) add(g.name, g.correct, g.total, g.accuracy());
  std::array<size_t, 4> w = {5, 7, 5, 8};
  for (const auto& row : rows)
    for (size_t i = 0; i < 4; ++i) w[i] = std::max(w[i], row[i].size());
  std::string rule = "+";
  for (size_t x : w) rule += std::string(x + 2, '-') + "+";
  rule += "\n";
  auto line = [&](const std::array<std::string, 4>& row) {
    std::string s = "| " + row[0] + std::string(w[0] - row[0].size(), ' ') + " |";
    for (size_t i = 1; i < 4; ++i) s += " " + std::string(w[i] - row[i].size(), ' ') + row[i] + " |";
    return s + "\n";
  };
  std::string out = "MMLU " + r.split + "\n" + rule + line({"group", "correct", "total", "accuracy"}) + rule;
  for (size_t i = 0; i < rows.size(); ++i) {
    out += line(rows[i]);
    if (i == 1 || i == 1 + r.categories.size()) out += rule;
  }
  return out + rule;
}

void write_predictions(const std::string& path, const std::vector<Prediction>& predictions) {
  std::string text;
  for (const auto& p : predictions) {
    nlohmann::ordered_json j;
    j["subject"] = p.subject;
    j["index"] = p.index;
    j["prediction"] = std::string(1, kChoiceLetters[p.predicted]);
    j["gold"] = std::string(1, kChoiceLetters[p.gold]);
    j["correct"] = p.predicted == p.gold;
    if (std::all_of(p.loglik.begin(), p.loglik.end(), [](double x) { return std::isfinite(x); }))
      j["loglik"] = p.loglik;
    text += j.dump() + "\n";
  }
  fs::write_text_atomic(path, text);
}

}  // namespace qlora::mmlu
