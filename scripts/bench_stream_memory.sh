#!/usr/bin/env bash
# Peak resident memory of qlora-train on a large JSON Lines dataset against the bundled 400-record demo data,
# measured in the same run (the streamed data path: README "Datasets"; issue: a dataset larger than RAM trains).
#   scripts/bench_stream_memory.sh [--bin-dir build/bin] [--size-mb 2048] [--steps 20] [--data FILE]
# Writes FILE (default: a temporary file) of about --size-mb MiB by repeating data/demo/alpaca_demo.jsonl with
# a record number in each instruction, trains the demo preset for --steps steps on the demo data and then on
# FILE (/usr/bin/time -v), and prints both peak RSS values, the difference and one JSON line. An existing --data
# FILE is used as it is. 2048 MiB takes about 30 min on 2 cores, nearly all of it tokenizing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/build/bin"; size_mb=2048; steps=20; data=""
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin=$2; shift 2 ;;
    --size-mb) size_mb=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "bench_stream_memory.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$size_mb" "$steps"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench_stream_memory.sh: '$v': expected a positive integer" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "bench_stream_memory.sh: needs /usr/bin/time (Debian package time)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$root"
demo=data/demo/alpaca_demo.jsonl
if [ -z "$data" ]; then data=$tmp/big.jsonl; fi
if [ ! -e "$data" ]; then
  python3 - "$demo" "$data" "$size_mb" <<'PY'
import json, sys
src, dst, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
records = [json.loads(line) for line in open(src, encoding="utf-8")]
limit, written, n = size_mb << 20, 0, 0
with open(dst, "w", encoding="utf-8") as f:
    while written < limit:
        r = dict(records[n % len(records)])
        r["instruction"] = f"{r['instruction']} (#{n})"
        line = json.dumps(r, ensure_ascii=False) + "\n"
        f.write(line)
        written += len(line.encode("utf-8"))
        n += 1
print(f"bench_stream_memory.sh: wrote {dst}: {n} records, {written / (1 << 20):.0f} MiB", file=sys.stderr)
PY
fi

# One training run on DATASET; prints its peak RSS in KiB (its log stays in $tmp/log).
peak_rss_kib() {
  local out=$tmp/out_$2
  if ! /usr/bin/time -v "$bin/qlora-train" --config configs/demo.json --set dataset="$1" --set max_steps="$steps" \
      --set output_dir="$out" --set save_strategy=no > "$tmp/log" 2>&1; then
    echo "bench_stream_memory.sh: the run on $1 failed; its log:" >&2; cat "$tmp/log" >&2; exit 1
  fi
  sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/log"
}
start=$(date +%s)
small=$(peak_rss_kib "$demo" demo)
big=$(peak_rss_kib "$data" big)
bytes=$(stat -c %s "$data")
mib() { echo $(( $1 / 1024 )); }
echo "peak RSS: demo data $(mib "$small") MiB, $(( bytes >> 20 )) MiB JSONL $(mib "$big") MiB, difference $(mib $(( big - small ))) MiB ($(( $(date +%s) - start )) s)"
printf '{"steps": %d, "data_bytes": %d, "demo_peak_rss_kib": %d, "big_peak_rss_kib": %d, "difference_kib": %d}\n' \
  "$steps" "$bytes" "$small" "$big" $(( big - small ))
