#!/usr/bin/env bash
# Tokenization throughput of `dape prepare` on the demo corpus, with the byte tokenizer and with a
# SentencePiece BPE model, at 1 and 2 ranks. Prints figures; never fails on time.
#
#   bash bench/prepare.sh [--corpus FILE] [--repeat K] [--vocab N] [--ranks 1,2]
#                         [--launcher copies|mpirun] [--runs R] [--dape BIN]
#
# Corpus: FILE (default data/kjv.txt, written with `bible` when missing) repeated K times (default
# 4) and cut into documents of about 100 kB at line ends, so ranks have documents to share.
# The SentencePiece model (train-sp:N, default 4096) is trained once on FILE, and that training
# time is reported on its own; the timed runs then encode with it (sp:MODEL).
#
# Ranks: --launcher mpirun runs `mpirun -np N dape prepare`, each rank tokenizing its share of
# the documents (for when prepare runs under MPI); --launcher copies (the default) starts N
# independent `dape prepare` processes at once, each tokenizing the whole corpus into its own
# directory, which measures how well N processes share the machine. Either way each rank gets
# cores/N threads. Figures: wall time of the slowest rank (best of R runs, default 3), MB/s per
# rank = the bytes a rank tokenized / that time, total MB/s = all ranks' bytes / that time,
# scaling = total MB/s at N ranks / total MB/s at 1 rank.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=data/kjv.txt
REPEAT=4
VOCAB=4096
RANKS=1,2
LAUNCHER=copies
RUNS=3
DAPE=build/dape
while [ $# -gt 0 ]; do
  case $1 in
    --corpus) CORPUS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --vocab) VOCAB=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --launcher) LAUNCHER=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --dape) DAPE=$2; shift 2 ;;
    *) echo "bench/prepare.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
case $LAUNCHER in copies|mpirun) ;; *) echo "--launcher must be copies or mpirun" >&2; exit 2 ;; esac
[ -x "$DAPE" ] || { echo "bench/prepare.sh: $DAPE not found; build first (scripts/build.sh)" >&2; exit 1; }
DAPE=$(realpath "$DAPE")
if [ ! -s "$CORPUS" ]; then
  mkdir -p "$(dirname "$CORPUS")"
  bible Gen1:1-Rev22:21 > "$CORPUS"
fi
CORES=$(nproc)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dape_bench_prepare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/docs"
for _ in $(seq "$REPEAT"); do cat "$CORPUS"; done | split -C 100000 -d -a 5 - "$WORK/docs/doc_"
BYTES=$(cat "$WORK"/docs/* | wc -c)
DOCS=$(ls "$WORK/docs" | wc -l)
echo "corpus: $CORPUS × $REPEAT = $(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }') MB" \
     "in $DOCS documents; $CORES cores; launcher $LAUNCHER"

# The SentencePiece model, trained once; the summary line ends with "in S s".
"$DAPE" --log-level warn prepare --input "$CORPUS" --tokenizer "train-sp:$VOCAB" \
    --out "$WORK/trained" --no-progress > "$WORK/trained.txt"
TRAIN_S=$(sed -n 's/^  tokenizer .* in \([0-9.]*\) s$/\1/p' "$WORK/trained.txt")
echo "sentencepiece: train-sp:$VOCAB trained in ${TRAIN_S} s on $CORPUS ($(wc -c < "$CORPUS") bytes)"
cp "$WORK/trained/tokenizer.model" "$WORK/sp.model"

# Seconds (wall) for one run of N ranks with tokenizer $2, the slowest rank's.
run_once() {
  local n=$1 tok=$2 threads=$(( CORES / $1 > 0 ? CORES / $1 : 1 ))
  rm -rf "$WORK"/out_*
  local start end
  start=$(date +%s.%N)
  if [ "$LAUNCHER" = mpirun ]; then
    local as_root=()
    [ "$(id -u)" -eq 0 ] && as_root=(--allow-run-as-root)
    mpirun --oversubscribe "${as_root[@]}" -np "$n" "$DAPE" --threads "$threads" --log-level warn \
        prepare --input "$WORK/docs" --tokenizer "$tok" --out "$WORK/out_0" --no-progress > /dev/null
  else
    local pids=() r
    for r in $(seq 0 $(( n - 1 ))); do
      "$DAPE" --threads "$threads" --log-level warn prepare --input "$WORK/docs" --tokenizer "$tok" \
          --out "$WORK/out_$r" --no-progress > /dev/null &
      pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r"; done
  fi
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }'
}

printf "%-12s %5s %9s %11s %11s %8s\n" tokenizer ranks wall_s "MB/s/rank" "MB/s total" scaling
for tok in byte "sp:$WORK/sp.model"; do
  name=$([ "$tok" = byte ] && echo byte || echo "sp-$VOCAB")
  base=""
  for n in ${RANKS//,/ }; do
    best=""
    for _ in $(seq "$RUNS"); do
      s=$(run_once "$n" "$tok")
      best=$(awk -v a="$s" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')
    done
    # Bytes one rank tokenized: all of them (copies) or its share (mpirun).
    per_rank=$([ "$LAUNCHER" = mpirun ] && echo $(( BYTES / n )) || echo "$BYTES")
    total=$(awk -v b="$per_rank" -v n="$n" -v s="$best" 'BEGIN { printf "%.2f", b * n / s / 1e6 }')
    [ -z "$base" ] && base=$total
    awk -v name="$name" -v n="$n" -v s="$best" -v b="$per_rank" -v t="$total" -v base="$base" \
        'BEGIN { printf "%-12s %5d %9.3f %11.2f %11.2f %8.2f\n", name, n, s, b / s / 1e6, t, t / base }'
  done
done
