#!/usr/bin/env bash
# Data-parallel throughput: qlora-train on N ranks (--nproc-per-node, Gloo on the CPU / NCCL on GPUs) against
# one process on the same global batch, measured in the same run. Prints a table and writes OUT/bench_ddp.json.
#   scripts/bench_ddp.sh [--bin-dir build/bin] [--nproc 2] [--steps 30] [--out out/bench_ddp] [--set key=value ...]
# On the CPU each of the N ranks gets cores / N threads; the single process runs with 1 thread and with all the
# cores, and the faster of the two is the baseline (on small models 1 thread is often faster). Default workload: the demo preset (stories260K,
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
for threads in 1 $cores; do
  [ "$threads" = 1 ] && [ -d "$out/single_1" ] && continue
  echo "1 process x batch $((per_rank * nproc)), OMP_NUM_THREADS=$threads"
  OMP_NUM_THREADS=$threads "$bin/qlora-train" "${common[@]}" --set per_device_train_batch_size=$((per_rank * nproc)) \
    --set output_dir="$out/single_$threads"
done
echo "$nproc ranks x batch $per_rank, OMP_NUM_THREADS=$(( cores / nproc > 0 ? cores / nproc : 1 )) each"
OMP_NUM_THREADS=$(( cores / nproc > 0 ? cores / nproc : 1 )) "$bin/qlora-train" "${common[@]}" \
  --set per_device_train_batch_size=$per_rank --set output_dir="$out/ddp" --nproc-per-node "$nproc"
python3 - "$out" "$nproc" "$cores" <<'PY'
import json, sys
out, n, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {t: json.load(open(f"{out}/single_{t}/train_results.json")) for t in sorted({1, cores})}
ddp = json.load(open(f"{out}/ddp/train_results.json"))
best_t = max(runs, key=lambda t: runs[t]["train_tokens_per_second"])
a, b = runs[best_t]["train_tokens_per_second"], ddp["train_tokens_per_second"]
res = {"single": {str(t): {"tokens_per_second": r["train_tokens_per_second"], "train_loss": r["train_loss"]}
                  for t, r in runs.items()},
       "baseline_threads": best_t, "ranks": n, "ddp_tokens_per_second": b, "ddp_train_loss": ddp["train_loss"],
       "ratio": b / a}
print("| run | tokens/s | train loss |\n|---|---|---|")
for t, r in runs.items():
    print(f"| 1 process, {t} thread(s) | {r['train_tokens_per_second']:.0f} | {r['train_loss']:.6f} |")
print(f"| {n} ranks | {b:.0f} | {ddp['train_loss']:.6f} |")
print(f"ratio {n} ranks / best single process ({best_t} thread(s)): {b / a:.2f}x")
json.dump(res, open(f"{out}/bench_ddp.json", "w"), indent=2)
PY
