# One rank of a job fails: the job must end, with a non-zero status, within 60 s, and say why.
#
# (a) A rank throws. `dape prepare` on 2 ranks where only rank 1's share of the records holds a
#     malformed one; `dape train` on 2 ranks with the same config whose relative data path exists
#     only in rank 0's working directory (a dataset missing on one node). The error is printed
#     once, by that rank, with its "[rank 1]" prefix, and every rank ends (MPI_Abort).
# (b) A rank is killed (kill -9, its pid found among mpirun's children by OMPI_COMM_WORLD_RANK).
#     First in the MPI test program looping over all-reduces, so that rank 0 is waiting in a
#     collective when rank 1 dies; then in `dape train` on 2 ranks, where rank 1 is stopped
#     (SIGSTOP) for a second before it is killed. Today the ranks of `dape train` train
#     independently; once data parallelism shares gradients, rank 0 blocks in the gradient
#     all-reduce during that second. Either way mpirun must notice the death and end the job.
# Each case prints the measured time from the failure to mpirun's exit.
source "$(dirname "$0")/lib.bash"
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)
MPI_TESTS=$(dirname "$DAPE")/dape_mpi_tests
[ -x "$MPI_TESTS" ] || fail "no MPI test program at $MPI_TESTS (build the dape_mpi_tests target)"
LIMIT=60
# A job left running by a failed check is ended with the test: its ranks, then mpirun.
job=""
end_job() {
  [ -n "$job" ] && kill -0 "$job" 2>/dev/null || return 0
  local p
  for p in $(pgrep -P "$job"); do kill -9 "$p" 2>/dev/null || true; done
  kill "$job" 2>/dev/null || true
}
trap end_job EXIT

seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# run_failing WANT_ERROR ARGS...: runs mpirun ARGS, which must exit with status 1 within LIMIT
# seconds, printing WANT_ERROR exactly once, on a line that starts with "[rank 1] error: ".
run_failing() {
  local want=$1 start status=0 out
  shift
  start=$EPOCHREALTIME
  out=$(timeout $LIMIT "${MPIRUN[@]}" "$@" 2>&1) || status=$?
  local took
  took=$(seconds_since "$start")
  [ "$status" -ne 124 ] || fail "mpirun still running after ${LIMIT} s: $*"
  [ "$status" -eq 1 ] || fail "expected exit status 1, got $status from mpirun $*:
$out"
  [ "$(grep -cF -- "$want" <<<"$out")" -eq 1 ] || fail "expected '$want' once in:
$out"
  grep -F -- "$want" <<<"$out" | grep -q '^\[rank 1\] error: ' ||
    fail "the error lacks its rank prefix: $(grep -F -- "$want" <<<"$out")"
  echo "ok: rank 1 failed, job ended with status 1 in $took s: $(grep -F -- "$want" <<<"$out")"
}

# rank_pid MPIRUN_PID RANK: that rank's pid, a child of mpirun (empty until it has started).
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return
    fi
  done
}

rank_running() { [ -n "$(rank_pid "$1" "$2")" ]; }

# wait_for WHAT SECONDS CONDITION...: polls CONDITION every 0.1 s; fails after SECONDS.
wait_for() {
  local what=$1 limit=$2 start=$EPOCHREALTIME
  shift 2
  until "$@"; do
    [ "$(awk -v t="$(seconds_since "$start")" -v l="$limit" 'BEGIN { print (t > l) }')" -eq 0 ] ||
      fail "$what: not after $limit s"
    sleep 0.1
  done
}

# expect_job_ends MPIRUN_PID KILLED_AT WHAT: mpirun exits non-zero within LIMIT s of KILLED_AT.
expect_job_ends() {
  local pid=$1 killed_at=$2 what=$3 status=0
  wait_for "mpirun ending after $what" $LIMIT bash -c "! kill -0 $pid 2>/dev/null"
  wait "$pid" || status=$?
  local took
  took=$(seconds_since "$killed_at")
  [ "$status" -ne 0 ] || fail "$what: mpirun exited with status 0"
  echo "ok: $what: mpirun exited with status $status $took s after the kill"
}

# ---- (a) a rank throws ----------------------------------------------------------------------
mkdir records
for i in $(seq 0 19); do echo "{\"text\": \"first file, record $i\"}"; done >records/a.jsonl
for i in $(seq 0 29); do
  if [ "$i" -eq 27 ]; then echo '{"text": "cut short'; else echo "{\"text\": \"second file, record $i\"}"; fi
done >records/b.jsonl
# 50 records over 2 ranks: rank 1 reads records 25-49, b.jsonl's lines 6-30; line 28 is bad.
run_failing "b.jsonl' line 28" -np 2 "$DAPE" --threads 1 prepare --input records --out bad_ds \
  --no-progress

make_corpus 2000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress >/dev/null
cat >tiny.pbtxt <<CFG
run_dir: "run"
data { path: "data" }
model { layers: 1 d_model: 16 heads: 2 position: "alibi" }
train { steps: 1000000 seq_len: 16 micro_batch: 2 global_batch: 4 lr: 1e-3 }
checkpoint { interval: 0 save_final: false }
eval { at_end: false }
log { interval: 1 }
CFG
mkdir rank0 rank1
ln -s ../data rank0/data
# The same command on both ranks; only rank 0's working directory holds data/.
run_failing "error: dataset directory 'data' does not exist" \
  -np 1 --wdir rank0 "$DAPE" --threads 1 train --config "$PWD/tiny.pbtxt" --no-progress : \
  -np 1 --wdir rank1 "$DAPE" --threads 1 train --config "$PWD/tiny.pbtxt" --no-progress

# ---- (b) a rank is killed -------------------------------------------------------------------
# All-reduces of 16 bytes to 16 MiB, over and over: rank 0 is in a collective nearly always.
"${MPIRUN[@]}" -np 2 "$MPI_TESTS" --gtest_filter=Communicator.AllReduceIsDeterministicAndEqualOnEveryRank \
  --gtest_repeat=-1 >collectives.txt 2>&1 &
job=$!
wait_for "rank 1 of the MPI test program starting" 30 rank_running $job 1
wait_for "the MPI tests running" 30 grep -q "Repeating all tests" collectives.txt
sleep 0.5
victim=$(rank_pid $job 1)
kill -0 "$(rank_pid $job 0)" || fail "rank 0 of the MPI test program is not running"
killed_at=$EPOCHREALTIME
kill -9 "$victim"
expect_job_ends $job "$killed_at" "rank 1 killed in a loop of all-reduces"

ln -s ../data rank1/data
"${MPIRUN[@]}" -np 1 --wdir rank0 "$DAPE" --threads 1 train --config "$PWD/tiny.pbtxt" --no-progress : \
  -np 1 --wdir rank1 "$DAPE" --threads 1 train --config "$PWD/tiny.pbtxt" --no-progress \
  >train.txt 2>&1 &
job=$!
wait_for "rank 0 logging training steps" 30 test -s rank0/run/metrics.jsonl
victim=$(rank_pid $job 1)
[ -n "$victim" ] || fail "rank 1 of dape train is not running: $(cat train.txt)"
kill -STOP "$victim"
sleep 1
kill -0 "$(rank_pid $job 0)" || fail "rank 0 of dape train is not running: $(cat train.txt)"
killed_at=$EPOCHREALTIME
kill -9 "$victim"
expect_job_ends $job "$killed_at" "rank 1 of dape train stopped, then killed"
grep -q "rank 1 .*exited on signal 9" train.txt || fail "mpirun did not name the killed rank:
$(cat train.txt)"
echo "rank_failure: ok"
