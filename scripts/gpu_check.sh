#!/usr/bin/env bash
# The one prepared script for the offline GPU machine (python3 with torch 2.11+cu130, nvcc 13, cmake, ninja;
# no package registry). Run scripts/pack_gpu_deps.sh here first; carry `.gpu-deps` with the working tree.
#   scripts/gpu_check.sh OUTDIR
# Builds with CUDA (build-gpu/), runs the gpu-labelled tests and the benchmarks, and writes logs plus
# OUTDIR/summary.json. Each stage has its own time limit so the whole script ends within 8 minutes.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:?usage: gpu_check.sh OUTDIR}
mkdir -p "$OUT"
deps="$root/.gpu-deps/usr"
start=$(date +%s)
declare -A status

stage() {  # stage NAME TIMEOUT_S CMD...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  status[$name]="{\"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}"
  echo "gpu_check: $name rc=$rc ($(( $(date +%s) - t0 )) s)"
  return $rc
}

export CMAKE_PREFIX_PATH="$deps:$deps/lib/x86_64-linux-gnu/cmake:$deps/share/cmake${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$deps/lib/x86_64-linux-gnu/pkgconfig:$deps/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CPATH="$deps/include${CPATH:+:$CPATH}"

nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" >"$OUT/torch.txt" 2>&1

# Hopper only on the lent machine: one architecture keeps the build short.
stage configure 120 cmake -S "$root" -B "$root/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQLORA_CUDA=ON \
  -DQLORA_PYTHON="$(command -v python3)" -DQLORA_CUDA_ARCHITECTURES=90
stage build 300 cmake --build "$root/build-gpu" -j "$(nproc)"
stage gpu_tests 120 ctest --test-dir "$root/build-gpu" -L gpu --output-on-failure --output-junit "$OUT/gpu_tests.xml"
stage bench_nf4 60 "$root/build-gpu/bin/qlora-bench" nf4 --json "$OUT/bench_nf4.json"
# Issue 4's GPU check: a 7B-shaped model (random weights, NF4+DQ, LoRA r 64, paged AdamW, checkpointing)
# trains 10 steps at sequence length 512; tokens/s and peak memory go to bench_train.json.
stage bench_train 180 "$root/build-gpu/bin/qlora-bench" train --shape 7b --device cuda --seq-len 512 --steps 10 \
  --json "$OUT/bench_train.json"
# Issue 9: data parallelism on NCCL needs one GPU per rank; with 2 or more GPUs, 2 ranks against 1 process on
# the same global batch (the demo preset on cuda, NCCL), in the same run.
if [ "$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" -ge 2 ]; then
  stage bench_ddp 180 bash "$root/scripts/bench_ddp.sh" --bin-dir "$root/build-gpu/bin" --nproc 2 --out "$OUT/bench_ddp" \
    --set device=cuda --set ddp_backend=nccl
fi

{
  echo "{"
  echo "  \"elapsed_s\": $(( $(date +%s) - start )),"
  first=1
  for k in "${!status[@]}"; do
    [ $first = 1 ] || echo ","
    printf '  "%s": %s' "$k" "${status[$k]}"
    first=0
  done
  echo
  echo "}"
} >"$OUT/summary.json"
cat "$OUT/summary.json"
