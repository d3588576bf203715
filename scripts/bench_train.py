#!/usr/bin/env python3
"""QLoRA training throughput: qlora-cpp against transformers + peft + bitsandbytes, same machine, same run.

Both sides train the same LLaMA shape with random weights (timing depends on shapes only): NF4 + double
quantization of the 7 projections (bitsandbytes' CPU backend on the Python side), LoRA r 64 / alpha 16 /
dropout 0.1 on all of them, gradient checkpointing, AdamW, max grad norm 0.3, fp32 compute on the CPU (bf16 on a
GPU), one sequence of --seq-len random tokens per step. The first --warmup steps are not timed.
Prints tokens/s of each and the ratio (ours / reference), and writes --json if asked.

    ~/.cache/qlora/venv/bin/python scripts/bench_train.py [--bin-dir build/bin] [--shape small] [--seq-len 256]
        [--steps 6] [--warmup 2] [--threads 1] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SHAPES = {  # as qlora-bench train (src/bench/train_bench.cpp)
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "small": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8),
}


def ours(args):
    out = os.path.join(tempfile.mkdtemp(prefix="qlora_bench_train_"), "ours.json")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cmd = [os.path.join(args.bin_dir, "qlora-bench"), "train", "--shape", args.shape, "--device", args.device,
           "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup), "--json", out]
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
    return json.load(open(out))


def reference(args):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = "cuda" if args.device == "cuda" else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cfg = transformers.LlamaConfig(vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-6,
                                   num_key_value_heads=SHAPES[args.shape]["num_attention_heads"], **SHAPES[args.shape])
    d = tempfile.mkdtemp(prefix="qlora_bench_train_hf_")
    transformers.LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
    q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=dtype)
    t0 = time.perf_counter()
    model = transformers.LlamaForCausalLM.from_pretrained(d, quantization_config=q, torch_dtype=dtype,
                                                          device_map={"": device})
    load_seconds = time.perf_counter() - t0
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lora = LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    ids = torch.randint(0, 32000, (1, args.seq_len), generator=torch.Generator().manual_seed(1)).to(device)
    timed = 0.0
    losses = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            timed += dt
        print(f"reference step {step + 1}/{args.steps}: loss {losses[-1]:.4f}, {dt:.3f} s", file=sys.stderr)
    tokens = (args.steps - args.warmup) * args.seq_len
    return {"tokens_per_second": tokens / timed, "load_seconds": load_seconds, "losses": losses,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
    p.add_argument("--shape", default="small", choices=sorted(SHAPES))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    a = ours(args)
    b = reference(args)
    ratio = a["tokens_per_second"] / b["tokens_per_second"]
    print(f"shape {args.shape}, seq {args.seq_len}, {args.threads} thread(s), {args.device}")
    print(f"qlora-cpp                          {a['tokens_per_second']:10.1f} tokens/s")
    print(f"transformers+peft+bitsandbytes     {b['tokens_per_second']:10.1f} tokens/s")
    print(f"ratio (ours / reference)           {ratio:10.2f}x")
    if args.json:
        json.dump({"ours": a, "reference": b, "ratio": ratio, "args": vars(args)}, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
