#!/usr/bin/env bash
# Builds and unit-tests dape at each x86-64 ISA level below the build machine's own, so that a
# user's CPU without AVX-512 (or without AVX) runs code that CI has run. scripts/test.sh covers
# the native build; this adds, by default:
#
#   x86-64-v3   AVX2 + FMA (Haswell and later, AMD Zen): kernels -march=x86-64-v3, oneDNN capped
#               with ONEDNN_MAX_CPU_ISA=AVX2
#   x86-64-v2   SSE4.2, no FMA (the baseline dape claims): -march=x86-64-v2, ONEDNN_MAX_CPU_ISA=SSE41
#
# Each level is a CPU-only Release build (-Werror) in build-<level>/ of the dape binary and the
# unit tests, which then run in full (ctest -L unit). The machine must support the level (this
# checks /proc/cpuinfo and fails if it does not).
#
#   bash scripts/isa-check.sh [LEVEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
LEVELS=("$@")
[ ${#LEVELS[@]} -gt 0 ] || LEVELS=(x86-64-v3 x86-64-v2)

flags=" $(grep -m1 '^flags' /proc/cpuinfo | sed 's/^[^:]*://') "
for level in "${LEVELS[@]}"; do
  case $level in
    x86-64-v4) need="avx512f avx512bw avx512vl avx2 fma"; cap=AVX512_CORE ;;
    x86-64-v3) need="avx2 fma bmi2"; cap=AVX2 ;;
    x86-64-v2) need="sse4_2 popcnt"; cap=SSE41 ;;
    *) echo "isa-check: unknown level '$level' (x86-64-v2, x86-64-v3 or x86-64-v4)" >&2; exit 2 ;;
  esac
  for f in $need; do
    [[ $flags == *" $f "* ]] || { echo "isa-check: this CPU lacks '$f', needed to run $level" >&2; exit 1; }
  done
  start=$(date +%s)
  echo "==== isa-check: $level (ONEDNN_MAX_CPU_ISA=$cap)"
  DAPE_BUILD_DIR=build-$level DAPE_BUILD_TARGETS="dape dape_unit_tests" bash scripts/build.sh \
    -DDAPE_CUDA=OFF -DDAPE_MARCH="$level" -DDAPE_WERROR=ON
  ONEDNN_MAX_CPU_ISA=$cap "build-$level/dape" --version | grep '^CPU kernels'
  (cd "build-$level" && ONEDNN_MAX_CPU_ISA=$cap ctest -L unit --output-on-failure --timeout 900)
  s=$(($(date +%s) - start))
  echo "==== isa-check: $level passed in $((s / 60))m$((s % 60))s"
done
echo "isa-check: every level passed: ${LEVELS[*]}"
