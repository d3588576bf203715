"""Adapter interop with peft on a tiny random LLaMA (fp32 CPU, dense 16/32-bit base, no dropout):

  1. an adapter WE write (random A and B, r 4, alpha 8, on q_proj, v_proj, down_proj) loads with
     PeftModel.from_pretrained, and transformers + peft then give our logits;
  2. an adapter PEFT writes (get_peft_model + save_pretrained, r 8, alpha 16, rsLoRA, all seven projections,
     B randomised) loads in our code through our reader, with equal logits;
  3. the files we write have peft's layout: the safetensors keys peft itself writes for the same model and
     targets, F32, metadata {"format": "pt"}, and an adapter_config.json whose every key peft knows.

Tolerance 1e-4 max abs on logits: both sides compute in fp32; our base forward equals transformers' to ~1e-6
(tests/python/test_llama_parity.py), and the LoRA branch adds two small matmuls.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402

TOL = 1e-4
SHAPE = dict(vocab=211, hidden=72, intermediate=200, layers=2, heads=6, kv_heads=3)  # odd sizes, GQA


def inputs(torch):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, SHAPE["vocab"], (2, 13), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a right-padded row
    return ids, mask


def our_logits(tool, model_dir, adapter_dir, work, ids, mask):
    from safetensors.torch import load_file, save_file
    path_in, path_out = os.path.join(work, "in.safetensors"), os.path.join(work, "logits.safetensors")
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous()}, path_in)
    tl.run([tool, "adapter-logits", "--model", model_dir, "--adapter", adapter_dir, "--inputs", path_in,
            "--out", path_out])
    return load_file(path_out)["logits"]


def compare(label, ours, ref, mask):
    real = mask.bool()
    diff = (ours[real] - ref[real]).abs().max().item()
    print(f"  {label}: max |ours - peft| = {diff:.3g} (max |logit| {ref[real].abs().max().item():.3g})")
    assert diff <= TOL, f"{label}: max abs diff {diff} > {TOL}"


def test():
    torch = tl.require("torch")
    transformers, peft, safetensors = tl.require("transformers", "peft", "safetensors")
    args = tl.parse_args()
    tool = os.path.join(args.bin_dir, "train_tool")
    work = tl.tempdir()
    model_dir = os.path.join(work, "model")
    make_tiny_llama(model_dir, **SHAPE, seed=11)
    ids, mask = inputs(torch)

    def base():
        m = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        return m.eval()

    # 1. ours -> peft
    ours_dir = os.path.join(work, "ours")
    tl.run([tool, "make-adapter", "--model", model_dir, "--r", 4, "--alpha", 8, "--targets",
            "q_proj,v_proj,down_proj", "--seed", 5, "--out", ours_dir])
    peft_model = peft.PeftModel.from_pretrained(base(), ours_dir).eval()
    loaded = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert len(loaded) == 2 * 3 * SHAPE["layers"], f"peft loaded {len(loaded)} LoRA tensors, expected 12"
    assert any(p.abs().sum() > 0 for n, p in loaded.items() if "lora_B" in n), "peft did not load our lora_B"
    with torch.no_grad():
        ref = peft_model(input_ids=ids, attention_mask=mask).logits
        plain = base()(input_ids=ids, attention_mask=mask).logits
    ours = our_logits(tool, model_dir, ours_dir, work, ids, mask)
    assert (ref - plain).abs().max().item() > 1e-3, "the adapter does not change the output: test is vacuous"
    compare("our adapter in peft", ours, ref, mask)

    # 3. layout: the keys peft writes for the same model and targets, dtypes, metadata, known config keys
    from safetensors import safe_open
    same = peft.get_peft_model(base(), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                      task_type="CAUSAL_LM"))
    same_dir = os.path.join(work, "peft_same")
    same.save_pretrained(same_dir)
    with safe_open(os.path.join(same_dir, "adapter_model.safetensors"), "pt") as f_peft, \
         safe_open(os.path.join(ours_dir, "adapter_model.safetensors"), "pt") as f_ours:
        assert sorted(f_ours.keys()) == sorted(f_peft.keys()), \
            f"key names differ:\n ours {sorted(f_ours.keys())}\n peft {sorted(f_peft.keys())}"
        assert f_ours.metadata() == {"format": "pt"}, f"metadata {f_ours.metadata()}"
        for k in f_ours.keys():
            a, b = f_ours.get_tensor(k), f_peft.get_tensor(k)
            assert a.dtype == torch.float32 and a.shape == b.shape, f"{k}: {a.dtype} {tuple(a.shape)} vs {tuple(b.shape)}"
    ours_cfg = json.load(open(os.path.join(ours_dir, "adapter_config.json")))
    peft_cfg = json.load(open(os.path.join(same_dir, "adapter_config.json")))
    unknown = set(ours_cfg) - set(peft_cfg)
    assert not unknown, f"adapter_config.json keys peft does not write: {unknown}"
    for key in ["r", "lora_alpha", "peft_type", "task_type", "bias", "use_rslora", "fan_in_fan_out"]:
        assert ours_cfg[key] == peft_cfg[key], f"adapter_config.json {key}: ours {ours_cfg[key]!r}, peft {peft_cfg[key]!r}"
    text = open(os.path.join(ours_dir, "adapter_config.json")).read()
    assert text == json.dumps(ours_cfg, indent=2, sort_keys=True), "adapter_config.json is not json.dumps(indent=2, sort_keys=True)"

    # 2. peft -> ours
    torch.manual_seed(21)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, use_rslora=True, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    theirs = peft.get_peft_model(base(), cfg)
    with torch.no_grad():
        for n, p in theirs.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    theirs_dir = os.path.join(work, "theirs")
    theirs.save_pretrained(theirs_dir)
    theirs.eval()
    with torch.no_grad():
        ref = theirs(input_ids=ids, attention_mask=mask).logits
    ours = our_logits(tool, model_dir, theirs_dir, work, ids, mask)
    compare("peft's adapter in ours", ours, ref, mask)


if __name__ == "__main__":
    tl.main(test)
