// llama2.c checkpoints -> Hugging Face LLaMA model directories.
//
// The llama2.c "legacy" (version 0) export that run.c reads (tests/data/stories260K/SOURCE.md): 7 little-endian
// int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an
// untied classifier at the end), then float32 row-major [out][in] tensors: tok_embeddings (V, C), rms_att
// (L, C), wq (L, C, C), wk (L, Hkv*D, C), wv (L, Hkv*D, C), wo (L, C, C), rms_ffn (L, C), w1 (L, F, C),
// w2 (L, C, F), w3 (L, F, C), rms_final (C), freq_cis_real/imag (seq_len, D/2) each, [wcls (V, C)].
// llama2.c rotates interleaved pairs (2i, 2i+1) while transformers rotates halves, so q and k rows are
// permuted per head as transformers' convert_llama_weights_to_hf does:
//   permute(W, h) = W.reshape(h, rows/h/2, 2, cols).transpose(1, 2).reshape(rows, cols).
#pragma once
#include <cstdint>
#include <string>

namespace qlora {

struct Llama2cConvertOptions {
  std::string checkpoint;   // llama2.c .bin
  std::string tokenizer;    // the SentencePiece .model it was trained with (e.g. tok512.model)
  std::string out_dir;      // written: config.json, generation_config.json, model.safetensors (fp32),
                            // tokenizer.model, tokenizer_config.json, special_tokens_map.json
  double rms_norm_eps = 1e-5;     // llama2.c model.py default
  double rope_theta = 10000.0;    // llama2.c run.c
};

// Converts; a truncated or malformed checkpoint, a missing tokenizer or a tokenizer whose vocabulary size
// differs from the checkpoint's is an Input error naming the file.
void convert_llama2c(const Llama2cConvertOptions& options);

// The tokenizer files transformers' LlamaTokenizer (slow, legacy) reads next to tokenizer.model:
// tokenizer_config.json and special_tokens_map.json, with the special pieces of `tokenizer_model` and
// model_max_length `max_length`. Copies tokenizer.model into `out_dir` too.
void write_llama_tokenizer_files(const std::string& tokenizer_model, const std::string& out_dir, int64_t max_length);

}  // namespace qlora
