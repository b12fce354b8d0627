# launcher/dape-launch, launcher/dape-rank-env and launcher/slurm/dape.sbatch: the mpirun and srun
# lines they print for several argument sets (--dry-run, exact lines), their refusals of bad
# arguments (exit status 2 and a message naming the argument), and real runs on this machine: a
# 2-process `dape prepare` through dape-launch whose token streams equal one process's, and the
# per-rank environment (threads, core binding, CUDA_VISIBLE_DEVICES) seen by the ranks.
source "$(dirname "$0")/lib.bash"
LAUNCHER_DIR=$(cd "$SRC/launcher" && pwd) # as dape-launch names its own directory
LAUNCH=$LAUNCHER_DIR/dape-launch
RANK_ENV=$LAUNCHER_DIR/dape-rank-env
SBATCH=$LAUNCHER_DIR/slurm/dape.sbatch
ROOT=""
[ "$(id -u)" -ne 0 ] || ROOT=" --allow-run-as-root"
OMP="-x OMP_PLACES=cores -x OMP_PROC_BIND=close"
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)

# expect_line WANT ARGS...: dape-launch --dry-run ARGS prints exactly WANT (and exits 0).
expect_line() {
  local want=$1 got
  shift
  got=$(env -u NCCL_DEBUG "$LAUNCH" --dry-run "$@") || fail "dape-launch --dry-run $* failed"
  [ "$got" = "$want" ] || fail "dape-launch $*:
  got  $got
  want $want"
  echo "ok: dape-launch $*"
}
# expect_usage TEXT COMMAND...: exit status 2 and TEXT in the message.
expect_usage() {
  local want=$1 out status=0
  shift
  out=$("$@" 2>&1) || status=$?
  [ "$status" -eq 2 ] || fail "expected exit status 2 from '$*', got $status: $out"
  grep -qF -- "$want" <<<"$out" || fail "expected '$want' from '$*'; got: $out"
  echo "ok: refused '$*': $(head -1 <<<"$out" | cut -c1-150)"
}

# ---- the lines ------------------------------------------------------------------------------
expect_line "dape-launch: mpirun -np 8 --host n1:4,n2:4 --map-by ppr:4:node:PE=8 --bind-to core -x OMP_NUM_THREADS=8 $OMP$ROOT $DAPE --version" \
  --hosts n1,n2 --procs-per-node 4 --threads-per-rank 8 -- "$DAPE" --version
printf 'node-a slots=8  # first\n\n# a comment line\n  node-b\nnode-c slots=8\n' >hosts.txt
expect_line "dape-launch: mpirun -np 6 --host node-a:2,node-b:2,node-c:2 --map-by ppr:2:node:PE=3 --bind-to core -x OMP_NUM_THREADS=3 $OMP$ROOT $DAPE --threads 3 train --config 'my run.pbtxt' --set parallel.tp=2" \
  --hostfile hosts.txt --procs-per-node 2 --tp 2 --threads-per-rank 3 -- "$DAPE" --threads 3 train --config "my run.pbtxt"
# GPUs: one rank per GPU by default, the wrapper, NCCL settings; --tp is not added to prepare.
expect_line "dape-launch: mpirun -np 16 --host g1:8,g2:8 --map-by ppr:8:node:PE=2 --bind-to core -x OMP_NUM_THREADS=2 $OMP$ROOT -x DAPE_GPUS_PER_NODE=8 -x NCCL_DEBUG=WARN -x DAPE_NCCL_TIMEOUT_S=600 --mca btl_tcp_if_include eth0 $RANK_ENV $DAPE prepare --input x --out y" \
  --hosts g1,g2 --gpus-per-node 8 --tp 8 --threads-per-rank 2 --nccl-timeout 600 \
  --mpi-arg --mca --mpi-arg btl_tcp_if_include --mpi-arg eth0 -- "$DAPE" prepare --input x --out y
# The NCCL variables of the caller's environment go to every rank.
got=$(NCCL_DEBUG=INFO NCCL_IB_HCA=mlx5 "$LAUNCH" --dry-run --hosts g1 --gpus-per-node 1 \
  --threads-per-rank 1 -- "$DAPE" --version)
grep -q -- "-x DAPE_GPUS_PER_NODE=1 -x NCCL_DEBUG -x NCCL_IB_HCA $RANK_ENV" <<<"$got" ||
  fail "NCCL variables not passed on: $got"
# Defaults on this machine: one rank with every core.
expect_line "dape-launch: mpirun -np 1 --map-by ppr:1:node:PE=$CORES --bind-to core -x OMP_NUM_THREADS=$CORES $OMP$ROOT $DAPE --version" \
  -- "$DAPE" --version

# ---- refusals -------------------------------------------------------------------------------
expect_usage "--tp 3 does not divide --procs-per-node 4" "$LAUNCH" --hosts a,b --procs-per-node 4 --tp 3 -- "$DAPE"
expect_usage "--procs-per-node 4 exceeds --gpus-per-node 2" "$LAUNCH" --hosts a --procs-per-node 4 --gpus-per-node 2 -- "$DAPE"
expect_usage "--procs-per-node 'two' is not a whole number >= 1" "$LAUNCH" --procs-per-node two -- "$DAPE"
expect_usage "--threads-per-rank '0' is not a whole number >= 1" "$LAUNCH" --threads-per-rank 0 -- "$DAPE"
expect_usage "give --hosts or --hostfile, not both" "$LAUNCH" --hosts a --hostfile hosts.txt -- "$DAPE"
expect_usage "hostfile 'missing.txt' cannot be read" "$LAUNCH" --hostfile missing.txt -- "$DAPE"
: >empty_hosts.txt
expect_usage "hostfile 'empty_hosts.txt' names no host" "$LAUNCH" --hostfile empty_hosts.txt -- "$DAPE"
expect_usage "host 'a:4' (from --hosts 'a:4,b') is not a host name" "$LAUNCH" --hosts a:4,b -- "$DAPE"
expect_usage "unknown argument '--np'" "$LAUNCH" --np 2 -- "$DAPE"
expect_usage "--tp needs a value" "$LAUNCH" --tp
expect_usage "no command: put it after --" "$LAUNCH" --procs-per-node 1
expect_usage "command 'no-such-dape' not found" "$LAUNCH" -- no-such-dape train
expect_usage "the command sets parallel.tp=4 but --tp is 2" "$LAUNCH" --hosts a --procs-per-node 2 --tp 2 -- "$DAPE" train --set parallel.tp=4
expect_usage "--nccl-timeout '0' is not a number of seconds > 0" "$LAUNCH" --gpus-per-node 1 --nccl-timeout 0 -- "$DAPE"
expect_usage "--nccl-timeout applies to GPU runs only" "$LAUNCH" --hosts a --nccl-timeout 10 -- "$DAPE"
expect_usage "ranks × 1 threads need" "$LAUNCH" --procs-per-node $((CORES + 1)) --threads-per-rank 1 -- "$DAPE"

# ---- dape-rank-env --------------------------------------------------------------------------
[ "$(env -u CUDA_VISIBLE_DEVICES OMPI_COMM_WORLD_LOCAL_RANK=3 DAPE_GPUS_PER_NODE=4 "$RANK_ENV" printenv CUDA_VISIBLE_DEVICES)" = 3 ] ||
  fail "dape-rank-env: local rank 3 of 4 GPUs should see device 3"
[ "$(env -u OMPI_COMM_WORLD_LOCAL_RANK SLURM_LOCALID=1 CUDA_VISIBLE_DEVICES=4,5,6,7 "$RANK_ENV" printenv CUDA_VISIBLE_DEVICES)" = 5 ] ||
  fail "dape-rank-env: Slurm local rank 1 of CUDA_VISIBLE_DEVICES=4,5,6,7 should see device 5"
[ "$(env -u OMPI_COMM_WORLD_LOCAL_RANK SLURM_LOCALID=1 CUDA_VISIBLE_DEVICES=6 "$RANK_ENV" printenv CUDA_VISIBLE_DEVICES)" = 6 ] ||
  fail "dape-rank-env: a single device given by the launcher should be kept"
expect_usage "local rank 2 but DAPE_GPUS_PER_NODE=2" env -u CUDA_VISIBLE_DEVICES OMPI_COMM_WORLD_LOCAL_RANK=2 DAPE_GPUS_PER_NODE=2 "$RANK_ENV" true
expect_usage "no local rank in the environment" env -u OMPI_COMM_WORLD_LOCAL_RANK -u SLURM_LOCALID -u MPI_LOCALRANKID -u PMI_LOCAL_RANK "$RANK_ENV" true
echo "ok: dape-rank-env"

# ---- dape.sbatch (the srun line, from a Slurm job's variables) ------------------------------
# sbatch_line [NAME=VALUE...] bash dape.sbatch ARGS...: in a job of 4 tasks × 8 CPUs per node.
sbatch_line() {
  env -u SLURM_GPUS_ON_NODE -u SLURM_GPUS_PER_NODE -u DAPE_TP DAPE_LAUNCH_DRY_RUN=1 \
    DAPE_HOME="$(dirname "$LAUNCHER_DIR")" DAPE_BIN="$DAPE" SLURM_NTASKS_PER_NODE=4 SLURM_CPUS_PER_TASK=8 "$@"
}
got=$(sbatch_line SLURM_GPUS_ON_NODE=4 DAPE_TP=2 bash "$SBATCH" train --config c.pbtxt)
want="dape.sbatch: srun --mpi=pmix --ntasks-per-node=4 --cpus-per-task=8 --cpu-bind=cores --distribution=block:block --kill-on-bad-exit=1 $RANK_ENV $DAPE train --config c.pbtxt --set parallel.tp=2"
[ "$got" = "$want" ] || fail "dape.sbatch:
  got  $got
  want $want"
got=$(sbatch_line bash "$SBATCH" prepare --input x)
[ "$got" = "dape.sbatch: srun --mpi=pmix --ntasks-per-node=4 --cpus-per-task=8 --cpu-bind=cores --distribution=block:block --kill-on-bad-exit=1 $DAPE prepare --input x" ] ||
  fail "dape.sbatch without GPUs: $got"
expect_usage "DAPE_TP=3 does not divide --ntasks-per-node 4" sbatch_line DAPE_TP=3 bash "$SBATCH" train
expect_usage "--ntasks-per-node 4 exceeds the 2 GPUs per node" sbatch_line SLURM_GPUS_PER_NODE=h200:2 bash "$SBATCH" train
echo "ok: dape.sbatch"

# ---- real runs through dape-launch ----------------------------------------------------------
if [ "$CORES" -lt 2 ]; then
  echo "skipped real runs: dape-launch binds each of 2 ranks to a core of its own; this machine has $CORES"
  echo "launcher: ok"
  exit 0
fi
# What every rank sees: its threads, its own core, its own GPU number.
"$LAUNCH" --procs-per-node 2 --threads-per-rank 1 --gpus-per-node 2 -- \
  bash -c 'echo "rank $OMPI_COMM_WORLD_RANK threads $OMP_NUM_THREADS gpu $CUDA_VISIBLE_DEVICES cores $(taskset -cp $$ | sed "s/.*: //")"' \
  | tee ranks.txt
grep -q "^rank 0 threads 1 gpu 0 cores " ranks.txt || fail "rank 0's environment: $(cat ranks.txt)"
grep -q "^rank 1 threads 1 gpu 1 cores " ranks.txt || fail "rank 1's environment: $(cat ranks.txt)"
[ "$(grep '^rank' ranks.txt | sed 's/.*cores //' | sort -u | wc -l)" -eq 2 ] ||
  fail "the two ranks are not bound to different cores: $(cat ranks.txt)"

# A real job: prepare on 2 ranks gives the token streams of 1 process.
make_corpus 400 corpus.txt
split -l 50 corpus.txt docs_ && mkdir docs && mv docs_* docs/
"$DAPE" --threads 1 prepare --input docs --out one --val-fraction 0.1 --no-progress >/dev/null
"$LAUNCH" --procs-per-node 2 --threads-per-rank 1 -- "$DAPE" prepare --input docs --out two \
  --val-fraction 0.1 --no-progress | tee launch_prepare.txt
grep -q "^dape-launch: mpirun -np 2 " launch_prepare.txt || fail "the mpirun line was not printed first"
grep -q "ranks       : 2" launch_prepare.txt || fail "prepare did not run on 2 ranks"
digests() { "$DAPE" inspect "$1" | grep "stream xxh64"; }
[ "$(digests one)" = "$(digests two)" ] || fail "2 ranks through dape-launch wrote other token streams"
echo "ok: dape prepare on 2 ranks through dape-launch: $(digests two | tr '\n' ' ')"
echo "launcher: ok"
