#!/usr/bin/env bash
# Corrupt model inputs through qlora-export: each ends with one clear message naming the file (and tensor or
# key) and exit code 2, never a crash. The corrupt copies are made from the bundled models/stories260k.
#   bash tests/cli/test_model_errors.sh BIN_DIR SOURCE_DIR
set -uo pipefail
BIN=$(cd "${1:?BIN_DIR}" && pwd)/qlora-export
SRC=$(cd "${2:?SOURCE_DIR}" && pwd)
MODEL=$SRC/models/stories260k
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
TMP=$(mktemp -d /tmp/qlora_model_cli_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run EXPECTED_RC ARGS... -- PATTERNS...: exit code and one stderr line holding every pattern (grep -F).
run() {
  local want=$1; shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  "$BIN" "${args[@]}" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" = "$want" ] || { fail "qlora-export ${args[*]}: exit $rc, expected $want; stderr: $(cat "$TMP/err")"; return; }
  for p in "$@"; do
    grep -qF -- "$p" "$TMP/err" || fail "qlora-export ${args[*]}: stderr lacks '$p': $(cat "$TMP/err")"
  done
  if [ "$want" = 2 ] && [ "${MULTILINE_OK:-0}" = 0 ]; then
    [ "$(wc -l <"$TMP/err")" = 1 ] || fail "qlora-export ${args[*]}: expected a one-line message, got: $(cat "$TMP/err")"
  fi
}

# variant NAME: a copy of the bundled model in $TMP/NAME (then edited by the caller)
variant() { rm -rf "$TMP/$1"; cp -r "$MODEL" "$TMP/$1"; echo "$TMP/$1"; }
quantize() { run "$1" quantize --model "$2" --out "$TMP/q_out" -- "${@:3}"; }

# The intact model quantizes (the baseline every case below breaks one thing of).
quantize 0 "$MODEL"
[ -f "$TMP/q_out/model.safetensors" ] || fail "quantize wrote no model.safetensors"

d=$(variant truncated)
head -c 600000 "$MODEL/model.safetensors" >"$d/model.safetensors"
quantize 2 "$d" "$d/model.safetensors" "truncated"

d=$(variant bad_header)
# u64 header length 24, then 24 bytes that are not JSON
printf '\x18\x00\x00\x00\x00\x00\x00\x00{"model.norm": nope!!!!}' >"$d/model.safetensors"
quantize 2 "$d" "$d/model.safetensors" "JSON"

d=$(variant wrong_shape)  # config says intermediate 171, the tensors hold 172
sed -i 's/"intermediate_size": 172/"intermediate_size": 171/' "$d/config.json"
quantize 2 "$d" "$d/model.safetensors" "model.layers.0.mlp.gate_proj.weight" "[172, 64]" "[171, 64]"

d=$(variant missing_tensor)  # config says 6 layers, the file holds 5
sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 6/' "$d/config.json"
quantize 2 "$d" "model.layers.5." "missing"

d=$(variant unexpected_tensor)  # config says 4 layers, the file holds 5
sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 4/' "$d/config.json"
quantize 2 "$d" "$d/model.safetensors" "unexpected tensor model.layers.4."

d=$(variant unsupported_arch)
sed -i 's/"model_type": "llama"/"model_type": "gpt2"/' "$d/config.json"
quantize 2 "$d" "$d/config.json" "model_type" "gpt2"

d=$(variant bad_config_json)
echo '{"model_type": "llama",' >"$d/config.json"
quantize 2 "$d" "$d/config.json" "JSON"

d=$(variant no_config)
rm "$d/config.json"
quantize 2 "$d" "$d/config.json" "not found"

d=$(variant deep_config_json)  # a million nested lists: used to overflow the stack in dump() for the message
{ printf '{"model_type": "llama", "architectures": '; head -c 1000000 /dev/zero | tr '\0' '['
  head -c 1000000 /dev/zero | tr '\0' ']'; printf '}\n'; } >"$d/config.json"
quantize 2 "$d" "$d/config.json" "nested deeper than 64 levels"

quantize 2 "$TMP/does_not_exist" "$TMP/does_not_exist"
run 2 quantize --model "$MODEL" --out "$TMP/q_bad" --quant-type int4 -- "int4"
run 2 quantize --model "$MODEL" --out "$TMP/q_bad" --blocksize 48 -- "48"

# convert-llama2c: a missing tokenizer, a truncated checkpoint, a header that does not fit the file.
printf '\x40\x00\x00\x00\xac\x00\x00\x00\x05\x00\x00\x00\x08\x00\x00\x00\x04\x00\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00' >"$TMP/header_only.bin"
run 2 convert-llama2c --checkpoint "$TMP/header_only.bin" --tokenizer "$TMP/missing.model" --out "$TMP/c" -- \
  "$TMP/missing.model" "tokenizer"
run 2 convert-llama2c --checkpoint "$TMP/header_only.bin" --tokenizer "$MODEL/tokenizer.model" --out "$TMP/c" -- \
  "$TMP/header_only.bin" "28 bytes" "needs 1056540"
head -c 20 "$TMP/header_only.bin" >"$TMP/short.bin"
run 2 convert-llama2c --checkpoint "$TMP/short.bin" --tokenizer "$MODEL/tokenizer.model" --out "$TMP/c" -- \
  "$TMP/short.bin" "header"
echo 'not a sentencepiece model' >"$TMP/bad.model"
STORIES_BIN=${QLORA_STORIES_BIN:-/work/shared/testdata/stories260K/stories260K.bin}
if [ -f "$STORIES_BIN" ]; then
  run 2 convert-llama2c --checkpoint "$STORIES_BIN" --tokenizer "$TMP/bad.model" --out "$TMP/c" -- "$TMP/bad.model"
  # and the real one converts to exactly the bundled files
  run 0 convert-llama2c --checkpoint "$STORIES_BIN" --tokenizer "$MODEL/tokenizer.model" --out "$TMP/conv" --
  for f in config.json model.safetensors tokenizer.model tokenizer_config.json special_tokens_map.json generation_config.json; do
    cmp -s "$TMP/conv/$f" "$MODEL/$f" || fail "convert-llama2c: $f differs from models/stories260k/$f"
  done
fi

# usage errors are exit 2 as well (CLI11 adds a "Run with --help" line)
MULTILINE_OK=1 run 2 quantize --out "$TMP/x" -- "--model"
MULTILINE_OK=1 run 2 no-such-command --

if [ "$fails" -gt 0 ]; then
  echo "$fails failure(s)"
  exit 1
fi
echo "PASS"
