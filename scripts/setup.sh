#!/usr/bin/env bash
# Installs every Debian package fedengine needs to build, test and run. Idempotent: packages that are
# already present are skipped, so running it twice costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev               # CPU GEMMs (the OpenMP build: one thread pool with ours)
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libsodium-dev zlib1g-dev
  clang libclang-rt-14-dev           # the libFuzzer target for the message decoder
  libsentencepiece-dev sentencepiece
  libgloo-dev                          # CPU ranks of a participant (engine/communicator.h)
  libcpp-httplib-dev                   # the monitoring endpoint (fed/monitor.h)
  libpcre2-dev libutf8proc-dev         # tokenizer.json: Unicode regex pre-tokenizers, NFC
  python3-torch python3-numpy          # independent reference implementations in the tests
  python3-jinja2 python3-venv          # chat-template reference; the venv for PyPI references (scripts/reference_env.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
