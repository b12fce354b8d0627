#!/usr/bin/env bash
# Configures and builds dape into build/ (or $DAPE_BUILD_DIR). Extra arguments go to cmake,
# e.g. scripts/build.sh -DDAPE_CUDA=OFF or -DDAPE_MARCH=x86-64-v3. DAPE_BUILD_TARGETS names the
# targets to build (default: all, tests and benchmarks included), e.g. DAPE_BUILD_TARGETS=dape.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${DAPE_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${DAPE_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "$(nproc)" "${targets[@]}"
