#!/usr/bin/env bash
# Quickstart on a fresh Debian machine (about a minute on 2 cores after the build):
#   1. install packages and build fedengine;
#   2. generate the synthetic digit tasks and their tokenizer;
#   3. make a small pretrained base model (full-parameter training on "copy");
#   4. fine-tune a LoRA adapter on the new "shift" task and watch exact match rise;
#   5. evaluate the adapter and generate with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target fedengine
fedengine=./build/apps/fedengine
rm -rf quickstart
$fedengine make-data --out quickstart/data --seed 0
$fedengine init-model --config configs/tiny-llama.json --out quickstart/random-base --seed 0
$fedengine train configs/quickstart-pretrain.yaml
$fedengine train configs/quickstart-lora.yaml
echo "== held-out evaluation of the adapter"
$fedengine eval configs/quickstart-lora.yaml --adapter quickstart/lora/adapter
echo "== generate: shift 1 2 3 4 ="
$fedengine generate --model quickstart/pretrain/model --adapter quickstart/lora/adapter --prompt "shift 1 2 3 4 =" --max-new-tokens 8
