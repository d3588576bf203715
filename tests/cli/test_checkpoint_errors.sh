#!/usr/bin/env bash
# A checkpoint damaged by hand (issue 10 item 8): --resume exits with code 2 and one message naming the file,
# never exit code 1 with a bare nlohmann/torch message (before: "[json.exception.type_error.302] type must be
# number, but is string" or torch's generator-state error, exit code 1, no path).
# Usage: test_checkpoint_errors.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "$0")/train_test_lib.sh"
cli_test_init ckpt_err "${1:?BIN_DIR}" "${2:?SOURCE_DIR}" qlora-train

common=("${quick_run[@]}" --set log_level=warn --set max_steps=3 --set save_steps=2)
"$train" "${common[@]}" --set max_steps=2 --set output_dir="$work/good" > /dev/null 2> "$work/good.err" \
  || { fail "first run: $(tail -3 "$work/good.err")"; finish; }

# damaged NAME FILE PYTHON-EDIT PATTERN: a copy of the run whose checkpoint-2/FILE PYTHON-EDIT changed (it sees
# the file's JSON as `j`, or its path as `p`); --resume must exit 2 with one message naming the file and PATTERN.
damaged() {
  local name=$1 file=$2 edit=$3 pattern=$4
  local out=$work/$name
  cp -r "$work/good" "$out"
  python3 - "$out/checkpoint-2/$file" <<PY || { fail "$name: could not damage $file"; return; }
import json, struct, sys
p = sys.argv[1]
if p.endswith(".json"):
    j = json.load(open(p))
    $edit
    json.dump(j, open(p, "w"))
else:
    $edit
PY
  rc=0
  "$train" "${common[@]}" --set output_dir="$out" --resume > /dev/null 2> "$out.err" || rc=$?
  expect_error "$name" "$rc" "$out.err" "$out/checkpoint-2/$file: " "$pattern"
}

damaged opt-version optimizer.json 'j["version"] = "one"' "unreadable optimizer state"
damaged opt-shape optimizer.json 'j["params"][0]["shape"] = "4x8"' "unreadable optimizer state"
damaged opt-betas optimizer.json 'j["hyperparameters"] = {"beta1": "0.9"}' "unreadable optimizer state"
# A safetensors file whose torch_cpu tensor is 4 bytes: a valid file, but not a generator state.
damaged rng-state rng_state.safetensors '
    h = json.dumps({"torch_cpu": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}).encode()
    open(p, "wb").write(struct.pack("<Q", len(h)) + h + bytes(4))' "not a generator state torch accepts"
damaged sched scheduler.json 'j["base_lr"] = "fast"' "base_lr"
damaged state trainer_state.json 'j["tokens_seen"] = "many"' "type must be number"
damaged adapter-config adapter_config.json 'j["r"] = "eight"' "adapter_config.json"
finish
