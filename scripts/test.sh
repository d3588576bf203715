#!/usr/bin/env bash
# The test command of the README and of CI: set up if needed, build, run every test (ctest).
# Tests labelled gpu skip cleanly without a device; parity tests run live against the venv's
# transformers/peft/bitsandbytes.   Extra arguments go to ctest (e.g. -L cpu, -R nf4).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
ctest --test-dir "${BUILD_DIR:-$root/build}" --output-on-failure -j "${QLORA_TEST_JOBS:-2}" "$@"
