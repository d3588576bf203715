#!/usr/bin/env bash
# The README demo, one command on a fresh machine: QLoRA-finetune the bundled 260K-parameter LLaMA
# (models/stories260k, NF4 + double quantization, LoRA r 8) on the bundled Alpaca records (configs/demo.json),
# then compare the base model and the finetuned one.
#
#   scripts/demo.sh [--out DIR] [--skip-setup] [--skip-build] [--bin-dir DIR] [--set key=value ...]
#                   [--shots K] [--mmlu-max-questions N] [--max-new-tokens N]
#
# Steps (each one's output in DIR/logs/):
#   1. scripts/setup.sh (Debian packages + the venv holding libtorch; idempotent, seconds once done)
#   2. scripts/build.sh of qlora-train, qlora-eval and qlora-generate (BUILD_DIR, JOBS honoured)
#   3. qlora-train --config configs/demo.json into DIR/finetune (adapter, metrics.jsonl, loss_curve.svg)
#   4. the held-out loss of the base model (the same 40 held-out records: the trainer's step-0 evaluation, or
#      qlora-train with do_train=false when the trainer made none)
#   5. MMLU on the bundled excerpt (tests/data/mmlu/hendrycks, test split: abstract_algebra + management,
#      203 questions, 5-shot), base model and base + adapter
#   6. greedy generation from two Alpaca-style prompts, base and finetuned
#   7. the summary (printed and in DIR/summary.md): loss before/after, MMLU, generated text, files, time.
# DIR defaults to out/demo in the checkout; a rerun replaces the previous demo's results there (a DIR that
# holds something else is refused). --set key=value changes the training config (e.g. --set max_steps=20).
# --bin-dir DIR takes the programs from DIR and skips the build. The programs run this tiny model on one thread
# unless OMP_NUM_THREADS says otherwise (README "Threads").
# Exit codes: 0 ok, 2 bad arguments, else the failing step's exit code (its log is printed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=demo.sh
# shellcheck source=lib/cli_common.sh
. "$root/scripts/lib/cli_common.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  echo "$prog: error: $*" >&2
  echo "$prog: run scripts/demo.sh --help for the usage" >&2
  exit 2
}

out="" bin_dir="" skip_setup=0 skip_build=0 shots=5 mmlu_max_questions=0 max_new_tokens=48
sets=()
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die_usage "$1 needs a value"; }
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
  esac
  case $opt in
    -h | --help) usage; exit 0 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --bin-dir) need_value "$@"; bin_dir=$2; skip_build=1; shift 2 ;;
    --skip-setup) skip_setup=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    --set) need_value "$@"; sets+=("$2"); shift 2 ;;
    --shots) need_value "$@"; shots=$2; shift 2 ;;
    --mmlu-max-questions) need_value "$@"; mmlu_max_questions=$2; shift 2 ;;
    --max-new-tokens) need_value "$@"; max_new_tokens=$2; shift 2 ;;
    *) die_usage "unknown argument '$opt'" ;;
  esac
done
if [ -n "$bin_dir" ]; then
  bin_dir=$(cd "$bin_dir" 2> /dev/null && pwd) || die_usage "--bin-dir: no such directory"
fi
[[ $shots =~ ^[0-5]$ ]] || die_usage "--shots $shots: expected an integer 0..5"
[[ $mmlu_max_questions =~ ^[0-9]+$ ]] || die_usage "--mmlu-max-questions $mmlu_max_questions: expected an integer >= 0"
[[ $max_new_tokens =~ ^[1-9][0-9]*$ ]] || die_usage "--max-new-tokens $max_new_tokens: expected a positive integer"
train_sets=()
for s in "${sets[@]}"; do
  case $s in *=*) ;; *) die_usage "--set $s: expected key=value" ;; esac
  case ${s%%=*} in output_dir | do_train) die_usage "--set ${s%%=*}: the demo sets this key itself" ;; esac
  train_sets+=(--set "$s")
done

# The output directory: resolved against the caller's directory, then everything runs from the checkout
# (configs/demo.json names the bundled model and data relative to it).
out=${out:-$root/out/demo}
mkdir -p "$out" || die_usage "--out $out: cannot create the directory"
out=$(cd "$out" && pwd)
marker="$out/.qlora-demo"
if [ ! -f "$marker" ] && [ -n "$(ls -A "$out")" ]; then
  die_usage "$out is not empty and is not a previous demo's output; pick another --out DIR"
fi
rm -rf "$out/finetune" "$out/base" "$out/logs" "$out"/mmlu_*.json "$out"/generations.txt "$out/summary.md"
touch "$marker"
mkdir -p "$out/logs"
cd "$root"

t_start=$(qlora_now)
declare -a stage_names=() stage_seconds=()
stage_start=""
stage() {  # stage NAME DESCRIPTION: close the previous stage's timer, start NAME's, print DESCRIPTION
  stage_end
  stage_names+=("$1")
  stage_start=$(qlora_now)
  echo
  echo "== $prog: $2"
}
stage_end() {
  [ -n "$stage_start" ] && stage_seconds+=("$(qlora_seconds_since "$stage_start")")
  stage_start=""
}
# run_logged LOG CMD...: CMD's output to LOG; on failure the log's tail and CMD's exit code.
run_logged() {
  local log=$1 rc=0
  shift
  "$@" > "$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$log" | sed 's/^/  | /' >&2
    echo "$prog: failed (exit code $rc): $*" >&2
    echo "$prog: full log: $log" >&2
    exit "$rc"
  fi
}

# ----------------------------------------------------------------------------------------- setup, build
if ((skip_setup)); then
  echo "$prog: --skip-setup: not running scripts/setup.sh"
else
  stage setup "setup (scripts/setup.sh; installs once, seconds afterwards)"
  run_logged "$out/logs/setup.log" bash scripts/setup.sh
  tail -n 1 "$out/logs/setup.log"
fi
if ((skip_build)); then
  echo "$prog: not building${bin_dir:+ (programs from $bin_dir)}"
else
  stage build "build (scripts/build.sh: qlora-train qlora-eval qlora-generate; JOBS=${JOBS:-$(nproc)})"
  BUILD_TARGETS="qlora-train qlora-eval qlora-generate" run_logged "$out/logs/build.log" bash scripts/build.sh
  bin_dir="${BUILD_DIR:-$root/build}/bin"
  tail -n 1 "$out/logs/build.log"
fi
train_bin=$(qlora_find_program qlora-train "$bin_dir" "$root") || die_usage "no qlora-train"
eval_bin=$(qlora_find_program qlora-eval "$bin_dir" "$root") || die_usage "no qlora-eval"
generate_bin=$(qlora_find_program qlora-generate "$bin_dir" "$root") || die_usage "no qlora-generate"

config=configs/demo.json
cfg_json=$("$train_bin" --config "$config" "${train_sets[@]}" --dry-run) || exit 2
qlora_eval_model_flags "$cfg_json"
model_flags=("${QLORA_EVAL_MODEL_FLAGS[@]}")
model=$(qlora_config_value "$cfg_json" model_name_or_path)

# ------------------------------------------------------------------------------------------------ train
stage train "finetune: qlora-train --config $config ${sets[*]} (log logs/train.log)"
# Progress lines on the console, everything in the log. The readers ignore SIGINT so that a Ctrl-C reaches
# the trainer, which saves a checkpoint before it stops.
set +e
"$train_bin" --config "$config" "${train_sets[@]}" --set output_dir="$out/finetune" 2>&1 |
  (trap '' INT; tee "$out/logs/train.log" | grep --line-buffered -E '^step |eval at step|error|warn')
rc=${PIPESTATUS[0]}
set -e
if ((rc != 0)); then
  tail -n 20 "$out/logs/train.log" | sed 's/^/  | /' >&2
  echo "$prog: qlora-train failed (exit code $rc); full log: $out/logs/train.log" >&2
  exit "$rc"
fi

# The base model's held-out loss: the trainer's evaluation before the first update when it made one (step 0),
# else an evaluation-only run (do_train=false) on the same held-out records.
ft_metrics="$out/finetune/metrics.jsonl"
base_metrics=$ft_metrics
if ! grep '"event":"eval"' "$ft_metrics" | head -n1 | grep -q '"step":0[,}]'; then
  stage base_loss "held-out loss of the base model (qlora-train with do_train=false: the same held-out records)"
  run_logged "$out/logs/base_eval.log" "$train_bin" --config "$config" "${train_sets[@]}" --set do_train=false \
    --set output_dir="$out/base"
  grep 'eval at step' "$out/logs/base_eval.log" | sed 's/^.*\] //'
  base_metrics="$out/base/metrics.jsonl"
fi

# ------------------------------------------------------------------------------------------------- MMLU
mmlu_flags=(--mmlu --data tests/data/mmlu/hendrycks --split test --shots "$shots")
((mmlu_max_questions > 0)) && mmlu_flags+=(--max-questions "$mmlu_max_questions")
stage mmlu "MMLU (bundled excerpt: tests/data/mmlu/hendrycks, test split, $shots-shot), base and finetuned"
run_logged "$out/logs/mmlu_base.log" "$eval_bin" "${mmlu_flags[@]}" "${model_flags[@]}" --json "$out/mmlu_base.json"
echo "base:      $(grep '^MMLU .*accuracy' "$out/logs/mmlu_base.log")"
run_logged "$out/logs/mmlu_finetuned.log" "$eval_bin" "${mmlu_flags[@]}" "${model_flags[@]}" \
  --adapter "$out/finetune" --json "$out/mmlu_finetuned.json"
echo "finetuned: $(grep '^MMLU .*accuracy' "$out/logs/mmlu_finetuned.log")"

# ------------------------------------------------------------------------------------------- generation
# The prompts are rendered with the Alpaca template the model was trained on (qlora.py ALPACA_PROMPT_DICT,
# no-input variant, trailing space after "### Response:"); neither instruction is in the training data.
instructions=("Write a short story about a brave little dog." "Name three colors of the rainbow.")
alpaca_prompt() {
  printf 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Response: ' "$1"
}
stage generate "generate (greedy, up to $max_new_tokens new tokens), base and finetuned"
# generate LOG_PREFIX FLAGS...: the generated text (qlora-generate's stdout, kept in LOG_PREFIX.txt).
generate() {
  local prefix=$1 rc=0
  shift
  "$generate_bin" "$@" > "$prefix.txt" 2> "$prefix.log" || rc=$?
  if ((rc != 0)); then
    tail -n 20 "$prefix.log" | sed 's/^/  | /' >&2
    echo "$prog: qlora-generate failed (exit code $rc); full log: $prefix.log" >&2
    exit "$rc"
  fi
  if [ -s "$prefix.txt" ] && [ -n "$(tr -d '[:space:]' < "$prefix.txt")" ]; then
    cat "$prefix.txt"
  else
    echo "(nothing: the model ended its answer at once)"
  fi
}
declare -a gen_base=() gen_finetuned=()
: > "$out/generations.txt"
for i in "${!instructions[@]}"; do
  prompt=$(alpaca_prompt "${instructions[i]}")
  gen_flags=(--no-chat --temperature 0 --max-new-tokens "$max_new_tokens" "${model_flags[@]}" --prompt "$prompt")
  gen_base+=("$(generate "$out/logs/generate_base_$i" "${gen_flags[@]}")")
  gen_finetuned+=("$(generate "$out/logs/generate_finetuned_$i" "${gen_flags[@]}" --adapter "$out/finetune")")
  {  # the texts' own line breaks stay, indented under their label
    echo "### ${instructions[i]}"
    printf 'base:      %s\n' "${gen_base[i]}" | sed '2,$s/^/           /'
    printf 'finetuned: %s\n' "${gen_finetuned[i]}" | sed '2,$s/^/           /'
    echo
  } >> "$out/generations.txt"
done
cat "$out/generations.txt"
stage_end

# ---------------------------------------------------------------------------------------------- summary
metric() { grep "\"event\":\"$2\"" "$1" | "$3" -n1 | qlora_json_number "$4"; }
base_loss=$(metric "$base_metrics" eval head eval_loss)
base_token_loss=$(metric "$base_metrics" eval head eval_token_loss)
ft_loss=$(metric "$ft_metrics" eval tail eval_loss)
ft_token_loss=$(metric "$ft_metrics" eval tail eval_token_loss)
eval_rows=$(metric "$ft_metrics" eval tail eval_examples)
first_step=$(metric "$ft_metrics" train head step)
first_train=$(metric "$ft_metrics" train head loss)
last_step=$(metric "$ft_metrics" train tail step)
last_train=$(metric "$ft_metrics" train tail loss)
train_seconds=$(qlora_json_number train_seconds < "$out/finetune/train_results.json")
tokens_per_second=$(qlora_json_number train_tokens_per_second < "$out/finetune/train_results.json")
ppl() { qlora_fmt %.1f "$(awk -v x="$1" 'BEGIN { print exp(x) }')"; }
mmlu_line() {  # mmlu_line JSON: "micro 0.2857 (58/203), macro 0.2859"
  local j=$1
  printf 'micro %s (%s/%s), macro %s' "$(qlora_fmt %.4f "$(qlora_json_number micro_accuracy < "$j")")" \
    "$(qlora_json_number correct < "$j")" "$(qlora_json_number total < "$j")" \
    "$(qlora_fmt %.4f "$(qlora_json_number macro_accuracy < "$j")")"
}
total_seconds=$(qlora_seconds_since "$t_start")
times > "$out/logs/times.txt"  # this shell's line, then its children's (the programs): user and system time
timing=""
for i in "${!stage_names[@]}"; do timing+="$(printf '  %-10s %7.1f s' "${stage_names[i]}" "${stage_seconds[i]}")"$'\n'; done
{
  echo "# qlora-cpp demo"
  echo
  echo "QLoRA finetuning of $model (NF4 + double quantization, LoRA r $(qlora_config_value "$cfg_json" lora_r))"
  echo "on $(qlora_config_value "$cfg_json" dataset), $config${sets[*]:+ with ${sets[*]}}."
  echo
  echo "Held-out loss ($eval_rows records):  base $(qlora_fmt %.4f "$base_loss") -> finetuned $(qlora_fmt %.4f "$ft_loss")"
  echo "  per-token perplexity:          base $(ppl "$base_token_loss") -> finetuned $(ppl "$ft_token_loss")"
  echo "Logged training loss: $(qlora_fmt %.4f "$first_train") (step $first_step) -> $(qlora_fmt %.4f "$last_train") (step $last_step)," \
    "$(qlora_fmt %.1f "$train_seconds") s, $(qlora_fmt %.0f "$tokens_per_second") tokens/s"
  echo
  echo "MMLU (bundled excerpt, test split, $shots-shot$( ((mmlu_max_questions > 0)) && echo ", first $mmlu_max_questions questions")):"
  echo "  base:      $(mmlu_line "$out/mmlu_base.json")"
  echo "  finetuned: $(mmlu_line "$out/mmlu_finetuned.json")"
  echo "  (4 choices: chance is 0.25. A 260K-parameter story model knows no algebra; this shows the pipeline.)"
  echo
  echo "Generated (greedy):"
  sed 's/^/  /' "$out/generations.txt"
  echo "Files:"
  echo "  adapter (PEFT format)  $out/finetune/adapter_model.safetensors, adapter_config.json"
  echo "  training metrics       $out/finetune/metrics.jsonl, train_results.json"
  echo "  loss curve             $out/finetune/loss_curve.svg"
  echo "  MMLU reports           $out/mmlu_base.json, $out/mmlu_finetuned.json"
  echo "  generations, logs      $out/generations.txt, $out/logs/"
  echo
  echo "Time: $total_seconds s in all (CPU time of the programs: $(tail -n1 "$out/logs/times.txt" | awk '{ print "user " $1 ", system " $2 }');" \
    "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset, so the default rule})"
  printf '%s' "$timing"
  echo
  echo "Next: prompt it yourself (Alpaca template, as trained):"
  echo "  $generate_bin ${model_flags[*]} --adapter $out/finetune --no-chat --temperature 0 \\"
  echo "    --prompt \"\$(printf 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n### Instruction:\\n%s\\n\\n### Response: ' 'Tell me a story about a cat.')\""
} > "$out/summary.md"
echo
cat "$out/summary.md"
