"""4-bit LLaMA: our NF4/FP4 model against transformers + bitsandbytes (CPU backend), both directions of files.

For two random tiny models (make_tiny_llama.py; one with K a multiple of 64, one with odd sizes so blocks
span rows and the last block is partial) and three settings (NF4 + double quant as QLoRA, NF4, FP4):

  1. quantize on load: our logits (llama_tool --quantize) vs transformers' load_in_4bit of the same fp32 files;
  2. the bytes transformers saves for its 4-bit model vs the bytes our `qlora-export quantize` writes;
  3. our export loaded by transformers + bnb gives our logits (same bytes, same dequantization);
  4. transformers' 4-bit save_pretrained loaded by us gives bnb's logits (we read its tensors as stored).

Bounds (max abs on logits of magnitude ~3-5, fp32 compute on both sides):
  - 2e-5 wherever both sides hold the same bytes (3, 4, and NF4 without DQ in 1, where bnb's CPU quantizer
    gives our codes): the dequantized weights are then bit-identical (code * absmax in fp32) and only the
    summation order could differ (measured: 0).
  - NF4 + DQ in 1: bnb's CPU backend quantizes the absmax scales with a 65536-bin LUT, not the exact nearest
    8-bit code that its CUDA kernel and its own pure-torch backend use (docs/nf4-spec.md section 4.2 item 5), so a few scales
    land one 8-bit step away and move whole blocks. We check (a) every 4-bit code equal, (b) every differing
    scale exactly one step of the dynamic map away, (c) logits within 3e-2 of bnb CPU as is (measured ~9e-3),
    and (d) within 1e-3 of bnb with its absmax quantized by the exact nearest rule (bnb's default-backend
    bucketize, patched into bitsandbytes.functional.quantize_blockwise): what is left there is the last bit of
    torch's mean(absmax).
  - FP4 in 1: bnb's CPU FP4 uses exact midpoints where CUDA (and we) use its rounded literal thresholds
    (spec 4.2 item 4). We check every differing code decodes to a neighbouring FP4 value (or the other zero)
    and logits within 5e-2 (measured ~1.5e-2).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402
from test_llama_parity import max_diff, our_logits  # noqa: E402

MODELS = {
    "k64": dict(vocab=256, hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2),
    "odd": dict(vocab=211, hidden=72, intermediate=200, layers=2, heads=6, kv_heads=3),
}
SETTINGS = {  # name: (quant type, double quant, bound for quantize-on-load vs bnb's CPU backend as is)
    "nf4_dq": ("nf4", True, 3e-2),
    "nf4": ("nf4", False, 2e-5),
    "fp4": ("fp4", False, 5e-2),
}
SAME_BYTES_TOL = 2e-5
EXACT_DQ_TOL = 1e-3


class ExactNearestDq:
    """bnb's quantize_blockwise with the exact nearest 8-bit code (bnb's default-backend bucketize against the
    code midpoints, x * (1 / absmax) as its CUDA kernel) instead of the CPU backend's LUT. bnb's own offset
    (torch mean) and nested absmax are kept."""

    def __enter__(self):
        import torch
        import bitsandbytes.functional as F
        self.F, self.orig = F, F.quantize_blockwise

        def exact(A, *args, **kwargs):
            q, state = self.orig(A, *args, **kwargs)
            flat = A.reshape(-1).float()
            scale = state.absmax.float().repeat_interleave(state.blocksize)[: flat.numel()]
            scaled = (flat * (1.0 / scale)).clamp(-1, 1)
            code = state.code.float()
            nearest = torch.bucketize(scaled, (code[:-1] + code[1:]) / 2).to(torch.uint8)
            return nearest.reshape(q.shape), state

        F.quantize_blockwise = exact
        return self

    def __exit__(self, *exc):
        self.F.quantize_blockwise = self.orig


def no_bf16_gemv(model):
    import bitsandbytes as bnb
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False
    return model


def bnb_model(path, quant=None, exact_dq=False):
    import torch
    import transformers
    kwargs = dict(device_map="cpu", dtype=torch.float32)
    if quant is not None:
        qtype, dq = quant
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=qtype, bnb_4bit_use_double_quant=dq,
            bnb_4bit_compute_dtype=torch.float32)
    if exact_dq:
        with ExactNearestDq():
            return no_bf16_gemv(transformers.LlamaForCausalLM.from_pretrained(path, **kwargs)).eval()
    return no_bf16_gemv(transformers.LlamaForCausalLM.from_pretrained(path, **kwargs)).eval()


def neighbours(values, a, b):
    """True where table values[a] and values[b] are equal or adjacent in sorted order (a, b index tensors)."""
    import torch
    order = torch.argsort(values, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(values.numel())
    va, vb = values[a.long()], values[b.long()]
    return ((rank[a.long()] - rank[b.long()]).abs() <= 1) | (va == vb)


def compare_bytes(ours_path, theirs_path, qtype, dq):
    """Compares two 4-bit checkpoints tensor by tensor; returns (codes differing, absmax entries differing)."""
    import torch
    from safetensors.torch import load_file
    ours, theirs = load_file(ours_path), load_file(theirs_path)
    assert set(ours) == set(theirs), f"tensor names differ: {sorted(set(ours) ^ set(theirs))}"
    codes = codes_diff = absmax_diff = absmax_total = 0
    for name, t in theirs.items():
        o = ours[name]
        if "quant_state" in name:
            continue  # JSON: nested_offset may differ in its last bits (spec 4.2 item 5), and so its length
        assert o.dtype == t.dtype and o.shape == t.shape, f"{name}: {o.dtype}{list(o.shape)} vs {t.dtype}{list(t.shape)}"
        if name.endswith(".weight") and t.dtype == torch.uint8:  # packed codes, high nibble first
            co = torch.stack([o.view(-1) >> 4, o.view(-1) & 15], 1).view(-1)
            ct = torch.stack([t.view(-1) >> 4, t.view(-1) & 15], 1).view(-1)
            differ = co != ct
            codes += co.numel()
            codes_diff += int(differ.sum())
            if differ.any():
                quant_map = theirs[name + ".quant_map"]
                assert neighbours(quant_map, co[differ], ct[differ]).all(), f"{name}: a code is off by more than one step"
        elif name.endswith("weight.absmax"):
            absmax_total += t.numel()
            differ = o != t
            absmax_diff += int(differ.sum())
            if differ.any():
                assert dq, f"{name}: float32 absmax differs without DQ"
                assert ((o[differ].int() - t[differ].int()).abs() == 1).all(), f"{name}: a scale is off by > 1 step"
        elif name.endswith("weight.nested_absmax"):
            # max |absmax - offset| per 256 blocks: moves with the offset's last bits
            assert torch.allclose(o, t, rtol=1e-5, atol=0), f"{name}: {o} vs {t}"
        else:
            assert torch.equal(o, t), f"{name} differs"
    print(f"    bytes: {codes_diff} of {codes} codes differ, {absmax_diff} of {absmax_total} absmax entries differ")
    return codes_diff, absmax_diff


def run(args, work, model_name, spec):
    import torch
    src = os.path.join(work, model_name)
    make_tiny_llama(src, seed=7, **spec)
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, spec["vocab"], (2, 24), generator=g)
    for setting, (qtype, dq, bound) in SETTINGS.items():
        tag = f"{model_name}_{setting}"
        print(f"{tag}:")
        flags = ["--quantize", qtype] + (["--double-quant"] if dq else [])
        theirs = bnb_model(src, (qtype, dq))
        with torch.no_grad():
            ref = theirs(ids).logits
        ours = our_logits(args.bin_dir, src, work, tag, {"input_ids": ids}, flags)
        max_diff("quantize on load vs transformers+bnb (CPU backend as is)", ours, ref, bound)
        if dq:
            with torch.no_grad():
                ref_exact = bnb_model(src, (qtype, dq), exact_dq=True)(ids).logits
            max_diff("quantize on load vs transformers+bnb with exact-nearest DQ", ours, ref_exact, EXACT_DQ_TOL)

        # 2: bytes. transformers' 4-bit save_pretrained vs our export.
        theirs_dir, ours_dir = os.path.join(work, tag + "_bnb"), os.path.join(work, tag + "_ours")
        theirs.save_pretrained(theirs_dir, safe_serialization=True)
        tl.run([os.path.join(args.bin_dir, "qlora-export"), "quantize", "--model", src, "--out", ours_dir,
                "--quant-type", qtype] + (["--double-quant"] if dq else []))
        codes_diff, absmax_diff = compare_bytes(os.path.join(ours_dir, "model.safetensors"),
                                                os.path.join(theirs_dir, "model.safetensors"), qtype, dq)
        if qtype == "nf4":  # spec 4.2: NF4 codes and float32 absmax equal bnb's CPU quantizer
            assert codes_diff == 0, "NF4 codes differ from bnb's"

        # 3: our export in transformers + bnb = our 4-bit logits
        exported = bnb_model(ours_dir)
        with torch.no_grad():
            ref_exported = exported(ids).logits
        max_diff("our export loaded by transformers+bnb vs our 4-bit model", ref_exported, ours, SAME_BYTES_TOL)

        # 4: transformers' 4-bit checkpoint loaded by us = bnb's logits
        ours_from_theirs = our_logits(args.bin_dir, theirs_dir, work, tag + "_load", {"input_ids": ids})
        max_diff("transformers' 4-bit checkpoint loaded by us vs transformers+bnb", ours_from_theirs, ref,
                 SAME_BYTES_TOL)


def main():
    args = tl.parse_args()
    tl.require("torch", "transformers", "safetensors", "bitsandbytes")
    work = tl.tempdir("qlora_llama_4bit_")
    for name, spec in MODELS.items():
        run(args, work, name, spec)


if __name__ == "__main__":
    tl.main(main)
