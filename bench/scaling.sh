#!/usr/bin/env bash
# Weak and strong scaling of training steps over process counts and tensor-parallel sizes, with
# build/bench/scaling (synthetic tokens, no disk) under mpirun. Prints a table and writes every
# run as JSON; never fails on time.
#
#   bash bench/scaling.sh [--procs 1,2] [--tp 1,2] [--mode weak|strong|both] [--preset demo]
#                         [--per-rank-batch 8] [--global-batch 16] [--micro 8] [--threads 1]
#                         [--steps 5] [--peak-gflops G] [--json FILE] [--launcher "CMD"]
#
# weak: every data-parallel replica keeps --per-rank-batch samples per step (the global batch
# grows with the replicas); strong: --global-batch samples per step in all. Efficiency, both:
# tokens/s at N processes / (N × tokens/s of the 1-process run of that mode), so 100% is
# perfect scaling (a TP group of N ranks works on one replica's batch: its ideal is N× faster).
# --launcher: the command that starts N processes, with N as {n} (default
# "mpirun --oversubscribe -np {n}", plus --allow-run-as-root as root); on a cluster use
# launcher/dape-launch or srun, e.g. --launcher "srun -n {n} --mpi=pmix".
# Combinations where tp does not divide the process count are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
PROCS=1,2 TPS=1,2 MODE=both PRESET=demo PER_RANK=8 GLOBAL=16 MICRO=8 THREADS=1 STEPS=5 PEAK=0
JSON=bench_scaling.json
LAUNCHER="mpirun --oversubscribe -np {n}"
[ "$(id -u)" -eq 0 ] && LAUNCHER="mpirun --oversubscribe --allow-run-as-root -np {n}"
while [ $# -gt 0 ]; do
  case $1 in
    --procs) PROCS=$2; shift 2 ;;
    --tp) TPS=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --preset) PRESET=$2; shift 2 ;;
    --per-rank-batch) PER_RANK=$2; shift 2 ;;
    --global-batch) GLOBAL=$2; shift 2 ;;
    --micro) MICRO=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --peak-gflops) PEAK=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --launcher) LAUNCHER=$2; shift 2 ;;
    *) echo "bench/scaling.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
case $MODE in weak|strong|both) ;; *) echo "--mode must be weak, strong or both" >&2; exit 2 ;; esac
BIN=build/bench/scaling
[ -x "$BIN" ] || { echo "bench/scaling.sh: $BIN not found; build first (scripts/build.sh)" >&2; exit 1; }

modes=$([ "$MODE" = both ] && echo "weak strong" || echo "$MODE")
: > "$JSON.tmp"
for mode in $modes; do
  for tp in ${TPS//,/ }; do
    for n in ${PROCS//,/ }; do
      [ $((n % tp)) -eq 0 ] || continue
      batch=$([ "$mode" = weak ] && echo "--per-rank-batch $PER_RANK" || echo "--global-batch $GLOBAL")
      line=$(${LAUNCHER//\{n\}/$n} "$BIN" --preset "$PRESET" --tp "$tp" $batch --micro "$MICRO" \
          --threads "$THREADS" --steps "$STEPS" --peak-gflops "$PEAK" | tail -n 1)
      echo "{\"mode\": \"$mode\", ${line#\{}" >> "$JSON.tmp"
    done
  done
done
python3 - "$JSON.tmp" "$JSON" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = {}
for r in runs:
    if r["world"] == 1:   # the reference of its mode
        base[r["mode"]] = r
print("%-6s %5s %3s %3s %6s %11s %13s %8s %9s %9s %6s %6s" % ("mode", "procs", "dp", "tp", "batch",
      "tokens/s", "tok/s/rank", "step_s", "compute_s", "comm_s", "eff", "mfu"))
for r in runs:
    b = base.get(r["mode"])
    eff = r["tokens_per_s"] / (r["world"] * b["tokens_per_s"]) if b is not None else None
    r["efficiency"] = eff
    print("%-6s %5d %3d %3d %6d %11.1f %13.1f %8.4f %9.4f %9.4f %6s %6s" % (
        r["mode"], r["world"], r["dp"], r["tp"], r["global_batch"], r["tokens_per_s"],
        r["tokens_per_s_per_rank"], r["step_s"], r["compute_s"], r["comm_s"],
        "%.0f%%" % (100 * eff) if eff is not None else "-",
        "%.1f%%" % (100 * r["mfu"]) if r["mfu"] is not None else "n/a"))
json.dump(runs, open(sys.argv[2], "w"), indent=1)
print("runs written to", sys.argv[2])
PY
rm -f "$JSON.tmp"
