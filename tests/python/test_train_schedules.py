"""Our learning-rate schedules vs transformers' get_scheduler (LambdaLR over a dummy optimizer), for every
step 0..T of constant, constant_with_warmup, linear and cosine, with warmup 0, 1, 7 and T = 1, 2, 50, 97.
Tolerance 1e-12 relative: the same double-precision formulas (HF evaluates them in Python floats).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import qlora_testlib as tl


def test():
    torch = tl.require("torch")
    transformers = tl.require("transformers")
    args = tl.parse_args()
    base_lr = 3e-4
    checked = 0
    for kind in ["constant", "constant_with_warmup", "linear", "cosine"]:
        for total in [1, 2, 50, 97]:
            for warmup in [0, 1, 7]:
                if warmup > total:
                    continue
                p = torch.nn.Parameter(torch.zeros(1))
                opt = torch.optim.SGD([p], lr=base_lr)
                kwargs = {}
                if kind != "constant":
                    kwargs["num_warmup_steps"] = warmup
                if kind in ("linear", "cosine"):
                    kwargs["num_training_steps"] = total
                sched = transformers.get_scheduler(kind, opt, **kwargs)
                ref = []
                for _ in range(total + 1):
                    ref.append(opt.param_groups[0]["lr"])  # the lr the next optimizer step would use
                    opt.step()
                    sched.step()
                out = tl.run([os.path.join(args.bin_dir, "train_tool"), "schedule", "--kind", kind, "--base-lr",
                              repr(base_lr), "--warmup", warmup, "--total", total]).stdout
                ours = json.loads(out)
                assert len(ours) == len(ref), f"{kind} T={total} W={warmup}: {len(ours)} values, expected {len(ref)}"
                for s, (a, b) in enumerate(zip(ours, ref)):
                    assert abs(a - b) <= 1e-12 * max(abs(b), base_lr), \
                        f"{kind} T={total} W={warmup} step {s}: ours {a}, transformers {b}"
                checked += len(ref)
    print(f"  {checked} learning rates equal to transformers' get_scheduler")


if __name__ == "__main__":
    tl.main(test)
