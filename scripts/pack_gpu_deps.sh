#!/usr/bin/env bash
# Packs the Debian C++ libraries qlora-cpp links (headers, libraries, CMake/pkg-config files) into .gpu-deps/,
# an ignored folder that travels with the working tree to the offline GPU machine (which has python3 + torch,
# nvcc, cmake and ninja, but no package registry). scripts/gpu_check.sh uses it. Run it here, after setup.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/.gpu-deps"
packages=(libsentencepiece-dev libsentencepiece0 nlohmann-json3-dev libyaml-cpp-dev
          libyaml-cpp0.7 libgloo-dev libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgtest-dev zlib1g-dev zlib1g)
rm -rf "$out"
mkdir -p "$out"
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { echo "pack: $p not installed (run scripts/setup.sh)"; exit 1; }
  dpkg -L "$p" | while read -r f; do
    case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*) continue ;; esac
    # zlib1g ships its .so under /lib on some releases; keep everything under usr/
    if [ -f "$f" ]; then
      dest="$out/usr${f#/usr}"
      mkdir -p "$(dirname "$dest")"
      cp -L "$f" "$dest"  # dereferenced: symlinks may not travel to the GPU machine
    fi
  done
done
# pkg-config files carry prefix=/usr: make them relative to their own location.
for pc in "$out"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$out"/usr/share/pkgconfig/*.pc; do
  [ -f "$pc" ] && sed -i 's|^prefix=/usr$|prefix=${pcfiledir}/../../..|' "$pc"
done
echo "pack: $(du -sh "$out" | cut -f1) in $out"
