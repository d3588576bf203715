#include "qlora/data/tokenizer.h"

#include <sentencepiece_processor.h>

#include <array>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"

namespace qlora::data {
namespace {

// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's word-boundary marker ("▁"), in UTF-8.
constexpr const char kSpiece[] = "\xE2\x96\x81";
constexpr size_t kSpieceLen = 3;

}  // namespace

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string path;
  int32_t unk = 0, bos = 1, eos = 2, pad = -1, vocab = 0;
  // LlamaTokenizer's special tokens (all_special_tokens): the texts of unk, bos, eos. transformers adds
  // them as AddedToken(lstrip=False, rstrip=False, normalized=False), so the text around them is kept.
  std::string unk_text, bos_text, eos_text;
  std::array<const std::string*, 3> specials{};
  std::array<int32_t, 3> special_ids{};

  bool is_special_id(int32_t id) const { return id == unk || id == bos || id == eos; }
  bool is_special_text(const std::string& piece) const {
    return piece == unk_text || piece == bos_text || piece == eos_text;
  }

  // transformers' Trie.split on the special-token texts: chunks in order, each a special id (>= 0) with
  // empty text or a plain text chunk (id -1). The three texts are not prefixes of one another, so the
  // leftmost match is the only match at its position.
  template <class Fn>
  void split_on_specials(const std::string& text, Fn&& emit) const {
    size_t start = 0, pos = 0;
    while (pos < text.size()) {
      int matched = -1;
      if (text[pos] == '<') {
        for (int k = 0; k < 3; ++k) {
          const std::string& s = *specials[k];
          if (!s.empty() && text.compare(pos, s.size(), s) == 0) {
            matched = k;
            break;
          }
        }
      }
      if (matched < 0) {
        ++pos;
        continue;
      }
      if (pos > start) emit(-1, text.substr(start, pos - start));
      emit(special_ids[matched], std::string());
      pos += specials[matched]->size();
      start = pos;
    }
    if (start < text.size()) emit(-1, text.substr(start));
  }

  std::vector<std::string> sp_pieces(const std::string& chunk) const {
    std::vector<std::string> pieces;
    const auto status = sp.Encode(chunk, &pieces);
    QLORA_CHECK(status.ok(), "sentencepiece encode failed: ", status.ToString());
    return pieces;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::string file = path;
  if (fs::is_dir(path)) file = fs::join(path, "tokenizer.model");
  QLORA_INPUT_CHECK(fs::exists(file), file, ": tokenizer not found (expected a SentencePiece model file, or a model "
                    "directory holding tokenizer.model)");
  // Read the bytes ourselves so that an unreadable file and a corrupt one get distinct messages.
  const std::string bytes = fs::read_text(file);
  auto impl = std::make_unique<Impl>();
  const auto status = impl->sp.LoadFromSerializedProto(bytes);
  QLORA_INPUT_CHECK(status.ok(), file, ": not a valid SentencePiece model (", status.ToString(), ")");
  impl->path = file;
  impl->vocab = impl->sp.GetPieceSize();
  impl->unk = impl->sp.unk_id();
  impl->bos = impl->sp.bos_id();
  impl->eos = impl->sp.eos_id();
  impl->pad = impl->sp.pad_id();
  QLORA_INPUT_CHECK(impl->vocab > 0 && impl->bos >= 0 && impl->eos >= 0 && impl->unk >= 0, file,
                    ": SentencePiece model lacks a BOS, EOS or UNK piece (LLaMA tokenizers have all three)");
  impl->unk_text = impl->sp.IdToPiece(impl->unk);
  impl->bos_text = impl->sp.IdToPiece(impl->bos);
  impl->eos_text = impl->sp.IdToPiece(impl->eos);
  impl->specials = {&impl->unk_text, &impl->bos_text, &impl->eos_text};
  impl->special_ids = {impl->unk, impl->bos, impl->eos};
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos) const {
  std::vector<int32_t> ids;
  if (add_bos) ids.push_back(impl_->bos);
  impl_->split_on_specials(text, [&](int32_t special, const std::string& chunk) {
    if (special >= 0) {
      ids.push_back(special);
      return;
    }
    // LlamaTokenizer maps the pieces back with piece_to_id (a piece outside the vocabulary gives UNK).
    for (const auto& piece : impl_->sp_pieces(chunk)) ids.push_back(impl_->sp.PieceToId(piece));
  });
  if (add_eos) ids.push_back(impl_->eos);
  return ids;
}

std::vector<std::string> Tokenizer::encode_pieces(const std::string& text) const {
  std::vector<std::string> out;
  impl_->split_on_specials(text, [&](int32_t special, const std::string& chunk) {
    if (special >= 0) {
      out.push_back(impl_->sp.IdToPiece(special));
      return;
    }
    for (auto& piece : impl_->sp_pieces(chunk)) out.push_back(std::move(piece));
  });
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    QLORA_INPUT_CHECK(id >= 0 && id < impl_->vocab, "token id ", id, " at position ", i,
                      " is outside the vocabulary [0, ", impl_->vocab, ") of ", impl_->path);
    if (skip_special_tokens && impl_->is_special_id(id)) continue;
    tokens.push_back(impl_->sp.IdToPiece(id));
  }
  if (tokens.empty()) return "";
  // LlamaTokenizer.convert_tokens_to_string (add_prefix_space=True, legacy=True), step for step.
  if (tokens[0].compare(0, kSpieceLen, kSpiece) == 0) tokens[0].erase(0, kSpieceLen);
  std::string out;
  std::vector<std::string> run;  // pieces since the last special token, decoded together by SentencePiece
  bool prev_is_special = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (impl_->is_special_text(tokens[i])) {
      if (!prev_is_special && i != 0) out += ' ';
      out += impl_->sp.DecodePieces(run);
      out += tokens[i];
      run.clear();
      prev_is_special = true;
    } else {
      if (prev_is_special && i == 1 && tokens[i].compare(0, kSpieceLen, kSpiece) != 0) out += ' ';
      run.push_back(std::move(tokens[i]));
      prev_is_special = false;
    }
  }
  out += impl_->sp.DecodePieces(run);
  return out;
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::unk_id() const { return impl_->unk; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
int32_t Tokenizer::vocab_size() const { return impl_->vocab; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_text; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_text; }
const std::string& Tokenizer::path() const { return impl_->path; }

std::string Tokenizer::id_to_piece(int32_t id) const {
  QLORA_INPUT_CHECK(id >= 0 && id < impl_->vocab, "token id ", id, " is outside the vocabulary [0, ",
                    impl_->vocab, ") of ", impl_->path);
  return impl_->sp.IdToPiece(id);
}

}  // namespace qlora::data
