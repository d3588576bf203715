// SentencePiece tokenizer that encodes and decodes exactly as transformers' slow `LlamaTokenizer` in its
// legacy mode (the QLoRA reference loads it with use_fast=False; legacy is the default for LLaMA):
//   encode: the text is first split on the special-token strings (<unk>, <s>, </s>: a literal "<s>" in the
//           text becomes the BOS id, which is how the reference collator puts BOS in), then every other chunk
//           is encoded by SentencePiece on its own, so each chunk gets its own dummy-prefix "▁".
//   decode: LlamaTokenizer.convert_tokens_to_string: the first piece loses one leading "▁", special tokens
//           are written as their text with a space before them (legacy), the runs between them are decoded
//           by SentencePiece (byte-fallback pieces <0xNN> are reassembled to UTF-8 there).
// Torch-free; libsentencepiece stays behind a pimpl.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qlora::data {

class Tokenizer {
 public:
  // PATH is a SentencePiece model file, or a model directory holding tokenizer.model.
  // A missing or unreadable/corrupt file is an Input error naming the path.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // LlamaTokenizer.encode(text, add_special_tokens=False) with BOS / EOS ids added when asked.
  std::vector<int32_t> encode(const std::string& text, bool add_bos = false, bool add_eos = false) const;
  // LlamaTokenizer.decode(ids, skip_special_tokens). Ids outside [0, vocab_size) are an Input error.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // The SentencePiece pieces of `text` with the same special-token splitting as encode (for debugging).
  std::vector<std::string> encode_pieces(const std::string& text) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  int32_t pad_id() const;  // the model's pad piece, or -1 when it has none (LLaMA, tok512)
  int32_t vocab_size() const;
  std::string id_to_piece(int32_t id) const;
  const std::string& bos_token() const;  // "<s>": the piece text of bos_id
  const std::string& eos_token() const;  // "</s>"
  const std::string& path() const;       // the model file that was loaded

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qlora::data
