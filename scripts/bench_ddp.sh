#!/usr/bin/env bash
# Data-parallel throughput: qlora-train on N ranks (--nproc-per-node, Gloo on the CPU / NCCL on GPUs) against
# one process on the same global batch, measured in the same run. Prints a table and writes OUT/bench_ddp.json.
#   scripts/bench_ddp.sh [--bin-dir build/bin] [--nproc 2] [--steps 30] [--out out/bench_ddp] [--set key=value ...]
# On the CPU the single process gets all the cores (OMP_NUM_THREADS = cores) and each of the N ranks
# cores / N threads, so the comparison is at equal hardware. Default workload: the demo preset (stories260K,
# NF4 + DQ, LoRA r 8) with 2 sequences per rank per micro-batch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/build/bin"; nproc=2; steps=30; out="$root/out/bench_ddp"; extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "bench_ddp.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
cores=$(nproc)
per_rank=2
common=(--config "$root/configs/demo.json" --set max_steps="$steps" --set logging_steps=5 --set save_strategy=no
        --set do_eval=false --set evaluation_strategy=no --set log_level=warn --set lora_dropout=0
        --set model_name_or_path="$root/models/stories260k" --set dataset="$root/data/demo/alpaca_demo.jsonl"
        "${extra[@]}")
rm -rf "$out"; mkdir -p "$out"
cd "$root"
echo "1 process x batch $((per_rank * nproc)), OMP_NUM_THREADS=$cores"
OMP_NUM_THREADS=$cores "$bin/qlora-train" "${common[@]}" --set per_device_train_batch_size=$((per_rank * nproc)) \
  --set output_dir="$out/single"
echo "$nproc ranks x batch $per_rank, OMP_NUM_THREADS=$(( cores / nproc > 0 ? cores / nproc : 1 )) each"
OMP_NUM_THREADS=$(( cores / nproc > 0 ? cores / nproc : 1 )) "$bin/qlora-train" "${common[@]}" \
  --set per_device_train_batch_size=$per_rank --set output_dir="$out/ddp" --nproc-per-node "$nproc"
python3 - "$out" "$nproc" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
one = json.load(open(f"{out}/single/train_results.json"))
ddp = json.load(open(f"{out}/ddp/train_results.json"))
a, b = one["train_tokens_per_second"], ddp["train_tokens_per_second"]
res = {"single_tokens_per_second": a, "ranks": n, "ddp_tokens_per_second": b, "ratio": b / a,
       "single_train_loss": one["train_loss"], "ddp_train_loss": ddp["train_loss"]}
print(f"| run | tokens/s | train loss |\n|---|---|---|\n| 1 process | {a:.0f} | {one['train_loss']:.4f} |\n"
      f"| {n} ranks | {b:.0f} | {ddp['train_loss']:.4f} |\nratio {n} ranks / 1 process: {b / a:.2f}x")
json.dump(res, open(f"{out}/bench_ddp.json", "w"), indent=2)
PY
