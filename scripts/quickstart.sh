#!/usr/bin/env bash
# Quickstart on a fresh Debian machine (a minute or two on 2 cores after the build):
#   1. install packages and build fedengine;
#   2. generate the synthetic digit tasks, split into three participants' shards, and a tokenizer;
#   3. make a small pretrained base model (full-parameter training on "copy");
#   4. run a federation: three participants train one LoRA adapter on "shift", a skill the base
#      lacks; the server averages their adapters each round and exact match on held-out prompts
#      climbs round by round;
#   5. generate with the global adapter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target fedengine
fedengine=./build/apps/fedengine
rm -rf quickstart
$fedengine make-data --out quickstart/data --shards 3 --seed 0
$fedengine init-model --config configs/tiny-llama.json --out quickstart/random-base --seed 0
$fedengine train configs/quickstart-pretrain.yaml
$fedengine run configs/quickstart.yaml
echo "== generate with the global adapter: shift 1 2 3 4 ="
$fedengine generate --model quickstart/pretrain/model --adapter quickstart/federation/adapter \
  --prompt "shift 1 2 3 4 =" --max-new-tokens 8
