#!/usr/bin/env bash
# Tokenization throughput of `dape prepare` on the demo corpus, with the byte tokenizer and with a
# SentencePiece BPE model, at 1 and 2 ranks. Prints figures; never fails on time.
#
#   bash bench/prepare.sh [--corpus FILE] [--repeat K] [--vocab N] [--ranks 1,2]
#                         [--launcher mpirun|copies] [--runs R] [--dape BIN]
#
# Corpus: FILE (default data/kjv.txt, written with `bible` when missing) repeated K times (default
# 16, 69 MB) and cut into documents of about 100 kB at line ends, so ranks have documents to share.
# The SentencePiece model (train-sp:N, default 4096) is trained once on FILE, and that training
# time is reported on its own; the timed runs then encode with it (sp:MODEL).
#
# Ranks: --launcher mpirun (the default) runs `mpirun -np N dape prepare`, each rank tokenizing its
# share of the documents into its own shards; --launcher copies starts N independent `dape
# prepare` processes at once, each tokenizing the whole corpus into its own directory (how well N
# processes share the machine). Either way each rank gets cores/N threads. Figures, best of R runs
# (default 3): wall_s, the whole command (mpirun's start-up ≈0.3 s included, the record count,
# writing the manifest); MB/s/rank, input bytes one rank read, tokenized and wrote per second of
# its own work (the slowest rank's, from prepare's summary); MB/s ranks, N × that, the rate of the
# part that runs in parallel; MB/s wall, all input bytes / wall_s; scaling, MB/s ranks at N
# ranks / at 1 rank.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=data/kjv.txt
REPEAT=16
VOCAB=4096
RANKS=1,2
LAUNCHER=mpirun
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

# One run of N ranks with tokenizer $2: prints "WALL_S RANK_MBPS", the command's wall time and the
# slowest rank's own tokenizing rate (the lowest over the copies, with --launcher copies).
run_once() {
  local n=$1 tok=$2 threads=$(( CORES / $1 > 0 ? CORES / $1 : 1 ))
  rm -rf "$WORK"/out_* "$WORK"/summary_*
  local start end
  start=$(date +%s.%N)
  if [ "$LAUNCHER" = mpirun ]; then
    local as_root=()
    [ "$(id -u)" -eq 0 ] && as_root=(--allow-run-as-root)
    mpirun --oversubscribe "${as_root[@]}" -np "$n" "$DAPE" --threads "$threads" --log-level warn \
        prepare --input "$WORK/docs" --tokenizer "$tok" --out "$WORK/out_0" --no-progress \
        > "$WORK/summary_0"
  else
    local pids=() r
    for r in $(seq 0 $(( n - 1 ))); do
      "$DAPE" --threads "$threads" --log-level warn prepare --input "$WORK/docs" --tokenizer "$tok" \
          --out "$WORK/out_$r" --no-progress > "$WORK/summary_$r" &
      pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r"; done
  fi
  end=$(date +%s.%N)
  local rank_mbps
  rank_mbps=$(sed -n 's/^  ranks .*: \([0-9.]*\) MB\/s)$/\1/p' "$WORK"/summary_* | sort -g | head -n 1)
  [ -n "$rank_mbps" ] || { echo "bench/prepare.sh: no ranks line in prepare's summary" >&2; exit 1; }
  awk -v a="$start" -v b="$end" -v r="$rank_mbps" 'BEGIN { printf "%.4f %s\n", b - a, r }'
}

printf "%-12s %5s %9s %11s %12s %11s %8s\n" tokenizer ranks wall_s "MB/s/rank" "MB/s ranks" \
    "MB/s wall" scaling
for tok in byte "sp:$WORK/sp.model"; do
  name=$([ "$tok" = byte ] && echo byte || echo "sp-$VOCAB")
  base=""
  for n in ${RANKS//,/ }; do
    best="" best_rank=""
    for _ in $(seq "$RUNS"); do
      read -r s r < <(run_once "$n" "$tok")
      if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then
        best=$s
      fi
      if [ -z "$best_rank" ] || awk -v a="$r" -v b="$best_rank" 'BEGIN { exit !(a > b) }'; then
        best_rank=$r
      fi
    done
    # Input bytes all ranks tokenized: the corpus once (mpirun) or once per copy.
    all=$([ "$LAUNCHER" = mpirun ] && echo "$BYTES" || echo $(( BYTES * n )))
    ranks_rate=$(awk -v r="$best_rank" -v n="$n" 'BEGIN { printf "%.2f", r * n }')
    [ -z "$base" ] && base=$ranks_rate
    awk -v name="$name" -v n="$n" -v s="$best" -v r="$best_rank" -v rr="$ranks_rate" -v b="$all" \
        -v base="$base" 'BEGIN { printf "%-12s %5d %9.3f %11.2f %12.2f %11.2f %8.2f\n",
                                 name, n, s, r, rr, b / s / 1e6, rr / base }'
  done
done
