#!/usr/bin/env bash
# qlora-eval and qlora-generate on bad input: one clear message naming the file/flag, exit code 2, never a
# crash; plus the happy paths' output shape (perplexity JSON keys, the MMLU table and JSON report).
#   bash tests/cli/test_eval_errors.sh BIN_DIR SOURCE_DIR
set -uo pipefail
BIN_DIR=$(cd "${1:?BIN_DIR}" && pwd)
SRC=$(cd "${2:?SOURCE_DIR}" && pwd)
EVAL=$BIN_DIR/qlora-eval
GEN=$BIN_DIR/qlora-generate
for b in "$EVAL" "$GEN"; do [ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }; done
MODEL=$SRC/models/stories260k
MMLU=$SRC/tests/data/mmlu/hendrycks
TMP=$(mktemp -d /tmp/qlora_eval_cli_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run EXPECTED_RC PATTERN PROGRAM ARGS...: the exit code must be EXPECTED_RC; with a PATTERN, stderr must hold
# exactly one error line, and it must contain PATTERN (grep -F).
run() {
  local want=$1 pattern=$2 prog=$3; shift 3
  "$prog" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  local rc=$?
  local name
  name=$(basename "$prog")
  [ "$rc" = "$want" ] || { fail "$name $*: exit $rc, expected $want; stderr: $(cat "$TMP/err")"; return; }
  if [ -n "$pattern" ]; then
    [ "$(grep -c 'error' "$TMP/err")" = 1 ] || fail "$name $*: expected one error line, got: $(cat "$TMP/err")"
    grep -qF -- "$pattern" "$TMP/err" || fail "$name $*: stderr lacks '$pattern': $(cat "$TMP/err")"
  fi
}

# ---- happy paths ----
printf '{"text": "Once upon a time, there was a little girl named Lily."}\n{"text": "She liked to play."}\n' >"$TMP/docs.jsonl"
run 0 "" "$EVAL" --model "$MODEL" --perplexity "$TMP/docs.jsonl" --json "$TMP/ppl.json"
for key in nll_per_token perplexity tokens tokens_per_second; do
  grep -qF "\"$key\"" "$TMP/ppl.json" || fail "perplexity JSON lacks $key: $(cat "$TMP/ppl.json")"
done
# The bundled model is the default --model.
run 0 "" "$EVAL" --perplexity "$TMP/docs.jsonl"
grep -qF '"nll_per_token"' "$TMP/out" || fail "perplexity with the default model printed no JSON"

run 0 "" "$EVAL" --mmlu --data "$MMLU" --split test --shots 0 --subjects management --max-questions 9 \
  --json "$TMP/mmlu.json" --predictions "$TMP/pred.jsonl"
grep -qF 'micro accuracy' "$TMP/out" || fail "MMLU output lacks the micro/macro line: $(cat "$TMP/out")"
grep -qF '| management' "$TMP/out" || fail "MMLU table lacks the subject row: $(cat "$TMP/out")"
grep -qF '"total": 9' "$TMP/mmlu.json" || fail "MMLU JSON total is not 9: $(cat "$TMP/mmlu.json")"
[ "$(wc -l <"$TMP/pred.jsonl")" = 9 ] || fail "predictions file should have 9 lines"

# ---- bad input: exit 2, one message ----
run 2 "model directory $TMP/nope does not exist" "$EVAL" --model "$TMP/nope" --perplexity "$TMP/docs.jsonl"
mkdir -p "$TMP/notok" && cp "$MODEL/config.json" "$MODEL/model.safetensors" "$TMP/notok/"
run 2 "$TMP/notok: no tokenizer.model" "$EVAL" --model "$TMP/notok" --perplexity "$TMP/docs.jsonl"
run 2 "$TMP/notok: no tokenizer.model" "$GEN" --model "$TMP/notok" --prompt hi
mkdir -p "$TMP/noconfig" && cp "$MODEL/tokenizer.model" "$TMP/noconfig/"
run 2 "$TMP/noconfig: no config.json" "$EVAL" --model "$TMP/noconfig" --mmlu --data "$MMLU"
# Adapters: missing directory, a directory without adapter files, a broken config, a wrong shape.
run 2 "adapter directory $TMP/noadapter does not exist" "$EVAL" --adapter "$TMP/noadapter" --perplexity "$TMP/docs.jsonl"
mkdir -p "$TMP/empty_adapter"
run 2 "no adapter_config.json" "$GEN" --adapter "$TMP/empty_adapter" --prompt hi
mkdir -p "$TMP/bad_adapter" && printf '{"r": "eight"' >"$TMP/bad_adapter/adapter_config.json"
: >"$TMP/bad_adapter/adapter_model.safetensors"
run 2 "$TMP/bad_adapter" "$EVAL" --adapter "$TMP/bad_adapter" --perplexity "$TMP/docs.jsonl"
# MMLU data and options.
run 2 "$TMP/mmlu_missing: MMLU data not found" "$EVAL" --mmlu --data "$TMP/mmlu_missing"
run 2 "no test/ directory" "$EVAL" --mmlu --data "$SRC/tests/data/mmlu/cais" --split test
run 2 'unknown MMLU subject "astrology"' "$EVAL" --mmlu --data "$MMLU" --split test --subjects management,astrology
run 2 '"anatomy" has no questions' "$EVAL" --mmlu --data "$MMLU" --split test --subjects anatomy
run 2 'MMLU split "train"' "$EVAL" --mmlu --data "$MMLU" --split train
run 2 "MMLU shots = 7" "$EVAL" --mmlu --data "$MMLU" --split test --shots 7
# Without --data: data/mmlu of the working directory (the trainer's mmlu_dataset default).
here=$PWD
cd "$TMP" && run 2 "data/mmlu: no MMLU data here (the default of --data)" "$EVAL" --mmlu
mkdir -p "$TMP/cwd/data" && ln -s "$MMLU" "$TMP/cwd/data/mmlu"
cd "$TMP/cwd" && run 0 "" "$EVAL" --mmlu --split test --shots 5 --subjects management --max-questions 3 \
  --json "$TMP/default_data.json"
cd "$here"
grep -qF '"total": 3' "$TMP/default_data.json" || fail "MMLU with the default --data: $(cat "$TMP/default_data.json")"
run 2 "exactly one of --perplexity FILE or --mmlu" "$EVAL" --mmlu --data "$MMLU" --perplexity "$TMP/docs.jsonl"
run 2 "exactly one of --perplexity FILE or --mmlu" "$EVAL"
# Perplexity input.
run 2 "text file $TMP/none.txt does not exist" "$EVAL" --perplexity "$TMP/none.txt"
printf '{"text": "ok"}\n{"txt": "typo"}\n' >"$TMP/bad.jsonl"
run 2 "bad.jsonl:2" "$EVAL" --perplexity "$TMP/bad.jsonl"
: >"$TMP/empty.txt"
run 2 "$TMP/empty.txt: no text to score" "$EVAL" --perplexity "$TMP/empty.txt"
run 2 "window (max length) must be in [2, 512]" "$EVAL" --perplexity "$TMP/docs.jsonl" --max-length 4096
# Device and quantization flags.
run 2 '--quant-type "int3"' "$EVAL" --perplexity "$TMP/docs.jsonl" --quant-type int3
run 2 '--device "tpu"' "$GEN" --prompt hi --device tpu
run 2 "--blocksize 48" "$GEN" --prompt hi --quant-type nf4 --blocksize 48
# Generation flags.
run 2 "top-p must be in (0, 1]" "$GEN" --prompt hi --top-p 0
run 2 "temperature must be >= 0" "$GEN" --prompt hi --temperature -1
run 2 "exactly one of --prompt TEXT, --prompts FILE or --interactive" "$GEN"
run 2 "prompts file $TMP/none.txt does not exist" "$GEN" --prompts "$TMP/none.txt"
printf '{"prompt": "a"}\n{"question": "b"}\n' >"$TMP/bad_prompts.jsonl"
run 2 'bad_prompts.jsonl:2: expected a string field "prompt" or "input"' "$GEN" --prompts "$TMP/bad_prompts.jsonl"
# Usage errors from the flag parser: exit 2 as well.
run 2 "" "$EVAL" --no-such-flag
run 2 "" "$GEN" --max-new-tokens many --prompt hi

[ "$fails" = 0 ] && echo "PASS" || { echo "$fails failure(s)"; exit 1; }
