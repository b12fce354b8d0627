#!/usr/bin/env bash
# The GPU check: builds the CUDA backend, runs the GPU tests and the GPU benchmarks on this
# machine's first GPU, and writes OUT_DIR/summary.md with the figures and a verdict per stage.
#
#   bash tests/gpu/check.sh OUT_DIR
#
# Stages, each under its own time limit (`timeout`) so that the whole check, build included,
# ends within 8 minutes on one H200 with 16 cores:
#   nvidia-smi        the device, driver and CUDA version                    (nvidia-smi.txt)
#   configure         Release, -DDAPE_WERROR=ON, CUDA on, one architecture   (configure.log)
#   build             dape, dape_gpu_tests, bench/attention, bench/train_step (build.log)
#   gpu tests         ctest -L gpu; any test that skips is a failure here     (gpu_tests.log;
#                     every test's own output, with the errors it measured: gpu_tests.xml)
#   bench attention   fused kernel, H=12 D=64 W=32 Kerple, N = 512, 2048, 8192 at 16384 tokens,
#                     with and without DAPE, fp32 and bf16                    (bench_attention.log)
#   bench train_step  the paper's 125M DAPE-Kerple model at length 512, bf16: tokens/s, MFU
#                                                                             (bench_train_step.log)
# A failing stage is recorded and the next runs where it can (nothing runs after a failed build);
# the exit status is non-zero when any stage failed.
#
# Environment:
#   DAPE_GPU_ARCH       CMAKE_CUDA_ARCHITECTURES (default: the GPU's compute capability from
#                       nvidia-smi, e.g. 90 on an H100/H200; 90 when it cannot be read)
#   DAPE_GPU_BUILD_DIR  the build directory (default build-gpu in the repository); an existing one
#                       is reused, so a second run only rebuilds what changed
#
# Needs what scripts/install-deps.sh installs plus the CUDA toolkit (nvcc, cuBLAS, NCCL) and a
# driver; nothing from the network. What is missing is reported up front.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash tests/gpu/check.sh OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${DAPE_GPU_BUILD_DIR:-build-gpu}
JOBS=$(nproc)

# Time limits in seconds (sum 473, under the 8 minutes).
LIMIT_SMI=10
LIMIT_CONFIGURE=30
LIMIT_BUILD=270
LIMIT_TESTS=80
LIMIT_TEST_EACH=60
LIMIT_BENCH_ATTENTION=12  # each of 4 runs
LIMIT_BENCH_TRAIN=35

SUMMARY_ROWS=()
FAILED=0
LAST_TOOK=0
CHECK_START=$SECONDS

# ---- prerequisites -----------------------------------------------------------------------------
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
missing=()
for cmd in cmake ctest g++ make pkg-config nvcc nvidia-smi timeout; do
  command -v "$cmd" >/dev/null || missing+=("command $cmd")
done
if command -v dpkg-query >/dev/null; then
  for p in libgtest-dev libbenchmark-dev libdnnl-dev libopenmpi-dev libprotobuf-dev \
    protobuf-compiler libspdlog-dev libfmt-dev libcli11-dev libzstd-dev libsimdjson-dev \
    libsentencepiece-dev libxxhash-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("package $p")
  done
fi
if command -v nvcc >/dev/null; then
  cuda_root=$(dirname "$(dirname "$(command -v nvcc)")")
  have_nccl=0
  for h in "$cuda_root/include/nccl.h" /usr/include/nccl.h /usr/local/include/nccl.h; do
    [ ! -f "$h" ] || have_nccl=1
  done
  [ "$have_nccl" -eq 1 ] || missing+=("nccl.h (NVIDIA's libnccl-dev)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  {
    echo "# GPU check: not run"
    echo
    echo "Missing prerequisites (scripts/install-deps.sh installs the packages; the CUDA toolkit,"
    echo "NCCL and the driver come from NVIDIA):"
    for m in "${missing[@]}"; do echo "- $m"; done
  } | tee "$OUT/summary.md" >&2
  exit 2
fi

# ---- stages --------------------------------------------------------------------------------------
# run_stage NAME LIMIT LOG COMMAND...: runs COMMAND under `timeout LIMIT` with its output in LOG,
# records PASS or FAIL (with the exit status; 124 is a timeout) and the time taken.
run_stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local start=$SECONDS rc=0
  echo "== $name (limit ${limit}s, log $log)"
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$log" 2>&1 || rc=$?
  local took=$((SECONDS - start)) verdict=PASS note=""
  LAST_TOOK=$took
  if [ "$rc" -ne 0 ]; then
    verdict=FAIL
    FAILED=1
    note="exit status $rc"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || note="timed out after ${limit}s"
    tail -n 30 "$OUT/$log" | sed 's/^/   | /'
  fi
  echo "   $verdict in ${took}s${note:+ ($note)}"
  SUMMARY_ROWS+=("| $name | $verdict${note:+ ($note)} | ${took}s | $log |")
  return "$rc"
}

skip_stage() {
  echo "== $1: not run ($2)"
  SUMMARY_ROWS+=("| $1 | FAIL (not run: $2) | - | - |")
  FAILED=1
}

# The architecture to compile for: only this GPU's, to keep the build short.
arch=${DAPE_GPU_ARCH:-}
if [ -z "$arch" ]; then
  cap=$(timeout 10 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
    head -n 1 | tr -d ' .\r' || true)
  if [[ "$cap" =~ ^[0-9]+$ ]]; then arch=$cap; else arch=90; fi
fi
echo "CUDA architecture: $arch; build directory: $BUILD; $JOBS jobs; output: $OUT"

run_stage "nvidia-smi" "$LIMIT_SMI" nvidia-smi.txt nvidia-smi || true
cat "$OUT/nvidia-smi.txt" || true

built=0
if run_stage "configure" "$LIMIT_CONFIGURE" configure.log \
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDAPE_WERROR=ON -DDAPE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch"; then
  if run_stage "build" "$LIMIT_BUILD" build.log \
    cmake --build "$BUILD" -j "$JOBS" --target dape dape_gpu_tests bench_attention \
    bench_train_step; then
    built=1
  fi
else
  skip_stage "build" "configure failed"
fi

tests_line=""
if [ "$built" -eq 1 ]; then
  # Four tests at a time, four threads each for their CPU references (16 cores); a test that
  # hangs fails alone.
  if run_stage "gpu tests" "$LIMIT_TESTS" gpu_tests.log \
    env OMP_NUM_THREADS=4 ctest --test-dir "$BUILD" -L gpu --output-on-failure -j 4 \
    --timeout "$LIMIT_TEST_EACH" --output-junit "$OUT/gpu_tests.xml"; then
    # On a GPU machine every GPU test must run: a skip means the device was not usable.
    skipped=$(grep -c '\*\*\*Skipped' "$OUT/gpu_tests.log" || true)
    if [ "$skipped" -gt 0 ]; then
      echo "   FAIL: $skipped tests skipped; why, as the device test says it:"
      timeout 20 "$BUILD/dape_gpu_tests" --gtest_filter='CudaDevice.*' 2>&1 |
        tee -a "$OUT/gpu_tests.log" | grep "skipped:" | sed 's/^/   | /' || true
      FAILED=1
      SUMMARY_ROWS[${#SUMMARY_ROWS[@]} - 1]="| gpu tests | FAIL ($skipped skipped) | ${LAST_TOOK}s | gpu_tests.log |"
    fi
  fi
  tests_line=$(grep -E "tests passed|tests failed" "$OUT/gpu_tests.log" | tail -n 1 || true)

  : >"$OUT/bench_attention.log"
  for precision in fp32 bf16; do
    for dape in with without; do
      dape_args=()
      [ "$dape" = with ] || dape_args=(--no-dape)
      label="bench attention $precision $dape DAPE"
      log="bench_attention_${precision}_${dape}_dape.log"
      run_stage "$label" "$LIMIT_BENCH_ATTENTION" "$log" \
        "$BUILD/bench/attention" --device cuda --precision "$precision" "${dape_args[@]}" \
        --impl fused --scheme kerple --heads 12 --head-dim 64 --width 32 --seq 512,2048,8192 \
        --tokens 16384 --reps 5 || true
      cat "$OUT/$log" >>"$OUT/bench_attention.log"
      echo >>"$OUT/bench_attention.log"
    done
  done

  run_stage "bench train_step" "$LIMIT_BENCH_TRAIN" bench_train_step.log \
    "$BUILD/bench/train_step" --device cuda --precision bf16 \
    --config configs/paper/125m_kerple_dape.pbtxt --seq 512 --steps 10 || true
else
  for s in "gpu tests" "bench attention" "bench train_step"; do skip_stage "$s" "no build"; done
fi

# ---- summary -------------------------------------------------------------------------------------
{
  echo "# GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
  echo "sm_$arch, $((SECONDS - CHECK_START))s in all."
  echo
  echo '```'
  timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null ||
    echo "(nvidia-smi gave nothing)"
  echo '```'
  echo
  echo "| stage | result | time | log |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${SUMMARY_ROWS[@]}"
  echo
  echo "GPU tests: ${tests_line:-no result}"
  failed_tests=$(sed -n '/The following tests FAILED/,$p' "$OUT/gpu_tests.log" 2>/dev/null |
    grep -E '^\s+[0-9]+ - ' || true)
  if [ -n "$failed_tests" ]; then
    echo
    echo "Failed tests:"
    echo '```'
    echo "$failed_tests"
    echo '```'
  fi
  echo
  echo "## Key figures"
  echo
  for precision in fp32 bf16; do
    for dape in with without; do
      row=$(awk '$1 == "fused" && $2 == 8192' \
        "$OUT/bench_attention_${precision}_${dape}_dape.log" 2>/dev/null || true)
      if [ -n "$row" ]; then
        echo "$row" | awk -v p="$precision" -v d="$dape" '{ printf "- attention N=8192, %s, %s DAPE: forward %s TFLOP/s, forward + backward %s TFLOP/s (%s ms)\n", p, d, $5, $7, $6 }'
      else
        echo "- attention N=8192, $precision, $dape DAPE: no figure"
      fi
    done
  done
  row=$(awk '$6 == "kerple" && $8 == 512' "$OUT/bench_train_step.log" 2>/dev/null || true)
  if [ -n "$row" ]; then
    echo "$row" | awk '{ printf "- 125M DAPE-Kerple training step at length 512, batch %s, bf16: %s tokens/s, %s TFLOP/s, MFU %s\n", $9, $12, $13, $14 }'
  else
    echo "- 125M training step: no figure"
  fi
  echo
  echo "## Attention (fused kernel, H=12 D=64 W=32, Kerple; 16384 tokens per batch)"
  echo
  echo '```'
  grep -E "^(attention|impl|fused|reference) " "$OUT/bench_attention.log" 2>/dev/null ||
    echo "(no figures)"
  echo '```'
  echo
  echo "## Training step (125M DAPE-Kerple, length 512, bf16)"
  echo
  echo '```'
  cat "$OUT/bench_train_step.log" 2>/dev/null || echo "(no figures)"
  echo '```'
  echo
  if [ "$FAILED" -eq 0 ]; then echo "Verdict: PASS"; else echo "Verdict: FAIL"; fi
} >"$OUT/summary.md"

echo
cat "$OUT/summary.md"
exit "$FAILED"
