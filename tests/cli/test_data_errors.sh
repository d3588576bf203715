#!/usr/bin/env bash
# qlora-data on bad input: every malformed dataset / tokenizer / flag exits with code 2 and a message that
# names the file, the line and the field; a good gzip file works. Usage: test_data_errors.sh BIN_DIR SOURCE_DIR
set -u
BIN=$1/qlora-data
SRC=$2
TOK=$SRC/tests/data/tokenizer/tok512.model
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# expect_error NAME EXPECTED_SUBSTRING ARGS... : exit code 2 and the substring in stderr.
expect_error() {
  local name=$1 want=$2
  shift 2
  "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne 2 ]; then
    echo "FAIL $name: exit code $rc, expected 2"; cat "$TMP/err"; fails=$((fails + 1)); return
  fi
  if ! grep -qF -- "$want" "$TMP/err"; then
    echo "FAIL $name: stderr lacks: $want"; cat "$TMP/err"; fails=$((fails + 1)); return
  fi
  echo "ok $name: $(head -c 300 "$TMP/err")"
}

printf '{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "a", "input": ""}\n' >"$TMP/missing.jsonl"
expect_error missing-field "$TMP/missing.jsonl:2: field \"output\": missing" show --dataset "$TMP/missing.jsonl" --tokenizer "$TOK"

printf '{"input": "a", "output": "b"}\n\n{"input": ["a"], "output": "b"}\n' >"$TMP/type.jsonl"
expect_error wrong-type "$TMP/type.jsonl:3: field \"input\": expected a string, got an array" show --dataset "$TMP/type.jsonl" --tokenizer "$TOK"

printf '{"input": "a", "output": "b"}\n{"input": "a", "output": "bad \xff byte"}\n' >"$TMP/utf8.jsonl"
expect_error invalid-utf8 "$TMP/utf8.jsonl:2: field \"output\": invalid UTF-8" show --dataset "$TMP/utf8.jsonl" --tokenizer "$TOK"

: >"$TMP/empty.jsonl"
expect_error empty-file "$TMP/empty.jsonl:1: empty file" show --dataset "$TMP/empty.jsonl" --tokenizer "$TOK"

printf '[\n  {"input": "a", "output": "b"},\n  {"input": "a", "output": "b",}\n]\n' >"$TMP/bad.json"
expect_error bad-json "$TMP/bad.json:3: invalid JSON" show --dataset "$TMP/bad.json" --tokenizer "$TOK"

printf '{"message_id": "m1", "parent_id": null, "text": "hi", "role": "user"}\n' >"$TMP/oasst.jsonl"
expect_error oasst-role "$TMP/oasst.jsonl:1: field \"role\"" show --dataset "$TMP/oasst.jsonl" --dataset-format oasst1 --tokenizer "$TOK"

printf '{"question": "a", "answer": "b"}\n' >"$TMP/unknown.jsonl"
expect_error unknown-layout "$TMP/unknown.jsonl:1: cannot infer dataset_format" show --dataset "$TMP/unknown.jsonl" --tokenizer "$TOK"

expect_error unknown-format "dataset_format \"alpacca\"" show --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --dataset-format alpacca --tokenizer "$TOK"
expect_error missing-dataset "$TMP/nope.jsonl: dataset file not found" show --dataset "$TMP/nope.jsonl" --tokenizer "$TOK"
expect_error missing-tokenizer "$TMP/none.model: tokenizer not found" show --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --tokenizer "$TMP/none.model"
printf 'not a model' >"$TMP/corrupt.model"
expect_error corrupt-tokenizer "$TMP/corrupt.model: not a valid SentencePiece model" show --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --tokenizer "$TMP/corrupt.model"
expect_error bad-flag "--source-max-len" show --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --tokenizer "$TOK" --source-max-len abc
expect_error bad-limit "source_max_len: must be >= 1" show --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --tokenizer "$TOK" --source-max-len 0

# A gzip-compressed JSON Lines file reads like the plain one.
gzip -c "$SRC/tests/data/datasets/written/chip2.jsonl" >"$TMP/chip2.jsonl.gz"
"$BIN" show --json -n 0 --dataset "$TMP/chip2.jsonl.gz" --tokenizer "$TOK" >"$TMP/gz.out" 2>"$TMP/err" &&
  "$BIN" show --json -n 0 --dataset "$SRC/tests/data/datasets/written/chip2.jsonl" --tokenizer "$TOK" >"$TMP/plain.out"
if [ $? -ne 0 ] || ! cmp -s "$TMP/gz.out" "$TMP/plain.out" || [ "$(wc -l <"$TMP/gz.out")" -ne 4 ]; then
  echo "FAIL gzip: the .jsonl.gz output differs from the plain file's"; cat "$TMP/err"; fails=$((fails + 1))
else
  echo "ok gzip: 4 examples, same as the plain file"
fi

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo PASS
