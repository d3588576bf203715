#!/usr/bin/env bash
# The default thread count against one thread, measured in the same run (qlora/common/threads.h has the rule).
#   scripts/bench_threads.sh [--bin-dir build/bin] [--shape demo|tiny|small|7b] [--steps N] [--reps 3]
#                            [--env KEY=VALUE ...]
# demo: qlora-train on the demo preset (the bundled stories260k); other shapes: qlora-bench train --shape S
# (random weights, seq 128). Runs "default" (OMP_NUM_THREADS unset: the programs' rule) and OMP_NUM_THREADS=1
# alternately, --reps times each, and prints every run's tokens/s, the medians and default/1-thread. --env adds
# a variable to the default runs (e.g. --env OMP_WAIT_POLICY=PASSIVE). Alternating keeps a busy machine's drift
# out of the ratio; on a shared machine, read it with the load average it prints.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/build/bin"; shape=demo; steps=""; reps=3; env_default=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --env) env_default+=("$2"); shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "bench_threads.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || { echo "bench_threads.sh: --reps '$reps': expected a positive integer" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$root"

fail() { echo "bench_threads.sh: a run failed; its log:" >&2; cat "$tmp/log" >&2; exit 1; }

# One run; prints its tokens/s (its log, with the program's "threads:" line, is left in $tmp/log).
run() {
  local out="$tmp/run"; rm -rf "$out"
  if [ "$shape" = demo ]; then
    "$@" "$bin/qlora-train" --config configs/demo.json --set max_steps="${steps:-10}" --set output_dir="$out" \
      --set do_eval=false --set evaluation_strategy=no --set save_strategy=no 2>"$tmp/log" >/dev/null || fail
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train_tokens_per_second'])" "$out/train_results.json"
  else
    "$@" "$bin/qlora-bench" train --device cpu --shape "$shape" --seq-len 128 --steps "${steps:-4}" --warmup 1 \
      --json "$out.json" 2>"$tmp/log" >/dev/null || fail
    python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens_per_second'])" "$out.json"
  fi
}

default=(); one=()
for ((i = 1; i <= reps; i++)); do
  d=$(run env -u OMP_NUM_THREADS "${env_default[@]}"); default+=("$d")
  o=$(run env OMP_NUM_THREADS=1); one+=("$o")
  echo "rep $i: default $d tokens/s, 1 thread $o tokens/s (load average $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "$shape" "$(nproc)" "${default[*]}" "${one[*]}" <<'PY'
import statistics, sys
shape, cores, d, o = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3].split()], [float(x) for x in sys.argv[4].split()]
md, mo = statistics.median(d), statistics.median(o)
print(f"{shape} on {cores} cores: default {md:.1f} tokens/s, 1 thread {mo:.1f} tokens/s (medians of {len(d)}); "
      f"default / 1 thread = {md / mo:.2f}")
PY
