"""`qlora-export merge` on a tiny random LLaMA (fp32 checkpoint, odd sizes, GQA), adapter r 4 on all seven
projections with random A and B:

  1. --base stored --dtype float32: transformers loads the merged directory and gives the logits of
     PeftModel(base, adapter) within 1e-4 (fp32 both sides; merging moves only float rounding);
  2. --base 4bit --dtype float32 (dequantize, then merge): the merged checkpoint's logits in transformers equal
     those of OUR 4-bit base + adapter (train_tool adapter-logits --quantize nf4) within 1e-4;
  3. --base auto with a training_config.json saying bits 4 next to the adapter writes the same tensors as 2;
  4. the default --dtype bfloat16 writes bf16 tensors (torch_dtype bfloat16) whose logits stay within 0.05 of
     the fp32 merge: bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per weight), which moves logits
     of magnitude ~3 by ~1e-2 through two layers.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402

SHAPE = dict(vocab=211, hidden=72, intermediate=200, layers=2, heads=6, kv_heads=3)
TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def test():
    torch = tl.require("torch")
    transformers, peft = tl.require("transformers", "peft")
    from safetensors.torch import load_file, save_file
    args = tl.parse_args()
    tool = os.path.join(args.bin_dir, "train_tool")
    export = os.path.join(args.bin_dir, "qlora-export")
    work = tl.tempdir()
    model_dir, adapter_dir = os.path.join(work, "model"), os.path.join(work, "adapter")
    make_tiny_llama(model_dir, **SHAPE, seed=23)
    tl.run([tool, "make-adapter", "--model", model_dir, "--r", 4, "--alpha", 8, "--targets", TARGETS, "--seed", 7,
            "--out", adapter_dir])
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(3, SHAPE["vocab"], (2, 15), generator=g)

    def hf_logits(path):
        m = transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            return m(input_ids=ids).logits

    def merge(out, *extra):
        tl.run([export, "merge", "--model", model_dir, "--adapter", adapter_dir, "--out", out, *extra])
        return out

    def check(label, ours, ref, tol):
        diff = (ours - ref).abs().max().item()
        print(f"  {label}: max |diff| = {diff:.3g} (max |logit| {ref.abs().max().item():.3g})")
        assert diff <= tol, f"{label}: {diff} > {tol}"

    # 1. 16-bit base as stored
    base = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        ref = peft.PeftModel.from_pretrained(base, adapter_dir).eval()(input_ids=ids).logits
        plain = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()(input_ids=ids).logits
    assert (ref - plain).abs().max().item() > 1e-3, "the adapter does not change the output: test is vacuous"
    stored = merge(os.path.join(work, "merged_stored"), "--base", "stored", "--dtype", "float32")
    check("merged (stored base) vs PeftModel", hf_logits(stored), ref, 1e-4)

    # 2. 4-bit base: dequantize, then merge
    q4 = merge(os.path.join(work, "merged_4bit"), "--base", "4bit", "--dtype", "float32")
    path_in, path_out = os.path.join(work, "in.safetensors"), os.path.join(work, "ours.safetensors")
    save_file({"input_ids": ids.contiguous()}, path_in)
    tl.run([tool, "adapter-logits", "--model", model_dir, "--adapter", adapter_dir, "--inputs", path_in,
            "--out", path_out, "--quantize", "nf4"])
    ours_4bit = load_file(path_out)["logits"]
    assert (ours_4bit - ref).abs().max().item() > 1e-4, "4-bit base equals the dense one: test is vacuous"
    check("merged (4-bit base) vs our 4-bit base + adapter", hf_logits(q4), ours_4bit, 1e-4)

    # 3. auto: the training config next to the adapter says the base was 4-bit
    with open(os.path.join(adapter_dir, "training_config.json"), "w") as f:
        json.dump({"bits": 4, "quant_type": "nf4", "blocksize": 64, "double_quant": True}, f)
    auto = merge(os.path.join(work, "merged_auto"), "--dtype", "float32")
    a, b = load_file(os.path.join(auto, "model.safetensors")), load_file(os.path.join(q4, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "--base auto differs from --base 4bit"
    print("  --base auto with training_config.json (bits 4): same tensors as --base 4bit")

    # 4. default dtype bf16
    bf16 = merge(os.path.join(work, "merged_bf16"), "--base", "stored")
    cfg = json.load(open(os.path.join(bf16, "config.json")))
    assert cfg.get("torch_dtype", cfg.get("dtype")) == "bfloat16", f"torch_dtype {cfg.get('torch_dtype')}"
    tensors = load_file(os.path.join(bf16, "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in tensors.values()), "not every merged tensor is bf16"
    check("bf16 merge vs fp32 PeftModel", hf_logits(bf16), ref, 0.05)


if __name__ == "__main__":
    tl.main(test)
