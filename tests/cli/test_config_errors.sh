#!/usr/bin/env bash
# qlora-train configuration handling from the command line: --help lists the keys, --dry-run prints the
# effective config, and bad configs give one clear message (file:line, key) with exit code 2.
#   bash tests/cli/test_config_errors.sh BIN_DIR SOURCE_DIR
set -uo pipefail
BIN=$(cd "${1:?BIN_DIR}" && pwd)/qlora-train
SRC=$(cd "${2:?SOURCE_DIR}" && pwd)
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
TMP=$(mktemp -d /tmp/qlora_cfg_cli_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run EXPECTED_RC PATTERN ARGS...: exit code must be EXPECTED_RC and stderr must contain PATTERN (grep -F)
# on exactly one line (one clear message, no stack of errors).
run() {
  local want=$1 pattern=$2; shift 2
  (cd "$TMP" && "$BIN" "$@") >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" = "$want" ] || { fail "qlora-train $*: exit $rc, expected $want; stderr: $(cat "$TMP/err")"; return; }
  if [ -n "$pattern" ]; then
    grep -qF -- "$pattern" "$TMP/err" || fail "qlora-train $*: stderr lacks '$pattern': $(cat "$TMP/err")"
    [ "$(wc -l <"$TMP/err")" = 1 ] || fail "qlora-train $*: expected a one-line message, got: $(cat "$TMP/err")"
  fi
}

# --help: flags and every key group.
run 0 "" --help
for k in --config --set --resume --dry-run learning_rate lora_modules paged_adamw_32bit loss_normalization mmlu_shots; do
  grep -qF -- "$k" "$TMP/out" || fail "--help does not mention $k"
done

# --dry-run prints the effective configuration as JSON (file, then --set) and exits 0.
run 0 "" --config "$SRC/configs/7b_oasst1.json" --set lora_r=32 --set "lora_modules=q_proj,v_proj" --dry-run
grep -qF '"lora_r": 32' "$TMP/out" || fail "--dry-run: --set lora_r=32 not applied"
grep -qF '"max_steps": 1875' "$TMP/out" || fail "--dry-run: preset value max_steps missing"
grep -qF '"model_name_or_path": "models/llama-7b-hf"' "$TMP/out" || fail "--dry-run: model path missing"
# The printed config is itself a valid config file that gives the same output.
cp "$TMP/out" "$TMP/effective.json"
(cd "$TMP" && "$BIN" --config effective.json --dry-run) >"$TMP/out2" 2>"$TMP/err2" || { cat "$TMP/err2"; fail "effective config does not reload"; }
cmp -s "$TMP/out" "$TMP/out2" || fail "effective config changes on reload"
# YAML works too, and --set alone (no file) is enough.
printf 'model_name_or_path: m\ndataset: d.jsonl\nlearning_rate: 1e-4\n' >"$TMP/ok.yaml"
run 0 "" --config ok.yaml --dry-run
grep -qF '"learning_rate": 0.0001' "$TMP/out" || fail "YAML learning_rate not applied"
run 0 "" --set model_name_or_path=m --set dataset=d.jsonl --dry-run

# Shipped configs (all of them are checked by test_base ShippedConfigs; here one with a base chain).
run 0 "" --config "$SRC/configs/table4/65b_flan_v2_bf16.json" --dry-run
grep -qF '"bits": 16' "$TMP/out" || fail "table4 variant: bits 16 not applied"
grep -qF '"max_steps": 2500' "$TMP/out" || fail "table4 variant: base preset not loaded"

# Unknown key: file:line, the key, the nearest valid name.
printf '{\n  "model_name_or_path": "m",\n  "dataset": "d.jsonl",\n  "lora_rank": 8\n}\n' >"$TMP/typo.json"
run 2 'typo.json:4: unknown key "lora_rank"; did you mean "lora_r"?' --config typo.json --dry-run
run 2 'unknown key "learnig_rate"; did you mean "learning_rate"?' --config "$SRC/configs/demo.json" --set learnig_rate=1e-4 --dry-run
# Wrong type.
printf '{"model_name_or_path": "m", "dataset": "d.jsonl",\n "max_steps": "many"}\n' >"$TMP/type.json"
run 2 'type.json:2: key "max_steps": expected an integer, got string "many"' --config type.json --dry-run
run 2 '--set bf16=maybe: key "bf16": expected true or false' --config "$SRC/configs/demo.json" --set bf16=maybe --dry-run
# Bad enum value lists the valid ones.
run 2 '"cosin" is not valid (did you mean "cosine"?); valid values: "constant", "linear", "cosine", "constant_with_warmup"' \
  --config "$SRC/configs/demo.json" --set lr_scheduler_type=cosin --dry-run
# Negative learning rate, named with where it was set.
printf '{"model_name_or_path": "m", "dataset": "d.jsonl",\n\n "learning_rate": -0.0002}\n' >"$TMP/neg.json"
run 2 'neg.json:3: learning_rate = -0.0002: must be > 0' --config neg.json --dry-run
run 2 'lora_dropout = 1.5: must be in [0, 1)' --config "$SRC/configs/demo.json" --set lora_dropout=1.5 --dry-run
# Integers that would wrap: an unsigned JSON number past int64 (it used to become -1), and each key's bound.
printf '{"model_name_or_path": "m", "dataset": "d.jsonl",\n "max_steps": 18446744073709551615}\n' >"$TMP/big.json"
run 2 'big.json:2: key "max_steps": 18446744073709551615 does not fit a 64-bit signed integer' --config big.json --dry-run
run 2 'gradient_accumulation_steps = 10000000000000: must be <= 65536' --config "$SRC/configs/demo.json" \
  --set gradient_accumulation_steps=10000000000000 --dry-run
# Missing model path: named, with how to fix it.
printf '{"dataset": "d.jsonl"}\n' >"$TMP/nomodel.json"
run 2 'nomodel.json (not set, default): model_name_or_path is not set' --config nomodel.json --dry-run
# A model directory that does not exist (checked when actually running, not for --dry-run).
touch "$TMP/d.jsonl"
run 2 'model_name_or_path = "no/such/model": no such directory' --config neg.json --set learning_rate=1e-4 \
  --set model_name_or_path=no/such/model
# Broken JSON, missing file, bad flag.
printf '{"lora_r": 8,,}\n' >"$TMP/broken.json"
run 2 'broken.json:1:' --config broken.json --dry-run
run 2 'missing.json: config file not found' --config missing.json --dry-run
run 2 'not expected: --bogus' --bogus

if [ "$fails" -gt 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "ok"
