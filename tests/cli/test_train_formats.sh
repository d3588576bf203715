#!/usr/bin/env bash
# Training through qlora-train works with every dataset format on the bundled model: for each format, a
# fixture in its published schema trains 2 optimizer steps and writes a PEFT adapter and finite losses.
#   bash tests/cli/test_train_formats.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
work=$(mktemp -d /tmp/qlora_formats_XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1  # tiny model: one thread is fastest and leaves the other core to ctest -j2
d=$src/tests/data/datasets
cases=(
  "alpaca $d/alpaca/alpaca_data_1k.json"
  "alpaca-clean $d/alpaca/alpaca_en_demo.json"
  "self-instruct $d/self-instruct/p3-t0_train_50k-ag_news_classify.head100.jsonl"
  "unnatural-instructions $d/written/unnatural_instructions.jsonl"
  "flan-v2 $d/written/flan_v2.jsonl"
  "longform $d/written/longform.jsonl"
  "chip2 $d/written/chip2.jsonl"
  "hh-rlhf $d/hh-rlhf/harmless-base-test.head200.jsonl"
  "oasst1 $d/written/guanaco_rows.jsonl"
  "oasst1 $d/oasst1/oasst1-validation-en.head83.messages.jsonl"
  "oasst1 $d/oasst1/oasst-export-en_100_tree.head16.trees.jsonl"
  "vicuna $d/sharegpt-vicuna/fastchat-dummy_conversation.json"
  "input-output $d/written/input_output.jsonl"
)
fail=0
for c in "${cases[@]}"; do
  fmt=${c%% *} file=${c#* }
  [ -f "$file" ] || { echo "missing fixture $file"; fail=1; continue; }
  out=$work/$(basename "$file")
  if ! "$bin/qlora-train" --config "$src/configs/demo.json" --set model_name_or_path="$src/models/stories260k" \
      --set dataset="$file" --set dataset_format="$fmt" --set output_dir="$out" --set max_steps=2 \
      --set per_device_train_batch_size=2 --set gradient_accumulation_steps=1 --set logging_steps=1 \
      --set do_eval=false --set evaluation_strategy=no --set save_steps=100 --set source_max_len=64 \
      --set target_max_len=64 >"$out.log" 2>&1; then
    echo "FAIL $fmt $(basename "$file"): qlora-train exited non-zero"; tail -5 "$out.log"; fail=1; continue
  fi
  if [ ! -s "$out/adapter_model.safetensors" ] || [ ! -s "$out/adapter_config.json" ]; then
    echo "FAIL $fmt $(basename "$file"): no adapter written"; fail=1; continue
  fi
  # Two logged steps with finite losses.
  n=$(grep -c '"loss": *[0-9]' "$out/metrics.jsonl" || true)
  if [ "$n" -lt 2 ] || grep -qiE '"loss": *(nan|inf)' "$out/metrics.jsonl"; then
    echo "FAIL $fmt $(basename "$file"): expected 2 finite logged losses"; cat "$out/metrics.jsonl"; fail=1; continue
  fi
  echo "ok   $fmt $(basename "$file")"
done
exit $fail
