"""Our safetensors reader and writer against Python `safetensors` (both directions).

Python writes a file with every dtype torch and safetensors share (odd shapes, a scalar, an empty tensor,
metadata); our tool reads it, reports per-tensor sums computed from what it read, and writes it back with our
writer; Python loads our file and the tensors and metadata must be equal.
"""
import json
import os

from qlora_testlib import main, parse_args, require, run, tempdir

args = parse_args()
torch = require("torch")
st = require("safetensors.torch")


def test():
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32.odd": torch.randn(3, 5, generator=g),
        "f16.vec": torch.randn(63, generator=g).half(),
        "bf16.mat": torch.randn(65, 7, generator=g).bfloat16(),
        "f64.scalar": torch.tensor(3.25, dtype=torch.float64),
        "i64.ids": torch.arange(-5, 12, dtype=torch.int64),
        "i32.m": torch.randint(-1000, 1000, (4, 4), generator=g, dtype=torch.int32),
        "u8.packed": torch.randint(0, 256, (4097, 1), generator=g, dtype=torch.uint8),
        "i8.x": torch.randint(-128, 128, (9,), generator=g, dtype=torch.int8),
        "bool.mask": torch.rand(11, generator=g) > 0.5,
        "empty": torch.zeros(0, 4),
    }
    d = tempdir()
    src, dst = os.path.join(d, "py.safetensors"), os.path.join(d, "ours.safetensors")
    st.save_file(tensors, src, metadata={"format": "pt", "note": "interop"})
    r = run([os.path.join(args.bin_dir, "safetensors_tool"), "copy", src, dst])
    seen = {}
    for line in r.stdout.splitlines():
        rec = json.loads(line)
        seen[rec["name"]] = rec
    assert set(seen) == set(tensors), f"tensor names differ: {sorted(seen)} vs {sorted(tensors)}"
    for name, t in tensors.items():
        rec = seen[name]
        assert rec["shape"] == list(t.shape), f"{name}: shape {rec['shape']} != {list(t.shape)}"
        want = t.to(torch.float64).sum().item() if t.dtype != torch.bool else float(t.sum().item())
        assert abs(rec["sum"] - want) <= 1e-9 * max(1.0, abs(want)), f"{name}: our sum {rec['sum']} != {want}"
    back = st.load_file(dst)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype, f"{name}: dtype {back[name].dtype} != {t.dtype}"
        assert torch.equal(back[name], t), f"{name}: values differ after our write"
    from safetensors import safe_open
    with safe_open(dst, "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "interop"}, f.metadata()


main(test)
