#!/usr/bin/env bash
# Quickstart on a fresh Debian machine: installs the packages, builds fedengine, and writes a
# small random Llama checkpoint with `fedengine init-model`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target fedengine
work=${QUICKSTART_DIR:-quickstart}
mkdir -p "$work"
./build/apps/fedengine init-model --config configs/tiny-llama.json --out "$work/base" --seed 0
