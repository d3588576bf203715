"""Training steps against transformers + peft on a tiny random LLaMA (fp32 CPU, no dropout, dense base):
the same initial adapter (written by peft, read by our PEFT reader) and the same micro-batches.

  - step 1: the LoRA gradients (accumulated over 2 micro-batches, before clipping) equal peft's within 1e-5
    relative (max |ours - ref| / max |ref| per tensor): both are fp32 backward passes of the same graph, whose
    only differences are summation orders (~1e-7 relative);
  - 20 steps (gradient accumulation 2, global-norm clipping at 0.3, AdamW lr 1e-3 betas (0.9, 0.999) eps 1e-8
    wd 0, torch's AdamW for the reference): the per-step losses equal within 1e-4 relative; float differences
    grow through 20 optimizer steps but stay ~1e-6;
  - the same for 5 steps with loss_normalization token_mean (sum of NLL over both micro-batches / their label
    tokens), the reference computing that loss from the logits.

Loss normalization of the reference loop (docs/qlora-reference.md section 3.1, HF Trainer 4.31): each micro-batch loss is
transformers' mean over its label tokens, divided by gradient_accumulation_steps before backward.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

sys.path.insert(0, os.path.join(tl.SOURCE_DIR, "scripts"))
from make_tiny_llama import make_tiny_llama  # noqa: E402

SHAPE = dict(vocab=211, hidden=72, intermediate=200, layers=2, heads=6, kv_heads=3)
STEPS, GA, B, T = 20, 2, 2, 11
LR, CLIP = 1e-3, 0.3
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_batches(torch):
    g = torch.Generator().manual_seed(17)
    out = {}
    for s in range(STEPS):
        for k in range(GA):
            ids = torch.randint(3, SHAPE["vocab"], (B, T), generator=g)
            mask = torch.ones(B, T, dtype=torch.int64)
            labels = ids.clone()
            for r in range(B):
                length = int(torch.randint(6, T + 1, (1,), generator=g))
                source = int(torch.randint(1, 4, (1,), generator=g))
                mask[r, length:] = 0
                labels[r, length:] = -100
                labels[r, :source] = -100  # the prompt is not trained on
            out[f"input_ids_{s}_{k}"] = ids
            out[f"labels_{s}_{k}"] = labels
            out[f"attention_mask_{s}_{k}"] = mask
    # Steps cycle over 4 distinct step batches, so the adapter can fit them and the loss must go down.
    for s in range(4, STEPS):
        for k in range(GA):
            for key in ("input_ids", "labels", "attention_mask"):
                out[f"{key}_{s}_{k}"] = out[f"{key}_{s % 4}_{k}"].clone()
    return out


def reference(torch, peft_model, batches, steps, token_mean):
    params = [p for n, p in peft_model.named_parameters() if p.requires_grad]
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=False)
    losses, grads = [], None
    for s in range(steps):
        micro = [(batches[f"input_ids_{s}_{k}"], batches[f"labels_{s}_{k}"], batches[f"attention_mask_{s}_{k}"])
                 for k in range(GA)]
        total_tokens = sum(int((lab[:, 1:] != -100).sum()) for _, lab, _ in micro)
        step_loss = 0.0
        for ids, labels, mask in micro:
            out = peft_model(input_ids=ids, attention_mask=mask, labels=None if token_mean else labels)
            if token_mean:
                logits = out.logits[:, :-1].reshape(-1, out.logits.size(-1)).float()
                loss = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100,
                                                         reduction="sum") / total_tokens
            else:
                loss = out.loss / GA
            loss.backward()
            step_loss += loss.item()
        if s == 0:
            grads = {n: p.grad.detach().clone() for n, p in zip(names, params)}
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad()
        losses.append(step_loss)
    return losses, grads


def peft_name_to_ours(name):
    # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> model.layers.0.self_attn.q_proj.lora_A
    name = name.replace("base_model.model.", "", 1).replace(".default.weight", "")
    return name


def test():
    torch = tl.require("torch")
    transformers, peft = tl.require("transformers", "peft")
    from safetensors.torch import load_file, save_file
    args = tl.parse_args()
    tool = os.path.join(args.bin_dir, "train_tool")
    work = tl.tempdir()
    model_dir = os.path.join(work, "model")
    make_tiny_llama(model_dir, **SHAPE, seed=13)
    batches = make_batches(torch)
    batches_path = os.path.join(work, "batches.safetensors")
    save_file({k: v.contiguous() for k, v in batches.items()}, batches_path)

    def fresh_peft():
        torch.manual_seed(0)
        base = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        m = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                                                      task_type="CAUSAL_LM"))
        with torch.no_grad():  # B = 0 would make every lora_A gradient zero at step 1
            g = torch.Generator().manual_seed(99)
            for n, p in m.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        m.train()
        return m

    init_dir = os.path.join(work, "init")
    fresh_peft().save_pretrained(init_dir)

    for label, steps, normalization in [("microbatch_mean", STEPS, "microbatch_mean"), ("token_mean", 5, "token_mean")]:
        ref_losses, ref_grads = reference(torch, fresh_peft(), batches, steps, normalization == "token_mean")
        out_path = os.path.join(work, f"ours_{label}.safetensors")
        tl.run([tool, "train-steps", "--model", model_dir, "--adapter", init_dir, "--batches", batches_path,
                "--steps", steps, "--ga", GA, "--lr", LR, "--max-grad-norm", CLIP, "--normalization", normalization,
                "--out", out_path])
        ours = load_file(out_path)
        worst = 0.0
        for name, g in ref_grads.items():
            key = "grad." + peft_name_to_ours(name)
            assert key in ours, f"{label}: our side has no gradient {key}"
            scale = g.abs().max().item()
            assert scale > 0, f"{label}: reference gradient {name} is zero: test is vacuous"
            worst = max(worst, (ours[key] - g).abs().max().item() / scale)
        print(f"  {label}: step-1 LoRA gradients ({len(ref_grads)} tensors): max relative difference {worst:.3g}")
        assert worst <= 1e-5, f"{label}: gradient relative difference {worst} > 1e-5"
        ours_losses = ours["loss"].tolist()
        diffs = [abs(a - b) / abs(b) for a, b in zip(ours_losses, ref_losses)]
        print(f"  {label}: {steps} step losses: first {ref_losses[0]:.6f} last {ref_losses[-1]:.6f} (peft), "
              f"{ours_losses[-1]:.6f} (ours); max relative difference {max(diffs):.3g}")
        if steps >= 8:  # the same 4 step batches seen again: the reference must have learned them
            assert sum(ref_losses[-4:]) < sum(ref_losses[:4]), f"{label}: the reference loss did not go down"
        assert max(diffs) <= 1e-4, f"{label}: loss relative difference {max(diffs)} > 1e-4"


if __name__ == "__main__":
    tl.main(test)
