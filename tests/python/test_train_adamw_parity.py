"""PagedAdamW (our CPU path) vs torch.optim.AdamW (32-bit state) and bitsandbytes' AdamW8bit (8-bit blockwise
state, bnb's CPU backend), over 20 steps with a save and load of our state after step 10.

Parameters of odd sizes: 1, 3, 63x65 (4095 elements: bnb keeps 32-bit state below min_8bit_size 4096), 4097 and
300x17 (8-bit state in blocks of 256 with a partial last block). lr 1e-2 and weight decay 0.1 so that 20 steps
move every parameter and the decay order matters (both torch and bnb's CPU backend decay before the update).

Tolerances:
  32-bit vs torch: 1e-6 relative (max |a-b| / max(|b|, 1)): both run the same float32 formula; torch's
                   lerp/addcdiv order differs by a few ulp.
  8-bit vs bnb:    parameters below min_8bit_size keep 32-bit state and agree to 1e-6. With 8-bit state the
                   update math is the same (dequantize, float32 update, re-quantize per 256-block) but bnb's CPU
                   quantizer is not an exact nearest-code search, so single codes may differ by one step; the
                   bounds below say how far that may move things (see the comments at the asserts).
Also checks the dynamic maps byte for byte against bnb's create_dynamic_map(signed=True/False).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl

SHAPES = [(1,), (3,), (63, 65), (4097,), (300, 17)]
STEPS, SAVE_AT, LR, WD = 20, 10, 1e-2, 0.1


def make_inputs(torch):
    g = torch.Generator().manual_seed(1234)
    params = [torch.randn(s, generator=g) for s in SHAPES]
    grads = {(s, i): torch.randn(SHAPES[i], generator=g) for s in range(1, STEPS + 1) for i in range(len(SHAPES))}
    return params, grads


def run_ours(bin_dir, work, params, grads, bits, steps=STEPS, save_at=SAVE_AT):
    from safetensors.torch import load_file, save_file
    tensors = {f"p{i}": p for i, p in enumerate(params)}
    tensors.update({f"g{s}.{i}": g for (s, i), g in grads.items()})
    path_in, path_out = os.path.join(work, "in.safetensors"), os.path.join(work, f"out{bits}_{steps}.safetensors")
    save_file(tensors, path_in)
    tl.run([os.path.join(bin_dir, "train_tool"), "adamw", "--in", path_in, "--out", path_out, "--bits", bits,
            "--lr", LR, "--wd", WD, "--steps", steps, "--save-at", save_at, "--dir", os.path.join(work, f"state{bits}")])
    return load_file(path_out)


def rel(a, b):
    return ((a - b).abs() / b.abs().clamp_min(1.0)).max().item()


def test():
    torch = tl.require("torch")
    bnb = tl.require("bitsandbytes")
    args = tl.parse_args()
    work = tl.tempdir()
    params, grads = make_inputs(torch)

    # 32-bit against torch.optim.AdamW (single-tensor path, the formula PagedAdamW follows)
    ours = run_ours(args.bin_dir, work, params, grads, "32")
    ref = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.AdamW(ref, lr=LR, weight_decay=WD, foreach=False)
    for s in range(1, STEPS + 1):
        for i, p in enumerate(ref):
            p.grad = grads[(s, i)].clone()
        opt.step()
    for i, p in enumerate(ref):
        d = rel(ours[f"p{i}"], p.detach())
        dm = rel(ours[f"m{i}"], opt.state[p]["exp_avg"].reshape(-1))
        dv = rel(ours[f"v{i}"], opt.state[p]["exp_avg_sq"].reshape(-1))
        print(f"  32-bit shape {SHAPES[i]}: param {d:.3g}, exp_avg {dm:.3g}, exp_avg_sq {dv:.3g}")
        assert max(d, dm, dv) <= 1e-6, f"32-bit shape {SHAPES[i]}: relative difference {max(d, dm, dv)} > 1e-6"

    # 8-bit against bitsandbytes AdamW8bit on the CPU
    import bitsandbytes.functional as F

    def bnb_run(steps):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt8 = bnb.optim.AdamW8bit(ps, lr=LR, weight_decay=WD)
        for s in range(1, steps + 1):
            for i, p in enumerate(ps):
                p.grad = grads[(s, i)].clone()
            opt8.step()
        return ps, opt8

    # (a) one step from zero state: the same float32 update, then re-quantization of the new moments.
    ours1 = run_ours(args.bin_dir, work, params, grads, "8", steps=1, save_at=1)
    assert torch.equal(ours1["qmap1"], F.create_dynamic_map(signed=True)), "signed dynamic map differs from bnb's"
    assert torch.equal(ours1["qmap2"], F.create_dynamic_map(signed=False)), "unsigned dynamic map differs from bnb's"
    ps, opt8 = bnb_run(1)
    for i, p in enumerate(ps):
        st = opt8.state[p]
        d = rel(ours1[f"p{i}"], p.detach())
        line = f"  8-bit, 1 step, shape {SHAPES[i]}: param {d:.3g}"
        assert d <= 1e-6, f"8-bit 1 step shape {SHAPES[i]}: parameter relative difference {d} > 1e-6"
        if st["state1"].dtype != torch.uint8:
            assert f"code1_{i}" not in ours1, f"shape {SHAPES[i]}: bnb keeps 32-bit state, ours uses 8-bit"
            print(line)
            continue
        assert f"code1_{i}" in ours1, f"shape {SHAPES[i]}: bnb keeps 8-bit state, ours does not"
        a = max(rel(ours1[f"absmax{k}_{i}"], st[f"absmax{k}"]) for k in (1, 2))
        assert a <= 1e-6, f"shape {SHAPES[i]}: absmax differs from bnb's by {a}"  # max of the same floats
        # The moments after one step from zero, in float32 as the kernels compute them (m = 0.9*0 + g*0.1,
        # v = 0.999*0 + 0.001*g*g), each quantized to the exact nearest code of its block-normalized value.
        g = grads[(1, i)].reshape(-1)
        m = torch.zeros_like(g) * torch.tensor(0.9) + g * torch.tensor(0.1)
        v = torch.zeros_like(g) * torch.tensor(0.999) + torch.tensor(0.001) * g * g
        for k, (x, qmap) in enumerate([(m, ours1["qmap1"]), (v, ours1["qmap2"])], start=1):
            n = x.numel()
            pad = (-n) % 256
            blocks = torch.cat([x, torch.zeros(pad)]).reshape(-1, 256)
            absmax = blocks.abs().max(1).values
            normed = (blocks * (1.0 / absmax)[:, None]).reshape(-1)[:n]
            dist = (normed[:, None] - qmap[None, :]).abs()
            nearest = dist.argmin(1)  # first minimum: ties go to the lower code, as ours
            ours_codes = ours1[f"code{k}_{i}"].long()
            bnb_codes = st[f"state{k}"].reshape(-1).long()
            wrong = int((ours_codes != nearest).sum())
            bnb_off = int((bnb_codes != nearest).sum())
            print(f"{line}: state{k} codes not nearest: ours {wrong}, bnb {bnb_off} of {n}")
            # Ours is an exact nearest-code search (the intent of bnb's CUDA quantize_2D, docs/nf4-spec.md section 5.4). bnb's CPU
            # quantizer is not: its BinSearch puts small values of the unsigned map on code 7 and takes the upper
            # code for some values just below a midpoint, so bnb's codes are reported, not required.
            assert wrong == 0, f"shape {SHAPES[i]}: {wrong} of our state{k} codes are not the nearest code"

    # (b) 20 steps with a save/load: our 8-bit trajectory is as close to 32-bit AdamW as bnb's is.
    ours8 = run_ours(args.bin_dir, work, params, grads, "8")
    ps, opt8 = bnb_run(STEPS)
    for i, p in enumerate(ps):
        ours_drift = rel(ours8[f"p{i}"], ref[i].detach())
        bnb_drift = rel(p.detach(), ref[i].detach())
        print(f"  8-bit, {STEPS} steps, shape {SHAPES[i]}: vs torch 32-bit: ours {ours_drift:.3g}, bnb {bnb_drift:.3g}")
        # 1.5x + 1e-6: 8-bit state noise is random-like, so the two drifts are alike but not equal.
        assert ours_drift <= 1.5 * bnb_drift + 1e-6, f"shape {SHAPES[i]}: our 8-bit drift {ours_drift} vs bnb {bnb_drift}"

if __name__ == "__main__":
    tl.main(test)
