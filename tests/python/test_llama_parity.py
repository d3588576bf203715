"""Logits of our fp32 CPU forward vs transformers' LlamaForCausalLM (fp32, CPU) on random tiny models.

Each model is made by scripts/make_tiny_llama.py (transformers' own init + save_pretrained), so the files are
what transformers writes. Shapes cover multi-head, GQA 4:1, tied embeddings, llama3/linear/dynamic RoPE
scaling, odd sizes (hidden 72, intermediate 200, vocab 211), an explicit head_dim, an fp16 checkpoint and a
bf16 checkpoint in shards (both read into fp32 on both sides). Inputs: a plain batch, a right-padded and a
left-padded batch (attention_mask; compared at the real tokens only), and a packed row (segment_ids) compared
with transformers on the packed row (restarting position_ids) and with each sequence run alone.

Tolerance 1e-4 max abs: both sides compute in fp32 with the same op order up to BLAS/SDPA summation order,
whose differences are ~1e-6 on logits of magnitude ~1-10 (a wrong RoPE, mask or norm shifts them by > 1e-2).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402

TOL = 1e-4

CASES = {
    "mha": dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=4),
    "gqa4to1": dict(hidden=64, intermediate=176, layers=2, heads=8, kv_heads=2),
    "tied": dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2, tie=True),
    "llama3_rope": dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=1, rope_theta=500000.0, max_pos=512,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "linear_rope": dict(hidden=64, intermediate=176, layers=2, heads=4, rope_scaling={"type": "linear", "factor": 2.0}),
    "dynamic_rope": dict(hidden=64, intermediate=176, layers=2, heads=4, max_pos=32,
                         rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
    "odd_sizes": dict(vocab=211, hidden=72, intermediate=200, layers=3, heads=6, kv_heads=3),
    "head_dim": dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2, head_dim=24),
    "fp16": dict(hidden=64, intermediate=176, layers=2, heads=4, kv_heads=2, dtype="float16"),
    "bf16_sharded": dict(hidden=64, intermediate=176, layers=3, heads=4, kv_heads=2, dtype="bfloat16",
                         shard_size="40KB"),
}
SEQ_LEN = {"llama3_rope": 80, "dynamic_rope": 48}  # long enough to reach the scaled regime


def our_logits(bin_dir, model_dir, work, tag, inputs, extra=()):
    """Logits (B, T, V) of our CPU forward via llama_tool; `inputs` maps input_ids and the optional
    attention_mask / segment_ids / position_ids to (B, T) int64 tensors. Also used by the 4-bit and export tests."""
    from safetensors.torch import load_file, save_file
    path_in = os.path.join(work, f"{tag}.in.safetensors")
    path_out = os.path.join(work, f"{tag}.out.safetensors")
    save_file({k: v.contiguous() for k, v in inputs.items()}, path_in)
    tl.run([os.path.join(bin_dir, "llama_tool"), "logits", "--model", model_dir, "--inputs", path_in,
            "--out", path_out, *extra])
    return load_file(path_out)["logits"]


def max_diff(label, ours, ref, tol):
    """Asserts max |ours - ref| <= tol and prints it with the logit scale."""
    d = (ours.float() - ref.float()).abs().max().item()
    print(f"  {label}: max |diff| = {d:.3g} (bound {tol:g}, max |logit| {ref.abs().max().item():.3g})")
    assert d <= tol, f"{label}: {d} > {tol}"


def check(label, ours, ref, where=None):
    import torch
    if where is not None:
        ours, ref = ours[where], ref[where]
    assert torch.isfinite(ours).all(), f"{label}: non-finite logits"
    max_diff(label, ours, ref, TOL)


def run_case(args, work, name, spec):
    import torch
    import transformers
    model_dir = os.path.join(work, name)
    make_tiny_llama(model_dir, seed=len(name), **spec)
    ref_model = transformers.LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    V = ref_model.config.vocab_size
    T = SEQ_LEN.get(name, 20)
    g = torch.Generator().manual_seed(1000 + len(name))
    print(f"{name}: {json.dumps(spec)}")

    # plain batch
    ids = torch.randint(0, V, (3, T), generator=g)
    with torch.no_grad():
        ref = ref_model(ids).logits
    check("plain", our_logits(args.bin_dir, model_dir, work, name + "_plain", {"input_ids": ids}), ref)

    # right padding: real lengths T, T-5, 3; pad id 0; default positions 0..T-1 on both sides
    lengths = [T, T - 5, 3]
    mask = torch.zeros(3, T, dtype=torch.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ids_pad = ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        ref = ref_model(ids_pad, attention_mask=mask).logits
    ours = our_logits(args.bin_dir, model_dir, work, name + "_rpad", {"input_ids": ids_pad, "attention_mask": mask})
    check("right-padded", ours, ref, mask.bool())

    # left padding with positions counted from the first real token (as generate() does)
    mask_l = mask.flip(1)
    ids_l = ids.masked_fill(mask_l == 0, 0)
    pos_l = (mask_l.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = ref_model(ids_l, attention_mask=mask_l, position_ids=pos_l).logits
    ours = our_logits(args.bin_dir, model_dir, work, name + "_lpad",
                      {"input_ids": ids_l, "attention_mask": mask_l, "position_ids": pos_l})
    check("left-padded", ours, ref, mask_l.bool())

    # packed: one row holding three sequences; our positions restart per segment by default
    seg_lengths = [7, 5, T - 12]
    segment_ids = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(seg_lengths)]).view(1, T)
    positions = torch.cat([torch.arange(n) for n in seg_lengths]).view(1, T)
    packed = ids[:1]
    ours = our_logits(args.bin_dir, model_dir, work, name + "_packed",
                      {"input_ids": packed, "segment_ids": segment_ids})
    # transformers (>= 4.54) reads packed sequences from restarting position_ids. A fresh model: its dynamic
    # RoPE keeps state from earlier, longer calls, ours decides per call. No cache, or it ignores packing.
    fresh = transformers.LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = fresh(packed, position_ids=positions, use_cache=False).logits
    check("packed row", ours, ref)
    if spec.get("rope_scaling", {}).get("rope_type") == "dynamic":
        return  # dynamic NTK scales with the longest position of the call, so one sequence alone differs
    start = 0
    for i, n in enumerate(seg_lengths):
        with torch.no_grad():
            ref = ref_model(packed[:, start:start + n]).logits
        check(f"packed segment {i} alone", ours[:, start:start + n], ref)
        start += n


def main():
    args = tl.parse_args()
    tl.require("torch", "transformers", "safetensors")
    work = tl.tempdir("qlora_llama_parity_")
    for name, spec in CASES.items():
        run_case(args, work, name, spec)


if __name__ == "__main__":
    tl.main(main)
