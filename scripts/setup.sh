#!/usr/bin/env bash
# One-time setup of a Debian machine for qlora-cpp; idempotent (a second run takes seconds).
#   - Debian packages: compiler, cmake, ninja, ccache and the C++ libraries we link.
#   - A Python venv OUTSIDE the checkout (default ~/.cache/qlora/venv; QLORA_VENV overrides) holding the
#     pinned torch wheel, whose libtorch is our C++ dependency, and the reference libraries for tests.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${QLORA_VENV:-$HOME/.cache/qlora/venv}

packages=(build-essential cmake ninja-build ccache pkg-config git python3 python3-venv
          libsentencepiece-dev libgloo-dev zlib1g-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libgtest-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The venv: python3 of the machine (3.10+). The stamp records which requirements it holds; the stamp alone
# is not trusted: a venv whose packages were removed or broken since (the stamp unchanged) would let every
# parity test skip, so the libraries must also import, else they are installed again.
stamp="$VENV/.qlora-requirements"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
# The modules the build (torch) and the parity tests (tests/python) import.
venv_modules="torch, transformers, peft, bitsandbytes, safetensors, sentencepiece, numpy"
venv_import_error() { "$VENV/bin/python" -c "import $venv_modules" 2>&1 | tail -1; return "${PIPESTATUS[0]}"; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
reason="" force=()
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  reason="requirements changed"
elif ! err=$(venv_import_error); then
  # pip would call a broken package of the right version "already satisfied": reinstall for real.
  reason="the venv does not import its packages ($err)" force=(--force-reinstall)
fi
if [ -n "$reason" ]; then
  echo "setup: installing pinned Python packages into $VENV: $reason (torch is large: a few minutes once)"
  rm -f "$stamp"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${force[@]}" -r "$here/requirements.txt"
  if ! err=$(venv_import_error); then
    echo "setup: error: $VENV still cannot import $venv_modules after installing: $err" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
echo "setup: ok (venv $VENV, torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null))"
