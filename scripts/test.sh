#!/usr/bin/env bash
# Configures, builds and runs the whole test suite (ctest). The CUDA backend is compiled whenever
# nvcc is found; GPU tests run only where a GPU is present and skip with the reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
# Debian's PyTorch reference must be there: a missing torch is a failure, not a skip.
export FE_REQUIRE_TORCH=${FE_REQUIRE_TORCH:-1}
# HF tokenizers, gguf and the SmolLM2 checkpoint, cached outside the clone (tests/reference_env.h).
bash scripts/reference_env.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
