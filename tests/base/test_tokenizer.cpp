// Tokenizer: fixed values of tok512.model. Expected ids and strings come from transformers' slow
// LlamaTokenizer(tok512.model, legacy=True) (4.57.3) and from tests/data/stories260K/SOURCE.md;
// tests/python/test_tokenizer_parity.py compares thousands more texts live.
#include <filesystem>

#include "qlora/data/tokenizer.h"
#include "test_data_common.h"

namespace qlora::data {
namespace {

using testing::expect_input_error;
using testing::TempDir;
using testing::tokenizer_path;
using Ids = std::vector<int32_t>;

TEST(Tokenizer, SpecialIdsAndVocab) {
  const auto tok = Tokenizer::load(tokenizer_path());
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), -1);  // tok512 has no pad piece
  EXPECT_EQ(tok.bos_token(), "<s>");
  EXPECT_EQ(tok.eos_token(), "</s>");
  EXPECT_EQ(tok.id_to_piece(3), "<0x00>");    // byte pieces 3..258
  EXPECT_EQ(tok.id_to_piece(258), "<0xFF>");
  EXPECT_EQ(tok.id_to_piece(346), "\xE2\x96\x81He");  // "▁He"
}

TEST(Tokenizer, EncodeKnownTexts) {
  const auto tok = Tokenizer::load(tokenizer_path());
  EXPECT_EQ(tok.encode("Once upon a time"), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(tok.encode("Hello world!"), (Ids{346, 306, 414, 263, 304, 341, 443}));
  EXPECT_EQ(tok.encode("Hello world!", true, true), (Ids{1, 346, 306, 414, 263, 304, 341, 443, 2}));
  EXPECT_EQ(tok.encode(""), Ids{});
  EXPECT_EQ(tok.encode(" "), Ids{});  // tok512 removes extra whitespace (its normalizer spec)
  EXPECT_EQ(tok.encode(" foo"), (Ids{272, 347}));
}

TEST(Tokenizer, LiteralSpecialTokensSplitOff) {
  // The reference collator writes BOS/EOS in as text: "<s>" must become id 1, and the text after it gets
  // its own dummy prefix (legacy mode): "<s>Below" -> <s> ▁B e l ow.
  const auto tok = Tokenizer::load(tokenizer_path());
  EXPECT_EQ(tok.encode("<s>Below"), (Ids{1, 368, 411, 421, 327}));
  EXPECT_EQ(tok.encode("Hello <s>."), (Ids{346, 306, 414, 1, 410, 426}));
  EXPECT_EQ(tok.encode("abc</s>"), (Ids{261, 430, 429, 2}));
}

TEST(Tokenizer, ByteFallbackRoundTrip) {
  const auto tok = Tokenizer::load(tokenizer_path());
  const std::string text = "\xE4\xBD\xA0\xE5\xA5\xBD \xD0\xBC\xD0\xB8\xD1\x80";  // "你好 мир"
  const Ids ids = tok.encode(text);
  EXPECT_EQ(ids, (Ids{410, 231, 192, 163, 232, 168, 192, 410, 211, 191, 211, 187, 212, 131}));
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(Tokenizer, DecodeLikeLlamaTokenizer) {
  const auto tok = Tokenizer::load(tokenizer_path());
  // hf.decode(...) values: the first piece loses its "▁", a special token gets a space before it unless it
  // follows another special or is first, and the piece right after a leading special keeps a space.
  EXPECT_EQ(tok.decode({346, 306, 414, 263, 304, 341, 443}), "Hello world!");
  EXPECT_EQ(tok.decode({1, 346, 306, 414, 263, 304, 341, 443, 2}), "<s> Hello world!</s>");
  EXPECT_EQ(tok.decode({1, 346, 306, 414, 263, 304, 341, 443, 2}, true), "Hello world!");
  EXPECT_EQ(tok.decode({346, 306, 414, 1, 410, 426}), " Hello<s>.");
  EXPECT_EQ(tok.decode({1, 346, 306, 414, 1, 410, 426, 2}), "<s> Hello<s> .</s>");
  EXPECT_EQ(tok.decode({1, 346, 306, 414, 1, 410, 426, 2}, true), "Hello .");
  EXPECT_EQ(tok.decode({1, 368, 411, 421, 327}), "<s>Below");
  EXPECT_EQ(tok.decode({}), "");
}

TEST(Tokenizer, LoadsFromModelDirectory) {
  TempDir dir;
  std::filesystem::copy_file(tokenizer_path(), dir.path() + "/tokenizer.model");
  const auto tok = Tokenizer::load(dir.path());
  EXPECT_EQ(tok.encode("Once upon a time"), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(tok.path(), dir.path() + "/tokenizer.model");
}

TEST(Tokenizer, MissingOrCorruptFileIsInputError) {
  TempDir dir;
  expect_input_error([&] { Tokenizer::load(dir.path() + "/nope.model"); }, {dir.path() + "/nope.model", "not found"});
  expect_input_error([&] { Tokenizer::load(dir.path()); }, {dir.path() + "/tokenizer.model", "not found"});
  const std::string bad = dir.file("bad.model", "this is not a protobuf \x01\x02\x03");
  expect_input_error([&] { Tokenizer::load(bad); }, {bad, "not a valid SentencePiece model"});
  const std::string empty = dir.file("empty.model", "");
  expect_input_error([&] { Tokenizer::load(empty); }, {empty});
}

TEST(Tokenizer, DecodeRejectsIdsOutsideVocab) {
  const auto tok = Tokenizer::load(tokenizer_path());
  expect_input_error([&] { tok.decode({1, 512}); }, {"token id 512", "position 1"});
  expect_input_error([&] { tok.decode({-1}); }, {"token id -1"});
}

}  // namespace
}  // namespace qlora::data
