#!/usr/bin/env bash
# Configures and builds dape into build/ (or $DAPE_BUILD_DIR). Extra arguments go to cmake,
# e.g. scripts/build.sh -DDAPE_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${DAPE_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
