#!/usr/bin/env bash
# qlora-train --dry-run: the predicted peak memory per rank (issue 9, deliverable 4).
#   - stdout stays the effective config (reloadable), the estimate goes to stderr, --memory-json writes JSON;
#   - the 4-bit projections of LLaMA-7B (named in the preset's path) match the spec's 4.127 bits per parameter
#     with NF4 + DQ at blocksize 64 (docs/nf4-spec.md section 2.4), computed here from the published shape;
#   - fsdp full_shard on 2 ranks halves them; gradient checkpointing keeps fewer activations than none.
# Usage: test_dry_run_memory.sh BIN_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init dry "$1" "$2" qlora-train
fail() { echo "FAIL: $*"; exit 1; }  # every step needs the one before it: stop at the first failure

"$train" --config configs/7b_oasst1.json --dry-run --memory-json "$work/one.json" >"$work/cfg.json" 2>"$work/err" ||
  { cat "$work/err"; fail "dry run"; }
grep -q "predicted peak memory per rank" "$work/err" || fail "no estimate on stderr"
python3 -c "import json; json.load(open('$work/cfg.json'))" || fail "stdout is not the config JSON"
"$train" --config configs/7b_oasst1.json --set fsdp=full_shard --nproc-per-node 2 --dry-run \
  --memory-json "$work/two.json" >/dev/null 2>&1 || fail "sharded dry run"
python3 - "$work/one.json" "$work/two.json" <<'PY'
import json, sys
one, two = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
# LLaMA-7B (huggyllama/llama-7b config): 32 layers, hidden 4096, intermediate 11008, 7 projections per layer.
params = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
bits = 4 + 8 / 64 + 32 / (64 * 256)          # NF4 codes + 8-bit absmax per 64 + fp32 per 256 blocks: 4.127 bits
want = params * bits / 8
got = one["base_projection_bytes"]
assert abs(got - want) <= 1, (got, want)
assert two["world_size"] == 2 and two["sharded_base"], two
assert abs(two["base_projection_bytes"] - want / 2) <= 1, (two["base_projection_bytes"], want / 2)
assert one["activation_bytes_checkpointed"] < one["activation_bytes_full"], one
assert one["total_bytes_per_rank"] > two["total_bytes_per_rank"], (one, two)
print(f"   7B projections {got / 2**30:.3f} GiB (4.127 bits/param), sharded on 2 ranks {two['base_projection_bytes'] / 2**30:.3f} GiB;"
      f" total per rank {one['total_bytes_per_rank'] / 2**30:.2f} -> {two['total_bytes_per_rank'] / 2**30:.2f} GiB")
PY
echo PASS
