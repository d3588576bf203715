#!/usr/bin/env python3
"""Make a tiny random LLaMA checkpoint with transformers (the fixture generator of the model parity tests).

    make_tiny_llama.py --out DIR [--vocab 256] [--hidden 64] [--intermediate 176] [--layers 2] [--heads 4]
                       [--kv-heads 4] [--head-dim N] [--tie] [--rope-scaling JSON] [--rope-theta 10000]
                       [--max-pos 256] [--dtype float32|float16|bfloat16] [--shard-size 200KB] [--seed 0]

transformers builds it (LlamaConfig -> LlamaForCausalLM with its own random init) and writes it with
save_pretrained(safe_serialization=True), so the files are exactly what transformers produces. Weights are
drawn with a larger std than transformers' 0.02 (--init-std, default 0.1) and the RMSNorm weights are drawn
from U(0.5, 1.5) instead of ones: with tiny weights every logit is near zero and a wrong RoPE or a missing
norm weight would hide under any tolerance.
"""
import argparse
import json
import sys


def make_tiny_llama(out, vocab=256, hidden=64, intermediate=176, layers=2, heads=4, kv_heads=None, head_dim=None,
                    tie=False, rope_scaling=None, rope_theta=10000.0, max_pos=256, dtype="float32",
                    shard_size=None, seed=0, init_std=0.1):
    import torch
    import transformers

    torch.manual_seed(seed)
    kwargs = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads or heads, max_position_embeddings=max_pos,
                  rms_norm_eps=1e-5, rope_theta=rope_theta, rope_scaling=rope_scaling, tie_word_embeddings=tie,
                  initializer_range=init_std, bos_token_id=1, eos_token_id=2)
    if head_dim is not None:
        kwargs["head_dim"] = head_dim
    config = transformers.LlamaConfig(**kwargs)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model = model.to(getattr(torch, dtype))
    save_kwargs = dict(safe_serialization=True)
    if shard_size:
        save_kwargs["max_shard_size"] = shard_size
    model.save_pretrained(out, **save_kwargs)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--intermediate", type=int, default=176)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=None)
    p.add_argument("--tie", action="store_true")
    p.add_argument("--rope-scaling", type=json.loads, default=None, help='e.g. \'{"rope_type": "linear", "factor": 2}\'')
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--max-pos", type=int, default=256)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--shard-size", default=None, help="e.g. 200KB: several model-0000N-of-0000M.safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-std", type=float, default=0.1)
    a = p.parse_args()
    make_tiny_llama(a.out, a.vocab, a.hidden, a.intermediate, a.layers, a.heads, a.kv_heads, a.head_dim, a.tie,
                    a.rope_scaling, a.rope_theta, a.max_pos, a.dtype, a.shard_size, a.seed, a.init_std)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
