#!/usr/bin/env bash
# The demo, from a fresh machine: install dependencies, build, prepare the King James Bible as a
# byte-level corpus, train configs/demo.pbtxt (a 4-layer DAPE-Kerple model) and print the
# validation table at lengths 128 to 1024. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
mkdir -p data
if [ ! -f data/kjv/dataset.pbtxt ]; then
  bible Gen1:1-Rev22:21 > data/kjv.txt
  build/dape prepare --input data/kjv.txt --tokenizer byte --out data/kjv --val-fraction 0.02
fi
build/dape train --config configs/demo.pbtxt --resume none --set run_dir=runs/demo-$(date +%Y%m%d-%H%M%S) "$@"
