# Helpers shared by scripts/sweep.sh and scripts/demo.sh (sourced, bash + coreutils only: the product needs no
# Python at run time). They read the JSON our programs write: qlora-train --dry-run and qlora-eval --json print
# 2-space indented JSON, metrics.jsonl holds one compact JSON object per line.

# qlora_find_program NAME BIN_DIR ROOT: the path of program NAME from BIN_DIR when given, else ROOT/build/bin,
# else PATH. Prints a message and returns 1 when it is not there.
qlora_find_program() {
  local name=$1 bin_dir=$2 root=$3
  if [ -n "$bin_dir" ]; then
    [ -x "$bin_dir/$name" ] || { echo "$bin_dir/$name: not found or not executable" >&2; return 1; }
    echo "$bin_dir/$name"
  elif [ -x "$root/build/bin/$name" ]; then
    echo "$root/build/bin/$name"
  elif command -v "$name" > /dev/null; then
    command -v "$name"
  else
    echo "$name not found: build it (scripts/build.sh) or pass --bin-dir DIR" >&2
    return 1
  fi
}

# qlora_config_value JSON KEY: a top-level scalar of qlora-train --dry-run's JSON, without quotes.
qlora_config_value() {
  printf '%s\n' "$1" | grep -m1 "^  \"$2\": " | sed 's/^  "[^"]*": //; s/,$//; s/^"//; s/"$//'
}

# qlora_json_number KEY < JSON: the number after the first "KEY": (compact or indented JSON); empty when absent
# or not a number (nlohmann writes NaN as null).
qlora_json_number() {
  sed -n "s/.*\"$1\": *\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" | head -n1
}

# qlora_eval_model_flags JSON: sets the array QLORA_EVAL_MODEL_FLAGS to the qlora-eval / qlora-generate flags
# that load the base model of a qlora-train configuration (its --dry-run JSON) the way the trainer did: the
# same 4-bit format, compute dtype and device.
qlora_eval_model_flags() {
  local cfg=$1
  QLORA_EVAL_MODEL_FLAGS=(--model "$(qlora_config_value "$cfg" model_name_or_path)"
    --device "$(qlora_config_value "$cfg" device)")
  if [ "$(qlora_config_value "$cfg" bits)" = 4 ]; then
    QLORA_EVAL_MODEL_FLAGS+=(--quant-type "$(qlora_config_value "$cfg" quant_type)"
      --blocksize "$(qlora_config_value "$cfg" blocksize)")
    [ "$(qlora_config_value "$cfg" double_quant)" = true ] && QLORA_EVAL_MODEL_FLAGS+=(--double-quant)
  else
    QLORA_EVAL_MODEL_FLAGS+=(--quant-type none)
  fi
  if [ "$(qlora_config_value "$cfg" bf16)" = true ]; then
    QLORA_EVAL_MODEL_FLAGS+=(--dtype bf16)
  elif [ "$(qlora_config_value "$cfg" fp16)" = true ]; then
    QLORA_EVAL_MODEL_FLAGS+=(--dtype fp16)
  else
    QLORA_EVAL_MODEL_FLAGS+=(--dtype fp32)
  fi
}

# qlora_fmt FORMAT NUMBER: printf through awk (locale-independent); nothing for an empty NUMBER.
qlora_fmt() {
  [ -z "$2" ] && return 0
  awk -v x="$2" -v f="$1" 'BEGIN { printf f, x }'
}

# qlora_now: seconds since the epoch with nanoseconds, for wall-clock timings.
qlora_now() { date +%s.%N; }

# qlora_seconds_since START: wall seconds since a qlora_now value, one decimal.
qlora_seconds_since() { awk -v a="$1" -v b="$(qlora_now)" 'BEGIN { printf "%.1f", b - a }'; }
