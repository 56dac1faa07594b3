#!/usr/bin/env bash
# Builds the libFuzzer target for the federation message decoder with clang (address and
# undefined-behaviour sanitizers) and runs it for FUZZ_SECONDS (default 30). Any crash, sanitizer
# report or exception other than ProtocolError fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-30}
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev); skipped"
  exit 0
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_COMPILER=clang -DFE_WITH_CUDA=OFF -DBUILD_TESTING=OFF -DFE_FUZZ=ON >/dev/null
cmake --build "$build_dir" --target protocol_fuzzer -j "$(nproc)"
# Seeds: valid messages of every type (fed/fuzz/seeds); new finds go to the build's corpus.
mkdir -p "$build_dir/corpus"
"$build_dir/fed/protocol_fuzzer" -max_total_time="$seconds" -print_final_stats=1 -dict=fed/fuzz/protocol.dict \
  "$build_dir/corpus" fed/fuzz/seeds 2>&1 | tail -n 12
