#!/usr/bin/env bash
# qlora-eval / qlora-generate load the base an adapter was trained on (ADAPTER/training_config.json: model,
# quant type, double quantization, blocksize) unless flags say otherwise: the perplexity of a QLoRA adapter
# without any flag equals the one with the trained settings spelled out, and differs from the 16-bit base's.
#   bash tests/cli/test_eval_as_trained.sh BIN_DIR SOURCE_DIR
set -euo pipefail
bin=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/qlora_as_trained_XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
cd "$src"
fail() { echo "FAIL: $*" >&2; exit 1; }
"$bin/qlora-train" --config configs/demo.json --set output_dir="$work/run" --set max_steps=3 --set do_eval=false \
  --set evaluation_strategy=no --set save_strategy=no --set blocksize=128 --set log_level=warn >"$work/train.log" 2>&1 ||
  { cat "$work/train.log"; fail "training"; }
printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\nOne day she saw a big red ball under a tree and ran to get it.\n' > "$work/text.txt"
ppl() {  # NAME FLAGS...: perplexity JSON of the adapter
  local name=$1; shift
  (cd "$work" && "$bin/qlora-eval" --perplexity text.txt --adapter run --json "$name.json" "$@") >"$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "qlora-eval $*"; }
  python3 -c "import json; print(repr(json.load(open('$work/$name.json'))['perplexity']))"
}
# From $work the run's relative model path does not resolve: --model is given, the rest comes from the run.
auto=$(ppl auto --model "$src/models/stories260k")
grep -q "base as trained (run/training_config.json): quant-type nf4 double-quant blocksize 128" "$work/auto.log" ||
  { cat "$work/auto.log"; fail "no 'base as trained' log line"; }
spelled=$(ppl spelled --model "$src/models/stories260k" --quant-type nf4 --double-quant --blocksize 128)
dense=$(ppl dense --model "$src/models/stories260k" --quant-type none)
echo "   perplexity: as trained $auto, flags spelled out $spelled, 16-bit base $dense"
[ "$auto" = "$spelled" ] || fail "as-trained perplexity $auto != $spelled"
[ "$auto" != "$dense" ] || fail "the 16-bit base gives the same perplexity: the settings were not applied"
echo PASS
