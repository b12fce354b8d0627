# Stop signals under mpirun (2 data-parallel ranks): the run finishes its step, writes a complete
# checkpoint and stops; resuming from it gives, step for step, bitwise the losses of a run that
# was never interrupted.
# (a) SIGUSR1 to mpirun: Open MPI forwards it to every rank; mpirun exits 0.
# (b) SIGTERM to launcher/dape-launch, which passes it to mpirun as SIGUSR1: exit 0.
# SIGTERM sent straight to Open MPI 4.1's mpirun is not tested: mpirun ends the job (SIGTERM to
# the ranks after odls_base_sigkill_timeout seconds, SIGKILL as long again later, status 1
# whatever the ranks did; see core/train/stop_signal.h), so whether the ranks' checkpoint is
# complete depends on that race.
source "$(dirname "$0")/lib.bash"
MPIRUN=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)
job=""
end_job() {
  [ -n "$job" ] && kill -0 "$job" 2> /dev/null || return 0
  local p
  for p in $(pgrep -P "$job"); do kill -9 "$p" 2> /dev/null || true; done
  kill -9 "$job" 2> /dev/null || true
}
trap end_job EXIT

make_corpus 4000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress > /dev/null
cat > dp2.pbtxt <<CFG
run_dir: "ref"
data { path: "data" }
model { layers: 2 d_model: 32 heads: 4 position: "kerple" dape { enabled: true mlp_width: 8 } }
train { steps: 100000 seq_len: 64 micro_batch: 2 global_batch: 4 lr: 3e-3 min_lr: 3e-4 }
checkpoint { interval: 0 keep_last: 2 }
eval { at_end: false }
CFG

loss_of() { grep "\"step\":$2," "$1/metrics.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
latest_step() { sed 's/step_0*//' "$1/checkpoints/latest"; }

# stop_with SIGNAL RUN [LAUNCHER...]: starts a run (through mpirun, or LAUNCHER), sends SIGNAL to
# it once 5 steps are logged, waits.
stop_with() {
  local sig=$1 run=$2 status=0 start
  shift 2
  local launch=("${MPIRUN[@]}")
  [ $# -eq 0 ] || launch=("$@")
  "${launch[@]}" "$DAPE" train --config dp2.pbtxt --set run_dir="$run" --resume none \
    --no-progress > "$run.txt" 2>&1 &
  job=$!
  for _ in $(seq 600); do
    [ "$(cat "$run/metrics.jsonl" 2> /dev/null | wc -l)" -ge 5 ] && break
    sleep 0.1
  done
  start=$EPOCHREALTIME
  kill "-$sig" "$job"
  wait "$job" || status=$?
  job=""
  echo "$sig: mpirun exited with status $status after $(awk -v a="$start" -v b="$EPOCHREALTIME" \
    'BEGIN { printf "%.2f", b - a }') s"
  STATUS=$status
}

check_resume() {
  local run=$1 n
  n=$(latest_step "$run")
  [ -f "$run/checkpoints/step_$(printf %08d "$n")/manifest.pb" ] || fail "$run: step $n incomplete"
  "$DAPE" inspect "$run" > "$run.inspect.txt" || fail "$run: the checkpoint does not verify"
  grep -q "stop signal received: stopped after step $n" "$run.txt" || fail "$run: no stop message"
  if grep -q "exited on signal\|killed" "$run.txt"; then cat "$run.txt"; fail "$run: a rank was killed"; fi
  timeout 120 "${MPIRUN[@]}" "$DAPE" train --config dp2.pbtxt --set run_dir="$run" --resume auto \
    --stop-at-step $((n + 5)) --no-progress > "$run.resumed.txt" 2>&1 ||
    { cat "$run.resumed.txt"; fail "$run: resume failed"; }
  rm -rf ref
  timeout 120 "${MPIRUN[@]}" "$DAPE" train --config dp2.pbtxt --resume none \
    --stop-at-step $((n + 5)) --no-progress > ref.txt 2>&1 || fail "reference run failed"
  for s in $(seq $((n - 2)) $((n + 5))); do
    [ -n "$(loss_of ref "$s")" ] && [ "$(loss_of "$run" "$s")" = "$(loss_of ref "$s")" ] ||
      fail "$run: step $s loss $(loss_of "$run" "$s") differs from the uninterrupted $(loss_of ref "$s")"
  done
  echo "ok: $run stopped at step $n with a complete checkpoint; steps $((n - 2))-$((n + 5)) match the uninterrupted run bitwise"
}

stop_with USR1 usr1
[ "$STATUS" -eq 0 ] || { cat usr1.txt; fail "SIGUSR1: mpirun exited with $STATUS"; }
check_resume usr1

stop_with TERM launched "$SRC/launcher/dape-launch" --hosts localhost --procs-per-node 2 \
  --threads-per-rank 1 --
[ "$STATUS" -eq 0 ] || { cat launched.txt; fail "SIGTERM to dape-launch: exited with $STATUS"; }
check_resume launched

echo "PASS"
