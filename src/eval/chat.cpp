// The Guanaco chat template and stop strings (see qlora/eval/chat.h).
#include "qlora/eval/chat.h"

namespace qlora::eval {

const char* const kGuanacoSystem =
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.";
const char* const kHumanTurnMarker = "### Human:";

std::string render_chat_prompt(const std::string& system, const std::vector<ChatTurn>& history,
                               const std::string& question) {
  std::string out = system;
  const auto add_turn_separator = [&out]() {
    if (!out.empty()) out += ' ';
  };
  for (const auto& turn : history) {
    add_turn_separator();
    out += "### Human: " + turn.human + " ### Assistant: " + turn.assistant;
  }
  add_turn_separator();
  out += "### Human: " + question + " ### Assistant:";
  return out;
}

size_t find_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const auto& stop : stops) {
    if (stop.empty()) continue;
    const size_t at = text.find(stop);
    if (at < best) best = at;
  }
  return best;
}

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  const size_t at = find_stop(text, stops);
  return at == std::string::npos ? text : text.substr(0, at);
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

}  // namespace qlora::eval
