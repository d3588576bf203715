// The Guanaco chat format and stop strings (docs/qlora-reference.md section 7).
//
// The prompt of the paper's benchmark generations (the `prompt` field of artidoro/qlora eval/generations/*):
//   "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful,
//    detailed, and polite answers to the user's questions. ### Human: {question} ### Assistant:"
// Multi-turn prompts keep the earlier turns in the same chain (the OA benchmark prompts):
//   "{system} ### Human: {q1} ### Assistant: {a1} ### Human: {q2} ### Assistant:"
// The model is fed BOS + encode(prompt); the raw generation runs on into new "### Human:" turns and is cut
// at the first "### Human:" (the reference's `generation_truncated`).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace qlora::eval {

// The system line of the reference's prompts, byte for byte.
extern const char* const kGuanacoSystem;
// Where the reference cuts a generation.
extern const char* const kHumanTurnMarker;  // "### Human:"

struct ChatTurn {
  std::string human;      // the question
  std::string assistant;  // the answer (already cut at the stop string and trimmed)
};

// "{system} ### Human: {t.human} ### Assistant: {t.assistant}" for each earlier turn, then
// " ### Human: {question} ### Assistant:". An empty `system` drops the system line and its space.
std::string render_chat_prompt(const std::string& system, const std::vector<ChatTurn>& history,
                               const std::string& question);

// The byte offset of the earliest occurrence of any of `stops` in `text` (empty stop strings are ignored),
// or std::string::npos when none occurs.
size_t find_stop(const std::string& text, const std::vector<std::string>& stops);
// `text` up to (not including) the earliest stop string, or `text` itself.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops);
// `s` without leading and trailing ASCII whitespace.
std::string trim(const std::string& s);

}  // namespace qlora::eval
