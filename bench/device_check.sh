#!/usr/bin/env bash
# bench/device_check.sh — everything the GPU machine is for, in one run that fits its loan.
#
# Runs from binaries built and bundled on a machine without a GPU (bench/README.md, "Running it on
# the device machine"): the GPU tests, then every benchmark, then HF transformers + PEFT on the same
# training shape. Each step has its own timeout, so one hang costs that step and not the rest, and
# the whole run stays inside DEVICE_CHECK_BUDGET seconds (default 470: under 8 minutes): a step
# starts only with its time left, and is cut to what remains.
#
# Writes to OUT (the device tool's $OUT, else ./device-check):
#   device_check.log    every step's command, output, exit status and seconds, as it runs
#   device_check.json   {"commit", "device", "steps": [{"name", "command", "status", "rc",
#                       "seconds", "json": [the JSON lines the step printed]}]}, status being
#                       passed | failed | timed out | skipped (binary absent or no time left)
#   gpu_tests.json      googletest's report of the GPU tests; device_check.json counts them as
#                       "gpu_tests": {"passed", "failed", "skipped"} (a skip on this machine means
#                       the binary did not see the GPU, and fails the check)
# Exit status: 0 when every step that ran passed, 1 otherwise.
#
# Usage: bench/device_check.sh [BUNDLE]   (BUNDLE: the bundle directory, default .device)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bundle=${1:-.device}
out=${OUT:-./device-check}
budget=${DEVICE_CHECK_BUDGET:-470}
mkdir -p "$out"
log="$out/device_check.log"
steps="$out/steps.jsonl"
: >"$log"
: >"$steps"

if [ ! -d "$bundle/bin" ]; then
  echo "device_check: no $bundle/bin: build and bundle first (bench/README.md)" | tee -a "$log" >&2
  exit 2
fi
# shellcheck source=/dev/null
source "$bundle/env.sh"
export FEDENGINE_CLI="$PWD/$bundle/bin/fedengine"
started=$SECONDS

# step NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (less when the budget has less
# left), appends its output to the log and one line to steps.jsonl.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - started)))
  local status rc=-1 seconds=0 output="$out/step.out"
  : >"$output"
  if [ ! -x "$1" ] && ! command -v "$1" >/dev/null 2>&1; then
    status="skipped"
    echo "== $name: skipped ($1 is not in the bundle)" | tee -a "$log"
  elif [ "$left" -lt 15 ]; then
    status="skipped"
    echo "== $name: skipped (${left}s of the ${budget}s budget left)" | tee -a "$log"
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most ${limit}s): $*" | tee -a "$log"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$output" 2>&1
    rc=$?
    seconds=$((SECONDS - t0))
    cat "$output" >>"$log"
    case $rc in
      0) status="passed" ;;
      124 | 137) status="timed out" ;;
      *) status="failed" ;;
    esac
    echo "== $name: $status (exit $rc, ${seconds}s)" | tee -a "$log"
  fi
  python3 - "$name" "$status" "$rc" "$seconds" "$output" "$*" >>"$steps" <<'PY'
import json, sys
name, status, rc, seconds, output, command = sys.argv[1:]
lines = []
for line in open(output, errors="replace"):
    line = line.strip()
    if line.startswith("{"):
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
print(json.dumps({"name": name, "command": command, "status": status, "rc": int(rc),
                  "seconds": int(seconds), "json": lines}))
PY
}

bin="$bundle/bin"
step "device" 15 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
step "gpu tests" 150 "$bin/fe_tests" --gtest_filter='Gpu*:CliWorkflow.TrainsOnTheGpu*' \
  --gtest_output="json:$out/gpu_tests.json"
step "bench_kernels" 45 "$bin/bench_kernels" --iters 20
step "bench_linear" 30 "$bin/bench_linear" --iters 10
step "bench_attention" 40 "$bin/bench_attention" --iters 5
step "bench_cross_entropy" 30 "$bin/bench_cross_entropy" --iters 10
step "bench_aggregate" 30 "$bin/bench_aggregate" --iters 10
step "bench_train llama-1b seq 2048" 60 "$bin/bench_train" --shape llama-1b --seq 2048 --batch 4 --steps 5
step "HF + PEFT vs fedengine, llama-1b seq 2048" 120 python3 "$here/compare_hf_peft.py" --shape llama-1b \
  --seq 2048 --batch 4 --steps 5 --fedengine "$bin/bench_train"

python3 - "$steps" "$out/device_check.json" <<'PY'
import json, os, subprocess, sys
steps = [json.loads(line) for line in open(sys.argv[1])]
def ask(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
report = {"commit": ask("git", "rev-parse", "HEAD"),
          "device": ask("nvidia-smi", "--query-gpu=name", "--format=csv,noheader"),
          "steps": steps}
gtest = os.path.join(os.path.dirname(sys.argv[2]), "gpu_tests.json")
if os.path.exists(gtest):
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in json.load(open(gtest)).get("testsuites", []):
        for test in suite.get("testsuite", []):
            if test.get("failures"):
                counts["failed"] += 1
            elif test.get("result") == "SKIPPED":
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    report["gpu_tests"] = counts
    if counts["skipped"]:
        for s in steps:
            if s["name"] == "gpu tests" and s["status"] == "passed":
                s["status"] = "failed"
    print(f"gpu tests: {counts}")
json.dump(report, open(sys.argv[2], "w"), indent=2)
for s in steps:
    print(f"{s['status']:>9}  {s['seconds']:>4}s  {s['name']}")
PY
rm -f "$out/step.out" "$steps"
echo "device_check: $((SECONDS - started))s; log $log, figures $out/device_check.json"
grep -q '"status": "failed"\|"status": "timed out"' "$out/device_check.json" && exit 1
exit 0
