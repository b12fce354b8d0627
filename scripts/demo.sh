#!/usr/bin/env bash
# The demo, from a fresh machine: install dependencies, build, write the King James Bible to
# data/kjv.txt, and train a config (default configs/demo.pbtxt, a 4-layer DAPE-Kerple model on
# bytes; configs/demo_sp.pbtxt is the same on SentencePiece tokens). The run prepares its dataset
# from data/kjv.txt on first use (the config's data.prepare), then prints the validation table at
# lengths 128 to 1024. Takes a few minutes on 2 cores.
#
#   bash scripts/demo.sh [CONFIG] [--set field=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/demo.pbtxt
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  CONFIG=$1
  shift
fi
bash scripts/install-deps.sh
# The demo builds only what it runs: the dape binary and its SentencePiece worker. Where nvcc is
# installed but no CUDA device is present, a new build/ leaves the CUDA kernels out (they take
# most of the build and would not run); scripts/test.sh, or scripts/build.sh -DDAPE_CUDA=ON,
# builds them. An existing build/ keeps its configuration.
cmake_args=()
if [ ! -f build/CMakeCache.txt ] && command -v nvcc >/dev/null &&
  ! { ls /dev/nvidia[0-9]* >/dev/null 2>&1 || nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  echo "demo: nvcc is installed but no CUDA device is present: building without the CUDA backend" \
    "(bash scripts/build.sh -DDAPE_CUDA=ON builds it)"
  cmake_args+=(-DDAPE_CUDA=OFF)
fi
DAPE_BUILD_TARGETS=dape bash scripts/build.sh "${cmake_args[@]}"
mkdir -p data
if [ ! -s data/kjv.txt ]; then
  bible Gen1:1-Rev22:21 > data/kjv.txt
fi
build/dape train --config "$CONFIG" --resume none \
  --set run_dir=runs/$(basename "$CONFIG" .pbtxt)-$(date +%Y%m%d-%H%M%S) "$@"
