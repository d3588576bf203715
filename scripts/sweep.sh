#!/usr/bin/env bash
# Grid sweep over learning rate x batch size: one qlora-train run and one MMLU evaluation (qlora-eval) per cell.
#
#   scripts/sweep.sh --config FILE --lr 1e-4,2e-4 --batch-size 16,32 --out DIR
#                    [--set key=value ...] [--mmlu-data DIR|FILE] [--shots K] [--mmlu-split val|test|dev]
#                    [--mmlu-max-questions N] [--bin-dir DIR] [--quiet]
#
# Batch size = per_device_train_batch_size x gradient_accumulation_steps: the config's micro-batch stays and the
# accumulation is set to BATCH / micro-batch (an error when it does not divide; change the micro-batch with
# --set per_device_train_batch_size=N). Cell lr=LR_bs=BS is DIR/lr=LR_bs=BS/, the trainer's output_dir (adapter,
# metrics.jsonl, checkpoints, loss_curve.svg) plus train.log, mmlu.json, mmlu_predictions.jsonl, mmlu.log and
# sweep_seconds.txt.
#
# Resumable: rerun the same command. A cell whose training completed (metrics.jsonl ends with the "end/completed"
# event and train_results.json exists) and whose mmlu.json exists is skipped; a cell with a complete checkpoint
# resumes with qlora-train --resume; a cell whose training finished but whose MMLU did not only runs MMLU. A cell
# trained under a different configuration (its training_config.json differs from this command's, ignoring
# output_dir, log_level and description) stops the sweep with exit code 2 rather than mixing results.
#
# MMLU defaults come from the config (mmlu_dataset, mmlu_split, mmlu_shots, max_mmlu_samples); the evaluation
# loads the base model as it was trained (bits/quant_type/double_quant/blocksize, bf16/fp16, device) with the
# cell's adapter.
#
# Output: DIR/results.csv and DIR/results.md (also printed): lr, batch size, micro-batch, accumulation, steps,
# final train loss (the last logged training loss), final eval loss (the last held-out evaluation; empty without
# do_eval), MMLU macro and micro accuracy, seconds (wall time of this cell's qlora-train and qlora-eval runs,
# summed over attempts) and status.
#
# Programs: --bin-dir DIR, else $QLORA_BIN_DIR, else build/bin of this checkout, else PATH. Paths inside the
# config resolve against the current directory, as with qlora-train. Needs bash and coreutils only.
# Tiny models on the CPU (the demo preset): run with OMP_NUM_THREADS=1, about 10x faster there (scripts/demo.sh).
# Exit codes: 0 every cell done, 1 a cell failed (the others still ran), 2 bad arguments or configuration,
# 130/143 interrupted (SIGINT/SIGTERM; the trainer saved a checkpoint, rerun to resume).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=sweep.sh
# shellcheck source=lib/cli_common.sh
. "$root/scripts/lib/cli_common.sh"

usage() { sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die_usage() {
  echo "$prog: error: $*" >&2
  echo "$prog: run scripts/sweep.sh --help for the usage" >&2
  exit 2
}
die() {
  echo "$prog: error: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------- arguments
config="" lr_list="" bs_list="" out="" mmlu_data="" shots="" mmlu_split="" mmlu_max_questions=""
bin_dir=${QLORA_BIN_DIR:-}
quiet=0
sets=()
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die_usage "$1 needs a value"; }
while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;  # --opt=value -> --opt value
  esac
  case $opt in
    -h | --help) usage; exit 0 ;;
    --config) need_value "$@"; config=$2; shift 2 ;;
    --lr) need_value "$@"; lr_list=$2; shift 2 ;;
    --batch-size) need_value "$@"; bs_list=$2; shift 2 ;;
    --set) need_value "$@"; sets+=("$2"); shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --mmlu-data) need_value "$@"; mmlu_data=$2; shift 2 ;;
    --shots) need_value "$@"; shots=$2; shift 2 ;;
    --mmlu-split) need_value "$@"; mmlu_split=$2; shift 2 ;;
    --mmlu-max-questions) need_value "$@"; mmlu_max_questions=$2; shift 2 ;;
    --bin-dir) need_value "$@"; bin_dir=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    *) die_usage "unknown argument '$opt'" ;;
  esac
done
[ -n "$config" ] || die_usage "--config FILE is required"
[ -f "$config" ] || die_usage "--config $config: no such file"
[ -n "$out" ] || die_usage "--out DIR is required"
for s in "${sets[@]}"; do
  case $s in
    *=*) ;;
    *) die_usage "--set $s: expected key=value" ;;
  esac
  case ${s%%=*} in
    learning_rate | gradient_accumulation_steps | output_dir)
      die_usage "--set ${s%%=*}: the sweep sets this key itself (use --lr, --batch-size, --out)" ;;
  esac
done
[ -z "$shots" ] || [[ $shots =~ ^[0-5]$ ]] || die_usage "--shots $shots: expected an integer 0..5"
[ -z "$mmlu_max_questions" ] || [[ $mmlu_max_questions =~ ^[0-9]+$ ]] ||
  die_usage "--mmlu-max-questions $mmlu_max_questions: expected a non-negative integer"
case ${mmlu_split:-val} in val | eval | test | dev) ;; *) die_usage "--mmlu-split $mmlu_split: expected val, test or dev" ;; esac

train_bin=$(qlora_find_program qlora-train "$bin_dir" "$root") || die_usage "no qlora-train (--bin-dir, QLORA_BIN_DIR)"
eval_bin=$(qlora_find_program qlora-eval "$bin_dir" "$root") || die_usage "no qlora-eval (--bin-dir, QLORA_BIN_DIR)"

train_sets=()
for s in "${sets[@]}"; do train_sets+=(--set "$s"); done

# The effective configuration (defaults, file, --set ...) as qlora-train --dry-run prints it (2-space JSON).
dry_run() { "$train_bin" --config "$config" "${train_sets[@]}" "$@" --dry-run; }
base_json=$(dry_run) || exit 2  # qlora-train printed what is wrong with the config (exit 2)

config_value() { qlora_config_value "$@"; }
micro=$(config_value "$base_json" per_device_train_batch_size)
[[ $micro =~ ^[1-9][0-9]*$ ]] || die "could not read per_device_train_batch_size from qlora-train --dry-run"

# ------------------------------------------------------------------------------------------------ grid
[ -n "$lr_list" ] || lr_list=$(config_value "$base_json" learning_rate)
[ -n "$bs_list" ] || bs_list=$((micro * $(config_value "$base_json" gradient_accumulation_steps)))
IFS=, read -ra lrs <<< "$lr_list"
IFS=, read -ra batch_sizes <<< "$bs_list"
[ ${#lrs[@]} -gt 0 ] || die_usage "--lr: empty list"
[ ${#batch_sizes[@]} -gt 0 ] || die_usage "--batch-size: empty list"
for lr in "${lrs[@]}"; do
  [[ $lr =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] || die_usage "--lr: '$lr' is not a number (expected e.g. 1e-4,2e-4)"
  awk -v x="$lr" 'BEGIN { exit !(x + 0 > 0) }' || die_usage "--lr: $lr must be > 0"
done
for bs in "${batch_sizes[@]}"; do
  [[ $bs =~ ^[1-9][0-9]*$ ]] || die_usage "--batch-size: '$bs' is not a positive integer"
  ((bs % micro == 0)) || die_usage "--batch-size $bs is not a multiple of the micro-batch" \
    "per_device_train_batch_size $micro of $config; pick multiples of $micro or --set per_device_train_batch_size=N"
done
dups=$(printf '%s\n' "${lrs[@]}" | sort | uniq -d; printf '%s\n' "${batch_sizes[@]}" | sort | uniq -d)
[ -z "$dups" ] || die_usage "repeated grid values: $(echo $dups)"

# --------------------------------------------------------------------------------------------- MMLU setup
mmlu_data=${mmlu_data:-$(config_value "$base_json" mmlu_dataset)}
mmlu_split=${mmlu_split:-$(config_value "$base_json" mmlu_split)}
[ "$mmlu_split" = eval ] && mmlu_split=val
shots=${shots:-$(config_value "$base_json" mmlu_shots)}
mmlu_max_questions=${mmlu_max_questions:-$(config_value "$base_json" max_mmlu_samples)}
# The layout qlora-eval reads: DIR/{split}/ or DIR/data/{split}/ (+ dev/ for few-shot), or a prebuilt .json file.
# Checked here so that a missing split stops the sweep before hours of training rather than after.
if [ -d "$mmlu_data" ]; then
  for need in "$mmlu_split" $( ((shots > 0)) && echo dev); do
    [ -d "$mmlu_data/$need" ] || [ -d "$mmlu_data/data/$need" ] ||
      die_usage "MMLU data $mmlu_data has no $need/ directory (--mmlu-data DIR with dev/ val/ test/;" \
        "--mmlu-split to pick another split; the bundled excerpt is tests/data/mmlu/hendrycks with --mmlu-split test)"
  done
elif [ ! -f "$mmlu_data" ]; then
  die_usage "MMLU data '$mmlu_data' does not exist (--mmlu-data DIR, or mmlu_dataset in the config;" \
    "the bundled excerpt is tests/data/mmlu/hendrycks with --mmlu-split test)"
fi
qlora_eval_model_flags "$base_json"  # qlora-eval loads the base model the way the trainer did
eval_model_flags=("${QLORA_EVAL_MODEL_FLAGS[@]}")

# ------------------------------------------------------------------------------------------ cell helpers
mkdir -p "$out" || die_usage "--out $out: cannot create the directory"
out=$(cd "$out" && pwd)
exec 9> "$out/.sweep.lock"
if command -v flock > /dev/null; then
  flock -n 9 || die_usage "another sweep is running in $out (lock $out/.sweep.lock)"
fi

cell_name() { echo "lr=${1}_bs=${2}"; }
cell_sets() {  # cell_sets LR BS DIR -> the --set flags of one cell (after the user's)
  printf '%s\0' "${train_sets[@]}" --set "learning_rate=$1" --set "gradient_accumulation_steps=$(($2 / micro))" \
    --set "output_dir=$3"
}
comparable_config() { grep -v -E '^  "(output_dir|log_level|description)": ' "$1"; }
training_done() { [ -f "$1/train_results.json" ] && grep '"event":"end"' "$1/metrics.jsonl" 2> /dev/null | grep -q '"reason":"completed"'; }
mmlu_done() { [ -f "$1/mmlu.json" ] && grep -q '"macro_accuracy"' "$1/mmlu.json"; }
has_checkpoint() { compgen -G "$1/checkpoint-*/trainer_state.json" > /dev/null; }
record_seconds() { echo "$2 $(qlora_seconds_since "$3")" >> "$1/sweep_seconds.txt"; }
json_number() { qlora_json_number "$@"; }
fmt() { qlora_fmt "$@"; }

# ---------------------------------------------------------------------------------- check every cell first
declare -a cell_dirs=() cell_lrs=() cell_bss=()
for lr in "${lrs[@]}"; do
  for bs in "${batch_sizes[@]}"; do
    dir="$out/$(cell_name "$lr" "$bs")"
    mapfile -d '' flags < <(cell_sets "$lr" "$bs" "$dir")
    expected=$("$train_bin" --config "$config" "${flags[@]}" --dry-run) || exit 2
    if [ -f "$dir/training_config.json" ]; then
      if ! diff <(comparable_config "$dir/training_config.json") <(printf '%s\n' "$expected" | comparable_config /dev/stdin) > /dev/null; then
        echo "$prog: error: $dir was trained with another configuration than this command gives it:" >&2
        diff <(comparable_config "$dir/training_config.json") <(printf '%s\n' "$expected" | comparable_config /dev/stdin) |
          sed 's/^/  /' >&2
        echo "$prog: use another --out DIR, or delete $dir to retrain it" >&2
        exit 2
      fi
    fi
    cell_dirs+=("$dir") cell_lrs+=("$lr") cell_bss+=("$bs")
  done
done

# ------------------------------------------------------------------------------------------------- run
ncells=${#cell_dirs[@]}
echo "$prog: $ncells cells (lr: ${lrs[*]}; batch size: ${batch_sizes[*]} = micro-batch $micro x accumulation)" \
  "from $config into $out"
mmlu_limit=""
[ -n "$mmlu_max_questions" ] && [ "$mmlu_max_questions" != 0 ] && mmlu_limit=", first $mmlu_max_questions questions"
echo "$prog: MMLU: $mmlu_data, split $mmlu_split, $shots-shot$mmlu_limit"
failed=0
for ((i = 0; i < ncells; i++)); do
  dir=${cell_dirs[i]} lr=${cell_lrs[i]} bs=${cell_bss[i]}
  tag="[$((i + 1))/$ncells] $(cell_name "$lr" "$bs")"
  mkdir -p "$dir"
  if training_done "$dir" && mmlu_done "$dir"; then
    echo "$tag: done already, skipped"
    continue
  fi
  if ! training_done "$dir"; then
    resume=()
    if has_checkpoint "$dir"; then
      resume=(--resume)
      echo "$tag: resuming training from the newest checkpoint (log $dir/train.log)"
    else
      echo "$tag: training, batch $bs = $micro x $((bs / micro)) (log $dir/train.log)"
    fi
    mapfile -d '' flags < <(cell_sets "$lr" "$bs" "$dir")
    echo "=== $(date '+%F %T') qlora-train --config $config ${flags[*]} ${resume[*]}" >> "$dir/train.log"
    start=$(qlora_now)
    if ((quiet)); then
      "$train_bin" --config "$config" "${flags[@]}" "${resume[@]}" >> "$dir/train.log" 2>&1
      rc=$?
    else
      # The whole output goes to the log; the console shows it without the configuration table. The pipe's
      # readers ignore SIGINT: a Ctrl-C reaches the trainer, which finishes its step and saves a checkpoint
      # while its output still has somewhere to go.
      "$train_bin" --config "$config" "${flags[@]}" "${resume[@]}" 2>&1 |
        (trap '' INT; tee -a "$dir/train.log" | grep --line-buffered -v -E '^([|+]|$)')
      rc=${PIPESTATUS[0]}
    fi
    record_seconds "$dir" train "$start"
    if ((rc == 130 || rc == 143)); then
      echo "$prog: interrupted in $dir (a checkpoint was saved); rerun the same command to resume" >&2
      exit "$rc"
    fi
    if ((rc != 0)) || ! training_done "$dir"; then
      ((quiet)) && tail -n 5 "$dir/train.log" | sed 's/^/  /' >&2
      echo "$tag: training FAILED (exit code $rc; see $dir/train.log); going on with the other cells" >&2
      failed=1
      continue
    fi
  fi
  echo "$tag: MMLU (log $dir/mmlu.log)"
  eval_flags=(--mmlu --data "$mmlu_data" --split "$mmlu_split" --shots "$shots" "${eval_model_flags[@]}"
    --adapter "$dir" --json "$dir/mmlu.json" --predictions "$dir/mmlu_predictions.jsonl")
  [ -n "$mmlu_limit" ] && eval_flags+=(--max-questions "$mmlu_max_questions")
  echo "=== $(date '+%F %T') qlora-eval ${eval_flags[*]}" >> "$dir/mmlu.log"
  start=$(qlora_now)
  "$eval_bin" "${eval_flags[@]}" >> "$dir/mmlu.log" 2>&1
  rc=$?
  record_seconds "$dir" mmlu "$start"
  if ((rc != 0)) || ! mmlu_done "$dir"; then
    tail -n 5 "$dir/mmlu.log" | sed 's/^/  /' >&2
    echo "$tag: MMLU FAILED (exit code $rc; see $dir/mmlu.log); going on with the other cells" >&2
    failed=1
    continue
  fi
  printf '%s: %s\n' "$tag" "$(grep '^MMLU .*accuracy' "$dir/mmlu.log" | tail -n1)"
done

# ----------------------------------------------------------------------------------------------- results
csv_header="lr,batch_size,micro_batch_size,gradient_accumulation_steps,steps,train_loss,eval_loss,mmlu_macro_accuracy,mmlu_micro_accuracy,seconds,status"
csv=$csv_header$'\n'
md="| lr | batch size | micro x accum | steps | train loss | eval loss | MMLU macro | MMLU micro | seconds | status |"$'\n'
md+="|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"$'\n'
best="" best_macro=-1
for ((i = 0; i < ncells; i++)); do
  dir=${cell_dirs[i]} lr=${cell_lrs[i]} bs=${cell_bss[i]}
  metrics="$dir/metrics.jsonl"
  last_train=$(grep '"event":"train"' "$metrics" 2> /dev/null | tail -n1)
  last_eval=$(grep '"event":"eval"' "$metrics" 2> /dev/null | tail -n1)
  steps=$(json_number global_step < "$dir/train_results.json" 2> /dev/null)
  [ -n "$steps" ] || steps=$(printf '%s' "$last_train" | json_number step)
  train_loss=$(fmt %.4f "$(printf '%s' "$last_train" | json_number loss)")
  eval_loss=$(fmt %.4f "$(printf '%s' "$last_eval" | json_number eval_loss)")
  macro="" micro_acc=""
  if mmlu_done "$dir"; then
    macro=$(fmt %.4f "$(json_number macro_accuracy < "$dir/mmlu.json")")
    micro_acc=$(fmt %.4f "$(json_number micro_accuracy < "$dir/mmlu.json")")
  fi
  seconds=$(awk '{ s += $2 } END { if (NR) printf "%.1f", s }' "$dir/sweep_seconds.txt" 2> /dev/null)
  if training_done "$dir" && mmlu_done "$dir"; then
    status=done
    if awk -v a="$macro" -v b="$best_macro" 'BEGIN { exit !(a + 0 > b + 0) }'; then
      best_macro=$macro best="$(cell_name "$lr" "$bs")"
    fi
  elif training_done "$dir"; then
    status=mmlu_failed
  else
    status=train_failed
  fi
  accum=$((bs / micro))
  csv+="$lr,$bs,$micro,$accum,$steps,$train_loss,$eval_loss,$macro,$micro_acc,$seconds,$status"$'\n'
  md+="| $lr | $bs | $micro x $accum | $steps | $train_loss | $eval_loss | $macro | $micro_acc | $seconds | $status |"$'\n'
done
{
  echo "# Sweep: $config"
  echo
  echo "- overrides: ${sets[*]:-(none)}"
  echo "- MMLU: $mmlu_data, split $mmlu_split, $shots-shot$mmlu_limit"
  echo "- train loss: the last logged training loss; eval loss: the last held-out evaluation; seconds: qlora-train + qlora-eval wall time"
  echo
  printf '%s' "$md"
  [ -n "$best" ] && { echo; echo "Best MMLU macro accuracy: $best ($best_macro)"; }
} > "$out/results.md.tmp" && mv "$out/results.md.tmp" "$out/results.md"
printf '%s' "$csv" > "$out/results.csv.tmp" && mv "$out/results.csv.tmp" "$out/results.csv"
echo
cat "$out/results.md"
echo
echo "$prog: wrote $out/results.csv and $out/results.md"
if ((failed)); then
  echo "$prog: some cells failed (status column); rerun the same command to retry them" >&2
  exit 1
fi
exit 0
