"""Byte parity of our 4-bit quantization with bitsandbytes, live (bitsandbytes' CPU backend in the venv).

    python tests/python/test_nf4_bnb_parity.py --bin-dir build/bin      (drives build/bin/nf4_tool)

Inputs: bf16 and fp16 N(0, 0.02^2) weights of shapes (1,1), (3,5), (63,65), (4097,3), (256,4096) and a
(128,96) tensor whose first 4096 values are zero (an all-zero block at every blocksize); NF4 and FP4;
blocksizes 32, 64, 128, 4096; with and without double quantization (DQ).

What bitsandbytes 0.50.2 does on the CPU (read from its installed source, backends/default/ops.py and
backends/cpu/ops.py, and libbitsandbytes_cpu.so's symbols):
  - quantize_4bit is the pure-torch default op: absmax per block, s = clamp(x * (1/absmax.clamp(min=1e-38)),
    -1, 1) for full blocks but x / absmax for the tail block, then bucketize against the float32 midpoints of
    the code (for FP4, of the code sorted by torch.argsort, which puts +0 (code 0) before code 8).
  - DQ: offset = absmax.mean() (torch's float32 reduction), then quantize_blockwise(absmax - offset, 256) runs
    the native quantize_cpu_impl: a 65536-bin LUT built from the code's midpoints, zero groups written as 0.
  - dequantize_4bit: native C++ (code[q] * absmax, RNE to bf16/fp16), except for an odd last dimension, or
    blocksize >= 2048 where torch reports AVX512, which fall back to torch with get_4bit_type's code, where
    FP4 code 8 is +0.0 instead of CUDA's -0.0. Its AVX512 kernel indexes absmax by row * (K // blocksize) +
    col // blocksize, which is wrong when K % blocksize != 0 (confirmed here: (128, 96) at blocksize 64).

We follow bitsandbytes' CUDA kernels (docs/nf4-spec.md section 4.2), so the CPU bytes differ where the spec predicts:
  1. an all-zero block: CUDA 1/0 = inf, 0 * inf = NaN -> code 0 (NF4 bytes 0x00); bnb CPU -> code 7 (0x77);
  2. FP4 near zero: CUDA takes the sign from s < 0 (tiny negative -> 8, tiny positive -> 0); bnb CPU's
     bucketize does the opposite; and CUDA's literal thresholds are not exact midpoints;
  3. NF4: 4 of CUDA's 15 literal thresholds are one float32 ulp off the midpoints bnb CPU uses;
  4. the tail block: bnb CPU divides, CUDA multiplies by the reciprocal;
  5. DQ codes: bnb CPU's LUT quantizer is not an exact nearest search, and offsets may differ by an ulp
     (torch's float32 mean vs our double-lane sum); nested_absmax then moves with the offset.
The test emulates both rules in numpy (bnb's CPU rule with bnb's own bounds and code tables), checks that
bitsandbytes' output equals the CPU emulation and ours equals the CUDA emulation, and that the elements
where ours and bnb's differ are exactly the predicted ones; it prints the counts. Dequantizing the same
bytes must give the same values except where bnb's dequantize is predicted to differ (FP4 code 8 as +0,
and its AVX512 absmax indexing for K % blocksize != 0), counted too.
"""
import os
import sys

from qlora_testlib import main, parse_args, require, run, tempdir

SHAPES = [(1, 1), (3, 5), (63, 65), (4097, 3), (256, 4096), (128, 96)]  # the last holds a zero block
BLOCKSIZES = [32, 64, 128, 4096]

# CUDA's literal thresholds as nvcc rounds them (bit patterns from the PTX; kernels/ref/nf4_tables.h).
NF4_THRESHOLDS = [0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871,
                  0x3d22faff, 0x3df64863, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf,
                  0x3f5c89d9]
FP4_THRESHOLDS = [0x3b2aaab9, 0x3db00000, 0x3e555555, 0x3e955555, 0x3ed55556, 0x3f155550, 0x3f555555]
FP4_CODE_OF_RANK = [0, 1, 6, 7, 4, 5, 2, 3]


def test():
    args = parse_args()
    torch, bnb, np, _ = require("torch", "bitsandbytes", "numpy", "safetensors")
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _get_4bit_quantize_bounds
    from safetensors.torch import load_file, save_file

    tool = os.path.join(args.bin_dir, "nf4_tool")
    assert os.path.exists(tool), f"{tool} not built"
    f32 = np.float32
    cpu = torch.device("cpu")

    def as_f32(hex_list):
        return np.array(hex_list, dtype=np.uint32).view(np.float32)

    nf4_t, fp4_t = as_f32(NF4_THRESHOLDS), as_f32(FP4_THRESHOLDS)
    code8 = F.create_dynamic_map(signed=True).numpy().astype(np.float32)

    # ---- the two rules, in numpy -------------------------------------------------------------------

    def block_absmax(x, bs):
        nb = -(-x.size // bs)
        pad = np.zeros(nb * bs, np.float32)
        pad[: x.size] = np.abs(x)
        return pad.reshape(nb, bs).max(axis=1)

    def encode_cuda(s, qt):
        with np.errstate(invalid="ignore"):
            if qt == "nf4":
                return (s[:, None] > nf4_t[None, :]).sum(axis=1).astype(np.uint8)
            rank = (np.abs(s)[:, None] > fp4_t[None, :]).sum(axis=1)
            return (np.array(FP4_CODE_OF_RANK)[rank] | np.where(s < 0, 8, 0)).astype(np.uint8)

    def codes_cuda(x, bs, qt):
        """kQuantizeBlockwise: s = x * (1/absmax) in float32, literal thresholds; pad value 0 * inv."""
        am = block_absmax(x, bs)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = f32(1) / am
            s = (x * inv[np.arange(x.size) // bs]).astype(np.float32)
            if x.size % 2:
                s = np.append(s, f32(0) * inv[-1])
        return encode_cuda(s, qt)

    def codes_bnb_cpu(x, bs, qt, tail_divides=True):
        """bnb 0.50.2 default-backend quantize_4bit, with bnb's own bounds and argsort order."""
        bounds, order = _get_4bit_quantize_bounds(qt, cpu)
        bounds, order = bounds.numpy(), order.numpy()
        am = np.maximum(block_absmax(x, bs), f32(1e-38))
        n, rem = x.size, x.size % bs
        full = n - rem
        s = np.empty(n, np.float32)
        s[:full] = np.clip(x[:full] * (f32(1) / am[np.arange(full) // bs]), -1, 1)
        if rem:
            s[full:] = np.clip(x[full:] / am[-1] if tail_divides else x[full:] * (f32(1) / am[-1]), -1, 1)
        if n % 2:
            s = np.append(s, f32(0))
        q = np.searchsorted(bounds, s, side="left")  # torch.bucketize(right=False)
        return (q if qt == "nf4" else order[q]).astype(np.uint8)

    def encode8_cuda(s):
        """dQuantize<0>: binary search from pivot 127, then the nearer neighbour by (a + b) * 0.5f."""
        pivot = np.full(s.shape, 127)
        lower_p, upper_p = np.zeros(s.shape, int), np.full(s.shape, 255)
        lower, upper = np.full(s.shape, f32(-1)), np.full(s.shape, f32(1))
        val = code8[pivot]
        with np.errstate(invalid="ignore"):
            for step in (64, 32, 16, 8, 4, 2, 1):
                gt = s > val
                lower_p, lower = np.where(gt, pivot, lower_p), np.where(gt, val, lower)
                upper_p, upper = np.where(gt, upper_p, pivot), np.where(gt, upper, val)
                pivot = np.where(gt, pivot + step, pivot - step)
                val = code8[pivot]
            upper = np.where(upper_p == 255, code8[255], upper)
            lower = np.where(lower_p == 0, code8[0], lower)
            mid_up = ((upper + val) * f32(0.5)).astype(np.float32)
            mid_lo = ((lower + val) * f32(0.5)).astype(np.float32)
            gt = s > val
            return np.where(gt, np.where(s > mid_up, upper_p, pivot), np.where(s < mid_lo, lower_p, pivot)).astype(np.uint8)

    def groups(d):
        ng = -(-d.size // 256)
        pad = np.zeros(ng * 256, np.float32)
        pad[: d.size] = np.abs(d)
        return pad.reshape(ng, 256).max(axis=1)

    def dq_cuda(absmax, offset):
        d = (absmax - offset).astype(np.float32)
        nested = groups(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (d * (f32(1) / nested)[np.arange(d.size) // 256]).astype(np.float32)
        return encode8_cuda(s), nested

    mid8 = (f32(0.5) * (code8[:-1] + code8[1:])).astype(np.float32)
    lut_vals = (f32(-1) + (f32(2) * np.arange(65536).astype(np.float32)) / f32(65535)).astype(np.float32)
    lut8 = np.searchsorted(mid8, lut_vals, side="left").astype(np.uint8)  # build_quantize_lut

    def dq_bnb_cpu(absmax, offset):
        """quantize_cpu_impl: zero group -> 0; else lut[uint16(((clamp(s) + 1) * 0.5) * 65535 + 0.5)]."""
        d = (absmax - offset).astype(np.float32)
        nested = groups(d)
        out = np.zeros(d.size, np.uint8)
        for g, m in enumerate(nested):
            if m == 0:
                continue
            s = np.clip(d[g * 256:(g + 1) * 256] * (f32(1) / m), -1, 1).astype(np.float32)
            t = ((s + f32(1)) * f32(0.5)).astype(np.float32)
            idx = ((t * f32(65535)).astype(np.float32) + f32(0.5)).astype(np.float32).astype(np.uint16)
            out[g * 256:(g + 1) * 256] = lut8[idx]
        return out, nested

    def unpack(packed, n):
        b = np.asarray(packed, np.uint8).reshape(-1)
        return np.stack([b >> 4, b & 15], axis=1).reshape(-1)[: n + (n % 2)]

    def ulps(a, b):
        a = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
        b = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
        return int(np.max(np.abs(a - b))) if a.size else 0

    def check_dequantize(where, tensors, name, w, mine, qt, bs, dq):
        state = F.QuantState.from_dict(
            {k[len(name) + 8:]: v for k, v in tensors.items() if k.startswith(f"{name}.weight.")}, device=cpu)
        expected = F.dequantize_4bit(tensors[f"{name}.weight"], state)
        assert mine.dtype == expected.dtype and mine.shape == expected.shape, where
        a = mine.view(torch.int16).numpy().reshape(-1)
        b = expected.view(torch.int16).numpy().reshape(-1)
        # Both sides, emulated: T(code[q] * absmax[block]) with the rebuilt DQ absmax
        # fl(fl(code8[q] * nested[b // 256]) + offset). bnb differs from CUDA (and us) in two ways:
        #  - its torch fallback (odd last dim; blocksize >= 2048 where torch reports AVX512) decodes FP4 code 8
        #    with get_4bit_type's +0.0, and so does its AVX512 kernel's FP4 table (set_fp4_lut); CUDA decodes
        #    lut[0] * -1 = -0.0. Its scalar C++ table has -0.0f (source; not run here).
        #  - its AVX512 kernel reads absmax[row * (K // bs) + col // bs] instead of the flat block i // bs:
        #    wrong whenever K % bs != 0 (the row-index hazard of docs/nf4-spec.md section 4.2).
        n, K = w.numel(), w.shape[-1]
        codes = unpack(tensors[f"{name}.weight"].numpy(), n)[:n]
        if dq:
            q8 = state.absmax.numpy().astype(np.int64)
            scaled = (state.state2.code.numpy()[q8] * state.state2.absmax.numpy()[np.arange(q8.size) // 256])
            am = (scaled.astype(np.float32) + f32(state.offset.item())).astype(np.float32)
        else:
            am = state.absmax.numpy()
        i = np.arange(n)
        fallback = K % 2 != 0 or (fallback_avx512 and bs >= 2048)
        avx512_kernel = not fallback and fallback_avx512
        bnb_idx = (i // K) * (K // bs) + (i % K) // bs if avx512_kernel else i // bs
        table_cuda = np.array(F.get_4bit_type(qt, device=cpu).numpy(), np.float32)
        if qt == "fp4":
            table_cuda[8] = f32(-0.0)
        table_bnb = F.get_4bit_type(qt, device=cpu).numpy() if (fallback or avx512_kernel) else table_cuda

        def to_t(v):
            return torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(w.dtype).view(torch.int16).numpy()

        emul_ours = to_t(table_cuda[codes] * am[i // bs])
        emul_bnb = to_t(table_bnb[codes] * am[bnb_idx])
        assert np.array_equal(a, emul_ours), f"{where}: ours differs from T(code[q] * absmax)"
        assert np.array_equal(b, emul_bnb), f"{where}: bnb differs from its emulation at {np.flatnonzero(b != emul_bnb)[:10]}"
        predicted, actual = emul_ours != emul_bnb, a != b
        assert np.array_equal(predicted, actual), where
        counts["dequant"][0] += int(predicted.sum())
        counts["dequant"][1] += a.size
        if avx512_kernel and K % bs:
            counts["row_index"][0] += int((table_cuda[codes] * am[i // bs] != table_bnb[codes] * am[bnb_idx]).sum())

    # ---- inputs ------------------------------------------------------------------------------------

    work = tempdir("nf4_parity_")
    torch.manual_seed(0)
    inputs = {}
    for dtype, dname in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        for rows, cols in SHAPES:
            w = torch.randn(rows, cols) * 0.02
            if (rows, cols) == (128, 96):
                w.view(-1)[:4096] = 0
            inputs[f"{dname}_{rows}x{cols}"] = w.to(dtype).contiguous()
    in_path = os.path.join(work, "in.safetensors")
    save_file(inputs, in_path)
    assert code8.size == 256

    # [predicted differences, values compared]; row_index: the part of dequant due to bnb's AVX512 indexing
    counts = {"packed": [0, 0], "absmax_q": [0, 0], "dequant": [0, 0], "row_index": [0, 0]}
    fallback_avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
    max_offset_ulps = max_nested_ulps = 0
    offsets_differ = [0, 0]  # [tensors whose offset differs from bnb's by an ulp, DQ tensors]

    for qt in ("nf4", "fp4"):
        for bs in BLOCKSIZES:
            for dq in (False, True):
                cfg = f"{qt} bs={bs} dq={int(dq)}"
                ours_path = os.path.join(work, f"ours_{qt}_{bs}_{int(dq)}.safetensors")
                run([tool, "quantize", in_path, ours_path, "--type", qt, "--blocksize", bs, "--dq", int(dq)])
                ours = load_file(ours_path)
                bnb_tensors = {}
                for name, w in inputs.items():
                    where = f"{cfg} {name}"
                    n = w.numel()
                    x = w.float().numpy().reshape(-1)
                    packed, state = F.quantize_4bit(w, blocksize=bs, compress_statistics=dq, quant_type=qt)
                    qs = state.as_dict(packed=True)
                    bnb_tensors[f"{name}.weight"] = packed
                    for k, v in qs.items():
                        bnb_tensors[f"{name}.weight.{k}"] = v

                    # packed codes
                    mine = ours[f"{name}.weight"]
                    assert mine.dtype == torch.uint8 and tuple(mine.shape) == tuple(packed.shape), \
                        f"{where}: weight {mine.dtype} {tuple(mine.shape)} vs bnb {packed.dtype} {tuple(packed.shape)}"
                    c_ours, c_bnb = unpack(mine.numpy(), n), unpack(packed.numpy(), n)
                    c_cuda, c_cpu = codes_cuda(x, bs, qt), codes_bnb_cpu(x, bs, qt)
                    assert np.array_equal(c_ours, c_cuda), \
                        f"{where}: our codes differ from the CUDA rule at {np.flatnonzero(c_ours != c_cuda)[:10]}"
                    assert np.array_equal(c_bnb, c_cpu), \
                        f"{where}: bnb's codes differ from its emulated CPU rule at {np.flatnonzero(c_bnb != c_cpu)[:10]}"
                    predicted, actual = c_cuda != c_cpu, c_ours != c_bnb
                    assert np.array_equal(predicted, actual), f"{where}: unpredicted code differences"
                    counts["packed"][0] += int(predicted.sum())
                    counts["packed"][1] += c_ours.size
                    # why: zero block | FP4 near 0 (CUDA's sign rule) | tail block (division) | threshold literals
                    blk = np.arange(c_ours.size) // bs
                    am_blk = block_absmax(x, bs)[np.minimum(blk, x.size // bs if x.size % bs else blk.max())]
                    zero = predicted & (am_blk == 0)
                    near0 = predicted & ~zero & np.isin(c_cuda, (0, 8)) & np.isin(c_cpu, (0, 8)) if qt == "fp4" \
                        else np.zeros_like(predicted)
                    tail = predicted & ~zero & ~near0 & (c_cpu != codes_bnb_cpu(x, bs, qt, tail_divides=False))
                    for key, mask in (("zero_block", zero), ("fp4_near_zero", near0), ("tail_division", tail),
                                      (f"literal_{qt}", predicted & ~zero & ~near0 & ~tail)):
                        counts[key] = counts.get(key, 0) + int(mask.sum())

                    # scales
                    absmax = block_absmax(x, bs)
                    qm = ours[f"{name}.weight.quant_map"].numpy()
                    assert np.array_equal(qm.view(np.uint32), state.code.numpy().view(np.uint32)), f"{where}: quant_map"
                    blob = bytes(ours[f"{name}.weight.quant_state.bitsandbytes__{qt}"].tolist())
                    bnb_blob = bytes(qs[f"quant_state.bitsandbytes__{qt}"].tolist())
                    if not dq:
                        mine_am = ours[f"{name}.weight.absmax"].numpy()
                        assert np.array_equal(mine_am.view(np.uint32), state.absmax.numpy().view(np.uint32)), \
                            f"{where}: absmax differs"
                        assert np.array_equal(mine_am.view(np.uint32), absmax.view(np.uint32)), f"{where}: absmax"
                        assert blob == bnb_blob, f"{where}: JSON\n{blob}\n{bnb_blob}"
                        continue
                    import json
                    j, jb = json.loads(blob), json.loads(bnb_blob)
                    off_ours, off_bnb = f32(j.pop("nested_offset")), f32(jb.pop("nested_offset"))
                    assert j == jb, f"{where}: JSON fields {j} vs {jb}"
                    assert ulps(off_ours, off_bnb) <= 1, f"{where}: offset {off_ours!r} vs bnb {off_bnb!r}"
                    assert off_bnb == f32(state.offset.item())
                    offsets_differ[1] += 1
                    if off_ours == off_bnb:
                        assert blob == bnb_blob, f"{where}: JSON bytes\n{blob}\n{bnb_blob}"
                    max_offset_ulps = max(max_offset_ulps, ulps(off_ours, off_bnb))
                    # nested_absmax = max |absmax - offset| moves with the offset: within 1 ulp when the offsets
                    # agree, else within |offset difference| + 1 ulp (a 1-ulp offset step is 2 ulps of a value
                    # half its size).
                    nested_ours = ours[f"{name}.weight.nested_absmax"].numpy()
                    nested_bnb = state.state2.absmax.numpy()
                    if off_ours == off_bnb:
                        assert ulps(nested_ours, nested_bnb) <= 1, f"{where}: nested_absmax {nested_ours} vs {nested_bnb}"
                        max_nested_ulps = max(max_nested_ulps, ulps(nested_ours, nested_bnb))
                    else:
                        slack = abs(float(off_ours) - float(off_bnb)) + np.spacing(nested_bnb).astype(np.float64)
                        assert np.all(np.abs(nested_ours.astype(np.float64) - nested_bnb) <= slack), \
                            f"{where}: nested_absmax moved more than the offset"
                        offsets_differ[0] += 1
                    nqm = ours[f"{name}.weight.nested_quant_map"].numpy()
                    assert np.array_equal(nqm.view(np.uint32), state.state2.code.numpy().view(np.uint32)), \
                        f"{where}: nested_quant_map (the signed dynamic map) differs from bnb's"
                    q_ours, q_bnb = ours[f"{name}.weight.absmax"].numpy(), state.absmax.numpy()
                    q_cuda, nested_cuda = dq_cuda(absmax, off_ours)
                    q_cpu, nested_cpu = dq_bnb_cpu(absmax, off_bnb)
                    assert np.array_equal(q_ours, q_cuda), f"{where}: our absmax codes differ from dQuantize<0>"
                    assert np.array_equal(nested_ours.view(np.uint32), nested_cuda.view(np.uint32)), where
                    assert np.array_equal(q_bnb, q_cpu), f"{where}: bnb's absmax codes differ from its emulated LUT rule"
                    predicted, actual = q_cuda != q_cpu, q_ours != q_bnb
                    assert np.array_equal(predicted, actual), f"{where}: unpredicted absmax code differences"
                    counts["absmax_q"][0] += int(predicted.sum())
                    counts["absmax_q"][1] += q_ours.size

                # Dequantize the same bytes with both libraries: bnb's bytes (our reader and kernels), and ours
                # (bnb's QuantState.from_dict reads our checkpoint tensors).
                bnb_path = os.path.join(work, f"bnb_{qt}_{bs}_{int(dq)}.safetensors")
                save_file(bnb_tensors, bnb_path)
                for source, tensors in (("bnb", bnb_tensors), ("ours", ours)):
                    path = bnb_path if source == "bnb" else ours_path
                    out_path = os.path.join(work, f"deq_{source}_{qt}_{bs}_{int(dq)}.safetensors")
                    run([tool, "dequantize", path, out_path])
                    deq = load_file(out_path)
                    for name, w in inputs.items():
                        check_dequantize(f"{cfg} {name} dequantize {source}'s bytes", tensors, name, w, deq[name],
                                         qt, bs, dq)
                print(f"ok {cfg}")

    print(f"packed codes: {counts['packed'][0]} of {counts['packed'][1]} differ from bnb CPU, all predicted: "
          f"{counts['zero_block']} in all-zero blocks, {counts['fp4_near_zero']} FP4 near 0 (sign rule), "
          f"{counts['tail_division']} from the tail block's division, {counts['literal_fp4']} at FP4's off-midpoint "
          f"literal thresholds, {counts['literal_nf4']} at NF4's one-ulp-off literals")
    print(f"DQ absmax codes: {counts['absmax_q'][0]} of {counts['absmax_q'][1]} differ, all predicted "
          f"(bnb CPU's 65536-bin LUT, zero groups, offset ulps); offset max {max_offset_ulps} ulp "
          f"({offsets_differ[0]} of {offsets_differ[1]} DQ tensors), nested_absmax max {max_nested_ulps} ulp "
          f"where the offsets agree")
    print(f"dequantize of the same bytes (bnb's and ours): {counts['dequant'][0]} of {counts['dequant'][1]} values differ, all predicted: "
          f"{counts['row_index'][0]} from bnb's AVX512 absmax row indexing (K % blocksize != 0), the rest FP4 "
          f"code 8 decoded as +0 (ours -0)")


if __name__ == "__main__":
    sys.exit(main(test))
