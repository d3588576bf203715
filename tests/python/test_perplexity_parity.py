"""Perplexity parity: `qlora-eval --perplexity FILE --json` against transformers' LlamaForCausalLM (fp32, CPU)
on the bundled stories260K model.

The reference (written here) follows the documented windowing of include/qlora/eval/perplexity.h, in the
shape of transformers' perplexity guide: each document is [BOS] + encode(text) (slow LlamaTokenizer, legacy);
windows of W tokens start every S tokens; a window scores the targets after its first token that no earlier
window scored; NLL = -log_softmax(logits)[target] summed over every scored target of every document, divided
by their count. Documents: texts from the bundled demo data (data/demo/alpaca_demo.jsonl, "output" fields),
short ones and one long one spanning several 512-token windows, as JSONL with a "text" field and as a plain
text file. Cases: the default window (the model's 512, stride 511), and W 100 / S 37 with batch 3; and the
model with a PEFT LoRA adapter (r 8, alpha 16, all seven projections, B drawn non-zero so that it changes the
output) saved by peft and loaded with --adapter, against peft's PeftModel.

Tolerance 1e-5 on nll_per_token (the brief's): both sides use fp32 logits with the same op order up to BLAS
summation order (~1e-6 per log-prob, averaging over ~2k tokens); sums are in double on our side and in
float64 here.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

MODEL = os.path.join(tl.SOURCE_DIR, "models", "stories260k")
DEMO = os.path.join(tl.SOURCE_DIR, "data", "demo", "alpaca_demo.jsonl")
TOL = 1e-5


def documents():
    with open(DEMO, encoding="utf-8") as f:
        outputs = [json.loads(line)["output"] for line in f if line.strip()]
    return outputs[:6] + ["\n\n".join(outputs[6:46])]


def reference_nll(model, tok, texts, window, stride):
    import torch
    nll, count = 0.0, 0
    for text in texts:
        ids = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
        n, scored_until, begin = len(ids), 1, 0
        while scored_until < n:
            end = min(begin + window, n)
            first = max(begin + 1, scored_until)
            if first < end:
                with torch.no_grad():
                    logits = model(torch.tensor([ids[begin:end]])).logits[0]
                logprobs = torch.log_softmax(logits.float(), -1).double()
                for t in range(first, end):
                    nll -= logprobs[t - 1 - begin, ids[t]].item()
                count += end - first
            scored_until = max(scored_until, end)
            begin += stride
    return nll / count, count


def make_adapter(model, out):
    """A peft LoRA adapter on every projection with non-zero B (a fresh adapter would change nothing)."""
    import peft
    import torch
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    lora = peft.get_peft_model(model, config)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    lora.save_pretrained(out, safe_serialization=True)
    return lora.eval()


def ours(bin_dir, work, path, label, extra=()):
    out = os.path.join(work, f"{label}.json")
    tl.run([os.path.join(bin_dir, "qlora-eval"), "--model", MODEL, "--perplexity", path, "--json", out, *extra],
           env=dict(os.environ, OMP_NUM_THREADS="1"))
    with open(out) as f:
        return json.load(f)


def main():
    args = tl.parse_args()
    torch, transformers, _ = tl.require("torch", "transformers", "peft")
    torch.set_num_threads(1)  # a 260K-parameter model; threads only spin on a loaded machine
    tok = transformers.LlamaTokenizer(os.path.join(MODEL, "tokenizer.model"), legacy=True)
    model = transformers.LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    context = model.config.max_position_embeddings
    texts = documents()
    work = tl.tempdir("qlora_ppl_parity_")
    jsonl = os.path.join(work, "docs.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    plain = os.path.join(work, "doc.txt")
    with open(plain, "w", encoding="utf-8") as f:
        f.write(texts[-1])
    long_tokens = 1 + len(tok.encode(texts[-1], add_special_tokens=False))
    assert long_tokens > 2 * context, f"the long document has only {long_tokens} tokens"

    cases = [("jsonl_default", jsonl, texts, context, context - 1, ()),
             ("jsonl_w100_s37_b3", jsonl, texts, 100, 37, ("--max-length", "100", "--stride", "37",
                                                          "--batch-size", "3")),
             ("plain_default", plain, [texts[-1]], context, context - 1, ())]
    for label, path, docs, window, stride, extra in cases:
        ref, count = reference_nll(model, tok, docs, window, stride)
        got = ours(args.bin_dir, work, path, label, extra)
        diff = abs(got["nll_per_token"] - ref)
        print(f"  {label}: ours {got['nll_per_token']:.8f} transformers {ref:.8f} |diff| {diff:.2e} over "
              f"{got['tokens']} tokens ({got['windows']} windows), {got['tokens_per_second']:.0f} tokens/s")
        assert got["tokens"] == count, f"{label}: {got['tokens']} scored tokens, reference {count}"
        assert diff <= TOL, f"{label}: nll_per_token differs by {diff} > {TOL}"
        assert abs(got["perplexity"] - math.exp(got["nll_per_token"])) < 1e-9 * got["perplexity"]

    # With a LoRA adapter written by peft.
    adapter_dir = os.path.join(work, "adapter")
    base_nll, _ = reference_nll(model, tok, texts, context, context - 1)
    lora = make_adapter(model, adapter_dir)
    ref, count = reference_nll(lora, tok, texts, context, context - 1)
    got = ours(args.bin_dir, work, jsonl, "adapter", ("--adapter", adapter_dir))
    diff = abs(got["nll_per_token"] - ref)
    print(f"  adapter: ours {got['nll_per_token']:.8f} peft {ref:.8f} |diff| {diff:.2e} (base model {base_nll:.8f})")
    assert abs(ref - base_nll) > 1e-3, "the adapter does not change the model; the case would prove nothing"
    assert got["tokens"] == count
    assert diff <= TOL, f"adapter: nll_per_token differs by {diff} > {TOL}"


if __name__ == "__main__":
    tl.main(main)
