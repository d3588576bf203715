// Batched generation with the KV cache, stop strings, and the chat session (see qlora/eval/generation.h).
#include "qlora/common/util.h"
#include "qlora/eval/generation.h"

#include <algorithm>
#include <chrono>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/data/json_records.h"

namespace qlora::eval {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<int32_t> to_int32(const std::vector<int64_t>& ids) { return {ids.begin(), ids.end()}; }

// Puts the model in eval mode (no dropout) for the scope and restores its mode afterwards.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(LlamaForCausalLMImpl& model) : model_(model), was_training_(model.is_training()) {
    model_.eval();
  }
  ~EvalModeGuard() { model_.train(was_training_); }

 private:
  LlamaForCausalLMImpl& model_;
  bool was_training_;
};

struct Row {
  int64_t prompt_len = 0;
  int64_t budget = 0;  // new tokens allowed (max_new_tokens clamped to the context)
  bool finished = false;
  Generation out;
};

// One batch of rows through prefill + decode. Rows are left-padded to the longest prompt.
void generate_batch(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer, std::vector<Row>& rows,
                    const GenerationOptions& o, int64_t first_index, GenerationStats& stats) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t vocab = model.config().vocab_size;
  const auto& eos_ids = model.config().eos_token_ids;
  const int64_t filler = eos_ids.empty() ? 0 : eos_ids[0];  // fed to padding and finished rows, always masked
  int64_t max_len = 0, max_budget = 0;
  for (const auto& r : rows) {
    max_len = std::max(max_len, r.prompt_len);
    max_budget = std::max(max_budget, r.budget);
  }
  bool padded = false;
  for (const auto& r : rows) padded = padded || r.prompt_len != max_len;

  std::vector<Sampler> samplers;
  for (int64_t i = 0; i < B; ++i) samplers.emplace_back(o.sampling, sequence_seed(o.seed, first_index + i));

  // Prefill inputs: (B, max_len) left-padded ids, (B, max_len) mask and positions.
  at::Tensor ids = at::full({B, max_len}, filler, at::kLong);
  at::Tensor mask = at::zeros({B, max_len}, at::kLong);
  at::Tensor positions = at::zeros({B, max_len}, at::kLong);
  for (int64_t i = 0; i < B; ++i) {
    const auto& p = rows[i].out.prompt_ids;
    const int64_t pad = max_len - rows[i].prompt_len;
    ids[i].narrow(0, pad, rows[i].prompt_len).copy_(at::tensor(p, at::kLong));
    mask[i].narrow(0, pad, rows[i].prompt_len).fill_(1);
    positions[i].narrow(0, pad, rows[i].prompt_len).copy_(at::arange(rows[i].prompt_len, at::kLong));
  }
  KVCache cache = model.make_kv_cache(B, max_len + max_budget);
  ForwardOptions fwd;
  if (padded) {
    fwd.attention_mask = mask;
    fwd.position_ids = positions;
  }

  const auto t0 = Clock::now();
  at::Tensor hidden = model.hidden_states(ids, fwd, &cache);                    // (B, T, C)
  at::Tensor logits = model.logits(hidden.select(1, max_len - 1)).to(at::kCPU).contiguous();  // (B, V) fp32
  stats.prefill_seconds += seconds_since(t0);

  const auto t1 = Clock::now();
  for (int64_t step = 0; step < max_budget; ++step) {
    at::Tensor next = at::full({B, 1}, filler, at::kLong);  // (B, 1)
    bool any_active = false;
    for (int64_t i = 0; i < B; ++i) {
      Row& r = rows[i];
      if (r.finished) continue;
      const int64_t token = samplers[i].next(logits[i].data_ptr<float>(), vocab);
      r.out.ids.push_back(token);
      ++stats.new_tokens;
      const bool is_eos = std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
      if (o.stop_at_eos && is_eos) {
        r.finished = true;
        r.out.finish = FinishReason::Eos;
      } else if (!o.stop.empty() && find_stop(tokenizer.decode(to_int32(r.out.ids), true), o.stop) !=
                                        std::string::npos) {
        r.finished = true;
        r.out.finish = FinishReason::Stop;
      } else if (static_cast<int64_t>(r.out.ids.size()) >= r.budget) {
        r.finished = true;
        r.out.finish = FinishReason::Length;
      }
      if (!r.finished) {
        next[i][0] = token;
        any_active = true;
      }
    }
    if (!any_active) break;
    ForwardOptions step_fwd;
    if (padded) {
      mask = at::cat({mask, at::ones({B, 1}, at::kLong)}, 1);  // (B, P + 1)
      step_fwd.attention_mask = mask;
      at::Tensor pos = at::empty({B, 1}, at::kLong);
      for (int64_t i = 0; i < B; ++i) pos[i][0] = rows[i].prompt_len + step;
      step_fwd.position_ids = pos;
    }
    logits = model.forward(next, step_fwd, &cache).select(1, 0).to(at::kCPU).contiguous();  // (B, V)
  }
  stats.decode_seconds += seconds_since(t1);
  for (auto& r : rows) r.out.text = cut_at_stop(tokenizer.decode(to_int32(r.out.ids), true), o.stop);
}

}  // namespace

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "eos";
    case FinishReason::Stop: return "stop";
  }
  return "length";
}

std::vector<std::string> read_prompts(const std::string& path) {
  QLORA_INPUT_CHECK(fs::exists(path) && !fs::is_dir(path), "prompts file ", path, " does not exist");
  std::vector<std::string> prompts;
  bool records = false;
  for (const char* ext : {".jsonl", ".json", ".jsonl.gz", ".json.gz"}) {
    const std::string e(ext);
    records = records || (path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0);
  }
  if (records) {
    data::JsonRecordReader reader(path);
    data::JsonRecord rec;
    while (reader.next(rec)) {
      data::require_object(path, rec);
      const bool has_prompt = rec.value.contains("prompt") && !rec.value["prompt"].is_null();
      QLORA_INPUT_CHECK(has_prompt || rec.value.contains("input"), data::record_where(path, rec),
                        ": expected a string field \"prompt\" or \"input\"");
      prompts.push_back(data::string_field(path, rec, rec.value, has_prompt ? "prompt" : "input", true));
    }
  } else {
    std::string line;
    const std::string text = fs::read_text(path);
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      line = text.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!trim(line).empty()) prompts.push_back(line);
      start = end + 1;
    }
  }
  QLORA_INPUT_CHECK(!prompts.empty(), path, ": no prompts");
  return prompts;
}

nlohmann::ordered_json generation_json(const std::string& prompt, const std::string& input, const Generation& g) {
  nlohmann::ordered_json j;
  j["prompt"] = prompt;
  j["input"] = input;
  j["prompt_ids"] = g.prompt_ids;
  j["ids"] = g.ids;
  j["text"] = g.text;
  j["finish_reason"] = to_string(g.finish);
  j["new_tokens"] = g.ids.size();
  return j;
}

std::vector<int64_t> prompt_ids(const data::Tokenizer& tokenizer, const std::string& prompt) {
  const auto ids = tokenizer.encode(prompt, /*add_bos=*/true);
  return {ids.begin(), ids.end()};
}

std::vector<Generation> generate(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& o,
                                 GenerationStats* stats_out) {
  validate(o.sampling, "generation");
  QLORA_INPUT_CHECK(o.max_new_tokens >= 0, "max-new-tokens must be >= 0, got ", o.max_new_tokens);
  QLORA_INPUT_CHECK(o.batch_size >= 1, "generation batch size must be >= 1, got ", o.batch_size);
  const int64_t context = model.config().max_position_embeddings;
  at::NoGradGuard no_grad;
  EvalModeGuard eval_mode(model);

  std::vector<Generation> out;
  GenerationStats stats;
  bool warned = false;
  for (size_t begin = 0; begin < prompts.size(); begin += static_cast<size_t>(o.batch_size)) {
    const size_t end = std::min(prompts.size(), begin + static_cast<size_t>(o.batch_size));
    std::vector<Row> rows;
    for (size_t i = begin; i < end; ++i) {
      const auto& p = prompts[i];
      QLORA_INPUT_CHECK(!p.empty(), "prompt ", i + 1, " has no tokens (it needs at least BOS)");
      const int64_t len = static_cast<int64_t>(p.size());
      QLORA_INPUT_CHECK(len < context, "prompt ", i + 1, " has ", len, " tokens, which fills the model context of ",
                        context, " tokens; shorten it");
      Row r;
      r.prompt_len = len;
      r.budget = std::min(o.max_new_tokens, context - len);
      if (r.budget < o.max_new_tokens && !warned) {
        log::warn(str("prompt ", i + 1, ": ", len, " prompt tokens + max-new-tokens ", o.max_new_tokens,
                      " exceed the model context of ", context, "; generating at most ", r.budget, " tokens"));
        warned = true;
      }
      r.out.prompt_ids = p;
      r.finished = r.budget == 0;
      stats.prompt_tokens += len;
      rows.push_back(std::move(r));
    }
    generate_batch(model, tokenizer, rows, o, static_cast<int64_t>(begin), stats);
    for (auto& r : rows) out.push_back(std::move(r.out));
  }
  stats.prompts = static_cast<int64_t>(prompts.size());
  stats.seconds = stats.prefill_seconds + stats.decode_seconds;
  if (stats_out) {
    stats_out->prompts += stats.prompts;
    stats_out->prompt_tokens += stats.prompt_tokens;
    stats_out->new_tokens += stats.new_tokens;
    stats_out->prefill_seconds += stats.prefill_seconds;
    stats_out->decode_seconds += stats.decode_seconds;
    stats_out->seconds += stats.seconds;
  }
  return out;
}

ChatSession::ChatSession(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer, GenerationOptions options,
                         std::string system)
    : model_(model), tokenizer_(tokenizer), options_(std::move(options)), system_(std::move(system)) {
  if (std::find(options_.stop.begin(), options_.stop.end(), kHumanTurnMarker) == options_.stop.end()) {
    options_.stop.emplace_back(kHumanTurnMarker);
  }
  options_.batch_size = 1;
}

ChatSession::Reply ChatSession::ask(const std::string& question, GenerationStats* stats) {
  const int64_t context = model_.config().max_position_embeddings;
  Reply reply;
  std::vector<int64_t> ids;
  for (;;) {
    reply.prompt = render_chat_prompt(system_, history_, question);
    ids = prompt_ids(tokenizer_, reply.prompt);
    const int64_t len = static_cast<int64_t>(ids.size());
    if (len + options_.max_new_tokens <= context || history_.empty()) break;
    history_.erase(history_.begin());  // the oldest turn goes first; the system line stays
  }
  QLORA_INPUT_CHECK(static_cast<int64_t>(ids.size()) < context, "the question takes ", ids.size(),
                    " tokens with the chat template, which fills the model context of ", context, " tokens");
  GenerationOptions turn_options = options_;
  turn_options.seed = sequence_seed(options_.seed, turns_++);
  reply.generation = std::move(generate(model_, tokenizer_, {ids}, turn_options, stats).front());
  reply.answer = trim(reply.generation.text);
  history_.push_back({question, reply.answer});
  return reply;
}

}  // namespace qlora::eval
