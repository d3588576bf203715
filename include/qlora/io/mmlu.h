// MMLU evaluation protocol, everything but running the model (docs/qlora-reference.md section 6):
//   data      hendrycks CSV layout (no header, answer letter) or cais layout (header, answer 0-3), in
//             DIR/{dev,val,test}/SUBJECT_{split}.csv (or DIR/data/...); or the reference's prebuilt prompt
//             files (qlora data/mmlu/*_mmlu_{val,test}.json, JSON Lines {"subject","input","output"}).
//   prompts   hendrycks format_example / gen_prompt, byte-exact with qlora's five_shot/zero_shot files:
//             "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
//             (two spaces after "about": format_subject puts a space before every word), K dev shots in
//             file order, each "{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {X}\n\n", then the question
//             ending in "\nAnswer:".
//   fitting   BOS + prompt + the longest answer continuation must fit the model context: shots are dropped
//             one at a time (hendrycks evaluate_flan.py), and if even zero shots do not fit, the prompt's
//             *last* tokens are kept after BOS. (qlora.py instead right-truncates BOS + prompt to 2048 tokens
//             and so cuts the question; we follow hendrycks.)
//   requests  per question: the prompt ids and the four continuation ids (encode("A").."D": with the LLaMA
//             SentencePiece dummy prefix that is "▁A" = " A", the token qlora.py scores). The model side
//             (the lead) scores each continuation's log-likelihood; the prediction is the argmax.
//   report    per subject, per subcategory and category (micro, as hendrycks), overall micro (hendrycks
//             headline) and macro (mean of subject accuracies: qlora.py's mmlu_{split}_accuracy).
// Torch-free. CSV text is kept verbatim (a choice "None" stays "None", as in qlora's prebuilt files;
// hendrycks' pandas reading would print it as "nan").
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qlora::mmlu {

inline constexpr int kNumChoices = 4;
inline constexpr std::array<char, kNumChoices> kChoiceLetters = {'A', 'B', 'C', 'D'};
inline constexpr int kMaxShots = 5;  // each subject's dev split has 5 rows

// ---- subjects (hendrycks/test categories.py) ----

struct SubjectInfo {
  const char* name;         // "abstract_algebra"
  const char* subcategory;  // "math"
  const char* category;     // "STEM" | "humanities" | "social sciences" | "other (business, health, misc.)"
};
const std::vector<SubjectInfo>& subjects();        // the 57, sorted by name
const SubjectInfo* find_subject(const std::string& name);  // nullptr when not one of the 57
const std::vector<std::string>& categories();      // the 4 category names, in categories.py order
const std::vector<std::string>& subcategories();   // the 17 subcategory names, in categories.py order

// ---- data ----

enum class Split { Dev, Val, Test };
Split parse_split(const std::string& name);  // "dev" | "val" | "eval" (= val, qlora's name) | "test"
std::string split_name(Split s);             // "dev" | "val" | "test"

struct Question {
  std::string subject;                          // "abstract_algebra"
  int64_t index = 0;                            // 0-based row in its subject file (prebuilt: in the file)
  std::string question;                         // empty for prebuilt prompts
  std::array<std::string, kNumChoices> choices; // empty for prebuilt prompts
  int answer = 0;                               // gold, 0..3 = A..D
  std::string prebuilt_prompt;                  // the whole prompt, for prebuilt files only (used verbatim)
};

// One subject's CSV in either layout (header row `question,...,answer` or none; answer A-D or 0-3).
std::vector<Question> read_subject_csv(const std::string& path, const std::string& subject);

struct Benchmark {
  std::string source;                                  // directory or prebuilt file
  Split split = Split::Val;
  std::vector<std::string> subjects;                   // sorted; those with questions
  std::map<std::string, std::vector<Question>> shots;  // dev rows per subject, file order (CSV only)
  std::vector<Question> questions;                     // by subject, then file order
  bool prebuilt = false;                               // prompts come from a qlora .json file
};

// PATH is a directory (DIR/{split}/ or DIR/data/{split}/ with SUBJECT_{split}.csv or SUBJECT.csv files) or
// a qlora prebuilt .json/.jsonl file (then `split` only labels the report). `max_questions` > 0 keeps the
// first N questions (qlora.py max_mmlu_samples, in the same subject-sorted order). `load_shots` reads dev/
// (required then for every subject). Missing files and bad rows are Input errors naming FILE:LINE.
Benchmark load_benchmark(const std::string& path, Split split, int64_t max_questions = 0, bool load_shots = true);

// ---- prompts ----

std::string format_subject(const std::string& subject);  // "abstract_algebra" -> " abstract algebra"
std::string prompt_header(const std::string& subject);   // "The following are ... about {format_subject}.\n\n"
// "{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:", plus " {X}\n\n" when `with_answer`.
std::string format_example(const Question& q, bool with_answer);
// Header, the first `k` of `shots` with their answers, then `q` without its answer.
std::string build_prompt(const std::vector<Question>& shots, int k, const Question& q);

// ---- requests for the scorer ----

// Tokenizer callback: the ids of `text` without BOS/EOS (data::Tokenizer::encode(text) for LLaMA).
using Encode = std::function<std::vector<int32_t>(const std::string& text)>;

struct Request {
  std::string subject;
  int64_t index = 0;
  int gold = 0;                 // 0..3
  int shots = 0;                // dev shots in the prompt after fitting (-1 for prebuilt prompts)
  bool truncated = false;       // even zero shots did not fit: only the prompt's last tokens are kept
  std::vector<int32_t> prompt_ids;                             // (T,) BOS + prompt tokens
  std::array<std::vector<int32_t>, kNumChoices> continuations; // ids of " A".." D" to score after prompt_ids
};

struct RequestOptions {
  int shots = kMaxShots;        // wanted dev shots, 0..5 (mmlu_shots)
  int64_t max_len = 2048;       // model context in tokens (mmlu_source_max_len): BOS + prompt + continuation
  int32_t bos_id = 1;           // LLaMA <s>
};

// encode("A").."D", tokenized on their own like the reference collator's target (with a SentencePiece
// dummy prefix: "▁A").
std::array<std::vector<int32_t>, kNumChoices> answer_continuations(const Encode& encode);

// One request per question, in benchmark order. Input error when max_len cannot hold BOS + one prompt
// token + the longest continuation.
std::vector<Request> build_requests(const Benchmark& bench, const RequestOptions& options, const Encode& encode);

// ---- scoring and reporting ----

// argmax of the 4 continuation log-likelihoods; the first maximum wins (numpy argmax).
int predict(const std::array<double, kNumChoices>& loglik);

struct Prediction {
  std::string subject;
  int64_t index = 0;
  int predicted = 0;                            // 0..3
  int gold = 0;                                 // 0..3
  static constexpr double kNoScore = std::numeric_limits<double>::quiet_NaN();
  // The scores behind `predicted`; optional (NaN = not given), written to the predictions file when finite.
  std::array<double, kNumChoices> loglik = {kNoScore, kNoScore, kNoScore, kNoScore};
};

struct GroupScore {
  std::string name;
  int64_t correct = 0;
  int64_t total = 0;
  double accuracy() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

struct Report {
  std::string split;                      // "val" | "test" | ...
  std::vector<GroupScore> subjects;       // sorted by name
  std::vector<GroupScore> subcategories;  // micro over their questions; categories.py order, present ones
  std::vector<GroupScore> categories;     // micro over their questions (hendrycks); categories.py order
  int64_t correct = 0;
  int64_t total = 0;
  double micro = 0;                       // correct / total (hendrycks headline)
  double macro = 0;                       // mean of subject accuracies (qlora.py mmlu_{split}_accuracy)
};

// Subjects outside the 57 are scored under subcategory/category "unknown".
Report score(const std::vector<Prediction>& predictions, const std::string& split);
nlohmann::ordered_json to_json(const Report& report);
// qlora.py's logged metrics: mmlu_{split}_accuracy (macro), mmlu_{split}_accuracy_{subject}, plus ours:
// mmlu_{split}_accuracy_micro and mmlu_{split}_accuracy_{category}. `split` as qlora logs it ("eval"/"test").
nlohmann::ordered_json metrics(const Report& report, const std::string& split);
std::string format_table(const Report& report);  // "| group | correct | total | accuracy |"
// One JSON line per question: {"subject","index","prediction":"B","gold":"C","correct":false,"loglik":[..]}.
void write_predictions(const std::string& path, const std::vector<Prediction>& predictions);

}  // namespace qlora::mmlu
