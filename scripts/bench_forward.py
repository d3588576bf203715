#!/usr/bin/env python3
"""Forward-pass speed, qlora-cpp against transformers: the same model, the same token windows, the same CPU,
fp32, the same thread count, measured in the same run.

    bench_forward.py [--bin-dir build/bin] [--threads 2] [--window 256] [--batch 4] [--docs 16] [--repeats 3]
                     [--models stories260k,random512] [--out bench_forward.json]

Models:
  stories260k  the bundled models/stories260k (dim 64, 5 layers, vocab 512)
  random512    a random LLaMA made by scripts/make_tiny_llama.py: hidden 512, intermediate 1376, 8 layers,
               8 heads, vocab 32000 (untied lm_head), max_position 1024, fp32 (about 58M parameters), with
               the bundled tokenizer.model copied beside it (its 512 ids are valid ids of the 32000 vocabulary)
Inputs: `--docs` documents of the bundled demo data (data/demo/alpaca_demo.jsonl, "output" fields, several
joined per document so that each spans a few windows), written as JSONL {"text"}.

Ours: `qlora-eval --perplexity docs.jsonl --max-length W --batch-size B --json` in a fresh process with
OMP_NUM_THREADS = --threads; its tokens_per_second = tokens fed through the model / time spent in the
model's forward (tokenization, loading and log-softmax excluded).
Transformers: LlamaForCausalLM (fp32, eager attention defaults of 4.57: sdpa), torch.set_num_threads(--threads),
the identical windows (BOS + encode(text), windows of W tokens every W - 1, batches of B right-padded with id 0,
as include/qlora/eval/perplexity.h plans them), `model(input_ids).logits` timed per batch under no_grad.
Every pass of either side runs in a fresh process (so both pay their first-call setup the same way, and
model loading is excluded on both); the passes alternate ours / transformers, so that load from other
processes on a shared machine hits both alike; each side reports its best of --repeats passes. The ratio is
ours / transformers.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def plan_windows(n, window, stride):
    """perplexity.h's windows of one document of n tokens: (begin, end) pairs."""
    out, scored_until, begin = [], 1, 0
    while scored_until < n:
        end = min(begin + window, n)
        if max(begin + 1, scored_until) < end:
            out.append((begin, end))
        scored_until = max(scored_until, end)
        begin += stride
    return out


def make_docs(path, count):
    with open(os.path.join(ROOT, "data", "demo", "alpaca_demo.jsonl"), encoding="utf-8") as f:
        outputs = [json.loads(line)["output"] for line in f if line.strip()]
    per_doc = max(1, len(outputs) // count)
    docs = ["\n\n".join(outputs[i * per_doc:(i + 1) * per_doc]) for i in range(count)]
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")


def make_random_model(out):
    from make_tiny_llama import make_tiny_llama
    if not os.path.exists(os.path.join(out, "config.json")):
        make_tiny_llama(out, vocab=32000, hidden=512, intermediate=1376, layers=8, heads=8, kv_heads=8,
                        max_pos=1024, seed=0, init_std=0.02)
    shutil.copy(os.path.join(ROOT, "models", "stories260k", "tokenizer.model"), os.path.join(out, "tokenizer.model"))
    return out


def pass_ours(bin_dir, model_dir, docs_path, window, batch, threads, out):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([os.path.join(bin_dir, "qlora-eval"), "--model", model_dir, "--perplexity", docs_path,
                    "--max-length", str(window), "--batch-size", str(batch), "--device", "cpu", "--dtype", "fp32",
                    "--json", out], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def pass_transformers(model_dir, docs_path, window, batch, threads, out):
    """One cold pass in a fresh process (this script with --transformers-pass)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--transformers-pass", model_dir, "--docs-file",
                    docs_path, "--window", str(window), "--batch", str(batch), "--threads", str(threads), "--out",
                    out], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def transformers_pass_main(model_dir, docs_path, window, batch, threads, out):
    import torch
    import transformers
    torch.set_num_threads(threads)
    with open(docs_path, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f if line.strip()]
    tok = transformers.LlamaTokenizer(os.path.join(model_dir, "tokenizer.model"), legacy=True)
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    windows = []
    for text in docs:
        ids = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
        windows += [ids[b:e] for b, e in plan_windows(len(ids), window, window - 1)]
    seconds, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            rows = windows[i:i + batch]
            width = max(len(r) for r in rows)
            x = torch.tensor([r + [0] * (width - len(r)) for r in rows])  # (B, T) right-padded
            t0 = time.perf_counter()
            model(x).logits
            seconds += time.perf_counter() - t0
            tokens += sum(len(r) for r in rows)
    with open(out, "w") as f:
        json.dump({"tokens_per_second": tokens / seconds, "forward_tokens": tokens, "forward_seconds": seconds,
                   "windows": len(windows)}, f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="stories260k,random512")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "qlora_bench_forward"))
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--transformers-pass", default=None, help=argparse.SUPPRESS)  # internal: one cold pass
    p.add_argument("--docs-file", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.transformers_pass:
        transformers_pass_main(a.transformers_pass, a.docs_file, a.window, a.batch, a.threads, a.out)
        return 0
    os.makedirs(a.work, exist_ok=True)
    docs_path = os.path.join(a.work, "docs.jsonl")
    make_docs(docs_path, a.docs)
    model_dirs = {"stories260k": os.path.join(ROOT, "models", "stories260k")}
    results = []
    for name in a.models.split(","):
        if name == "random512":
            model_dirs[name] = make_random_model(os.path.join(a.work, "random512"))
        model_dir = model_dirs[name]
        ours = ref = None
        for r in range(a.repeats):
            o = pass_ours(a.bin_dir, model_dir, docs_path, a.window, a.batch, a.threads,
                          os.path.join(a.work, f"ours_{name}_{r}.json"))
            t = pass_transformers(model_dir, docs_path, a.window, a.batch, a.threads,
                                  os.path.join(a.work, f"transformers_{name}_{r}.json"))
            ours = o if ours is None or o["tokens_per_second"] > ours["tokens_per_second"] else ours
            ref = t if ref is None or t["tokens_per_second"] > ref["tokens_per_second"] else ref
        assert ours["forward_tokens"] == ref["forward_tokens"], (ours, ref)
        ratio = ours["tokens_per_second"] / ref["tokens_per_second"]
        results.append({"model": name, "threads": a.threads, "window": a.window, "batch": a.batch,
                        "windows": ref["windows"], "forward_tokens": ref["forward_tokens"],
                        "ours_tokens_per_second": ours["tokens_per_second"],
                        "transformers_tokens_per_second": ref["tokens_per_second"], "ratio": ratio})
        print(f"{name:12s} threads {a.threads} window {a.window} batch {a.batch}: {ref['forward_tokens']} tokens in "
              f"{ref['windows']} windows | qlora-cpp {ours['tokens_per_second']:10.0f} tok/s | transformers "
              f"{ref['tokens_per_second']:10.0f} tok/s | ratio {ratio:.2f}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
