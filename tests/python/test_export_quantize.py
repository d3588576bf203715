"""qlora-export against transformers (+ bitsandbytes, CPU):

  1. convert-llama2c: the llama2.c stories260K checkpoint converts to exactly the bundled models/stories260k
     (when testdata/stories260K is present), and transformers reads that directory: LlamaTokenizer (slow)
     encodes as SOURCE.md says, greedy generate() gives SOURCE.md's 40 ids, and its logits equal ours.
  2. quantize: the 4-bit directory it writes loads in transformers + bitsandbytes (tokenizer included) and
     gives the logits of our 4-bit model built from the same source (NF4 + DQ at blocksize 64 on stories260K,
     whose 172-wide MLP makes blocks span rows; FP4 at blocksize 128; a bf16 model in bf16).
     bitsandbytes' CPU dequantization is wrong when a row is shorter than the blocksize (it indexes absmax
     per row, docs/nf4-spec.md section 4: its own quantize/dequantize round trip of a (64, 64) weight at blocksize
     128 has 35-40% error), so the blocksize-128 model has rows of 128 and 256.

Bounds: 1e-4 for fp32 transformers vs our fp32 forward (same op order; measured bit-exact on the parity
models), 2e-5 for our 4-bit logits vs bnb on our exported bytes (identical dequantized weights), and for the
bf16 model 5e-2 against logits up to ~5: both sides round every op to bf16 (8-bit mantissa: one ulp at 4 is
0.03), so a different BLAS summation order may move a logit by an ulp or so (measured: 0, the same order).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402
from test_llama_parity import max_diff, our_logits  # noqa: E402

MODEL = os.path.join(tl.SOURCE_DIR, "models", "stories260k")
TESTDATA = os.environ.get("QLORA_TESTDATA", "/work/shared/testdata")
GREEDY_40 = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
             410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352]
SENTENCE = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, "
            "she saw a big, red ball. She wanted to play with it, but it was too high.")


def bnb_load(path, dtype):
    import bitsandbytes as bnb
    import transformers
    model = transformers.LlamaForCausalLM.from_pretrained(path, device_map="cpu", dtype=dtype).eval()
    n4 = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False  # bnb's training path (dequantize + F.linear), see the 4-bit test
            n4 += 1
    assert n4 == 7 * model.config.num_hidden_layers, f"{n4} Linear4bit modules"
    return model


def check_convert(args, work):
    import filecmp
    import torch
    import transformers
    bin_path = os.path.join(TESTDATA, "stories260K", "stories260K.bin")
    if os.path.exists(bin_path):
        out = os.path.join(work, "converted")
        tl.run([os.path.join(args.bin_dir, "qlora-export"), "convert-llama2c", "--checkpoint", bin_path,
                "--tokenizer", os.path.join(MODEL, "tokenizer.model"), "--out", out])
        for f in sorted(os.listdir(MODEL)):
            if f == "SOURCE.md":
                continue
            assert filecmp.cmp(os.path.join(out, f), os.path.join(MODEL, f), shallow=False), f"{f} differs"
        print("convert-llama2c: byte-identical to models/stories260k")
    else:
        print(f"convert-llama2c: {bin_path} not present, conversion not re-run")

    tok = transformers.AutoTokenizer.from_pretrained(MODEL, use_fast=False)
    assert type(tok).__name__ == "LlamaTokenizer", type(tok).__name__
    assert tok("Once upon a time").input_ids == [1, 403, 407, 261, 378], tok("Once upon a time").input_ids
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    gen = model.generate(torch.tensor([[1]]), attention_mask=torch.ones(1, 1, dtype=torch.long), max_new_tokens=40,
                         do_sample=False, pad_token_id=0)
    assert gen[0, 1:].tolist() == GREEDY_40, gen[0, 1:].tolist()
    print("transformers: LlamaTokenizer ids and greedy sample as SOURCE.md")
    ids = torch.tensor([tok(SENTENCE).input_ids])
    with torch.no_grad():
        ref = model(ids).logits
    ours = our_logits(args.bin_dir, MODEL, work, "s", {"input_ids": ids})
    max_diff("stories260k fp32 logits, ours vs transformers", ours, ref, 1e-4)


def check_quantize(args, work, src, name, qtype, dq, blocksize, dtype_name):
    import torch
    import transformers
    out = os.path.join(work, name)
    flags = ["--quant-type", qtype, "--blocksize", str(blocksize)] + (["--double-quant"] if dq else [])
    tl.run([os.path.join(args.bin_dir, "qlora-export"), "quantize", "--model", src, "--out", out] + flags)
    dtype = getattr(torch, dtype_name)
    theirs = bnb_load(out, dtype)
    qc = theirs.config.quantization_config
    assert (qc.bnb_4bit_quant_type, qc.bnb_4bit_use_double_quant) == (qtype, dq), qc
    V = theirs.config.vocab_size
    ids = torch.randint(0, V, (2, 19), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = theirs(ids).logits
    dtype_flag = ["--dtype", dtype_name]
    tol = 2e-5 if dtype_name == "float32" else 5e-2
    # our 4-bit model made from the source directory with the same settings, and our load of the export
    quant_flags = ["--quantize", qtype, "--blocksize", str(blocksize)] + (["--double-quant"] if dq else [])
    ours = our_logits(args.bin_dir, src, work, name + "_q", {"input_ids": ids}, quant_flags + dtype_flag)
    max_diff(f"{name}: transformers+bnb on our export vs our 4-bit model", ref, ours, tol)
    loaded = our_logits(args.bin_dir, out, work, name + "_l", {"input_ids": ids}, dtype_flag)
    assert torch.equal(loaded, ours), f"{name}: loading the export changes our logits"
    if os.path.exists(os.path.join(src, "tokenizer.model")):
        tok = transformers.AutoTokenizer.from_pretrained(out, use_fast=False)
        assert tok("Once upon a time").input_ids == [1, 403, 407, 261, 378]


def main():
    args = tl.parse_args()
    tl.require("torch", "transformers", "safetensors", "bitsandbytes", "sentencepiece")
    work = tl.tempdir("qlora_export_")
    check_convert(args, work)
    check_quantize(args, work, MODEL, "stories_nf4_dq", "nf4", True, 64, "float32")
    fp32_src = os.path.join(work, "tiny_fp32")
    make_tiny_llama(fp32_src, vocab=160, hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2, seed=4)
    check_quantize(args, work, fp32_src, "tiny_fp4_b128", "fp4", False, 128, "float32")
    bf16_src = os.path.join(work, "tiny_bf16")
    make_tiny_llama(bf16_src, vocab=160, hidden=128, intermediate=320, layers=2, heads=4, kv_heads=2,
                    dtype="bfloat16", seed=5)
    check_quantize(args, work, bf16_src, "tiny_bf16_nf4_dq", "nf4", True, 64, "bfloat16")


if __name__ == "__main__":
    tl.main(main)
