#!/usr/bin/env bash
# qlora-generate end to end on the bundled stories260K: the llama2.c greedy sample (tests/data/stories260K/
# SOURCE.md), seeded sampling, stop strings, --prompts in / JSON lines out, the chat template, the
# interactive mode fed through a pipe, and the tokens/s line on stderr.
#   bash tests/cli/test_generate.sh BIN_DIR SOURCE_DIR
set -uo pipefail
GEN=$(cd "${1:?BIN_DIR}" && pwd)/qlora-generate
SRC=$(cd "${2:?SOURCE_DIR}" && pwd)
[ -x "$GEN" ] || { echo "SKIP: $GEN not built"; exit 77; }
TMP=$(mktemp -d /tmp/qlora_generate_cli_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
gen() {  # gen NAME ARGS...: stdout to $TMP/NAME.out, stderr to $TMP/NAME.err; a non-zero exit is a failure
  local name=$1; shift
  "$GEN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || fail "qlora-generate $*: exit $?: $(cat "$TMP/$name.err")"
}
SYSTEM="A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."

# Greedy from BOS (empty prompt, no chat template): llama2.c's run.c sample, and its first token ids.
gen greedy --no-chat --prompt "" --temperature 0 --max-new-tokens 40 --json "$TMP/greedy.jsonl"
grep -qF "Once upon a time, there was a little girl named Lily. She loved to play outside in the park." \
  "$TMP/greedy.out" || fail "greedy sample differs from llama2.c: $(cat "$TMP/greedy.out")"
grep -qF '"prompt_ids":[1],"ids":[403,407,261,378,432,383,286,261,376,298,315,421' "$TMP/greedy.jsonl" \
  || fail "greedy ids differ from SOURCE.md: $(cat "$TMP/greedy.jsonl")"
grep -qF '"finish_reason":"length","new_tokens":40' "$TMP/greedy.jsonl" || fail "greedy JSON: $(cat "$TMP/greedy.jsonl")"
grep -qE '40 new tokens in [0-9.]+ s: [0-9.]+ tokens/s' "$TMP/greedy.err" || fail "no tokens/s on stderr: $(cat "$TMP/greedy.err")"

# Stop strings cut the text before the first hit.
gen stop --no-chat --prompt "" --temperature 0 --max-new-tokens 40 --stop "Lily" --stop "zebra" --json "$TMP/stop.jsonl"
[ "$(cat "$TMP/stop.out")" = "Once upon a time, there was a little girl named " ] || fail "stop: '$(cat "$TMP/stop.out")'"
grep -qF '"finish_reason":"stop"' "$TMP/stop.jsonl" || fail "stop: finish_reason is not stop"

# Seeded sampling (defaults T 0.7, top-p 0.9): same seed -> same text, another seed -> another text.
gen s1 --no-chat --prompt "Once upon a time" --seed 11 --max-new-tokens 48
gen s1b --no-chat --prompt "Once upon a time" --seed 11 --max-new-tokens 48
gen s2 --no-chat --prompt "Once upon a time" --seed 12 --max-new-tokens 48
cmp -s "$TMP/s1.out" "$TMP/s1b.out" || fail "seed 11 twice gave different texts"
cmp -s "$TMP/s1.out" "$TMP/s2.out" && fail "seeds 11 and 12 gave the same text: $(cat "$TMP/s1.out")"

# Chat mode (default): the Guanaco template is what the model is fed.
gen chat --prompt "Who is Lily?" --temperature 0 --max-new-tokens 16 --stop $'\n' --json "$TMP/chat.jsonl"
grep -qF "\"input\":\"$SYSTEM ### Human: Who is Lily? ### Assistant:\"" "$TMP/chat.jsonl" \
  || fail "chat template: $(cat "$TMP/chat.jsonl")"
gen chat_sys --prompt "Hi" --system "Be brief." --temperature 0 --max-new-tokens 4 --json "$TMP/chat_sys.jsonl"
grep -qF '"input":"Be brief. ### Human: Hi ### Assistant:"' "$TMP/chat_sys.jsonl" || fail "--system: $(cat "$TMP/chat_sys.jsonl")"

# --prompts: a text file (one per line, blank lines skipped) and JSONL with "prompt"/"input"; JSON lines out.
printf 'Once upon a time\n\nThe cat\nTom had a ball\n' >"$TMP/prompts.txt"
gen many --no-chat --prompts "$TMP/prompts.txt" --temperature 0 --max-new-tokens 12 --batch-size 2 --json "$TMP/many.jsonl"
[ "$(wc -l <"$TMP/many.out")" = 3 ] || fail "--prompts: expected 3 JSON lines on stdout: $(cat "$TMP/many.out")"
cmp -s "$TMP/many.out" "$TMP/many.jsonl" || fail "--prompts: stdout and --json differ"
grep -qF '"prompt":"The cat"' "$TMP/many.out" || fail "--prompts: second prompt missing"
# Batched (left-padded) greedy equals the prompt alone.
gen one --no-chat --prompt "The cat" --temperature 0 --max-new-tokens 12 --json "$TMP/one.jsonl"
one_ids=$(grep -o '"ids":\[[0-9,]*\]' "$TMP/one.jsonl")
grep -qF "$one_ids" "$TMP/many.jsonl" || fail "batched ids differ from the prompt alone ($one_ids)"
printf '{"prompt": "The cat"}\n{"input": "Tom had a ball"}\n' >"$TMP/prompts.jsonl"
gen many_json --no-chat --prompts "$TMP/prompts.jsonl" --temperature 0 --max-new-tokens 12
[ "$(wc -l <"$TMP/many_json.out")" = 2 ] || fail "JSONL prompts: expected 2 lines"
grep -qF "$one_ids" "$TMP/many_json.out" || fail "JSONL prompts: ids differ"

# Interactive chat through a pipe: one answer line per question, the history in the second prompt.
printf 'Who is Lily?\n\nWhat did she do?\n' | "$GEN" --interactive --temperature 0 --max-new-tokens 16 \
  --stop $'\n' --json "$TMP/inter.jsonl" >"$TMP/inter.out" 2>"$TMP/inter.err" || fail "interactive: $(cat "$TMP/inter.err")"
[ "$(wc -l <"$TMP/inter.jsonl")" = 2 ] || fail "interactive: expected 2 turns: $(cat "$TMP/inter.jsonl")"
[ "$(wc -l <"$TMP/inter.out")" = 2 ] || fail "interactive: expected 2 answer lines: $(cat "$TMP/inter.out")"
first_answer=$(head -1 "$TMP/inter.out")
grep -qF "### Human: Who is Lily? ### Assistant: $first_answer ### Human: What did she do? ### Assistant:\"" \
  "$TMP/inter.jsonl" || fail "interactive: the second prompt lacks the history: $(tail -1 "$TMP/inter.jsonl")"
# The first interactive turn equals the one-shot chat generation of the same question.
[ "$first_answer" = "$(sed 's/^ *//; s/ *$//' "$TMP/chat.out")" ] \
  || fail "interactive turn 1 '$first_answer' differs from --prompt: '$(cat "$TMP/chat.out")'"

[ "$fails" = 0 ] && echo "PASS" || { echo "$fails failure(s)"; exit 1; }
