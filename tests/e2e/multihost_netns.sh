# Two "hosts" on one machine: two network namespaces joined by a veth pair (10.77.0.1/24 and
# 10.77.0.2/24), each process in them also in a UTS namespace of its own whose host name is the
# host's ("nsA", "nsB"). mpirun runs inside the first namespace with Open MPI's rsh agent set to
# a script that starts the remote command in the named host's namespaces (`agent HOST COMMAND`,
# as ssh would be called), and TCP only, over the veth subnet:
#
#   mpirun --host nsA:1,nsB:1 -np 2 --mca plm_rsh_agent AGENT --mca btl tcp,self
#          --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 ...
#
# Stage 1 (here): the MPI test program (communicator, topology, prepare) across the two hosts,
# where Open MPI's local ranks and the host names put the ranks on two nodes and a TP group over
# both is refused; then `dape prepare` across them (run_dape_on_two_hosts), whose token streams
# must equal one process's. The veth pair's byte counters show that the traffic crossed it.
# Stage 2: a data-parallel training across the hosts (run_dape_on_two_hosts), whose losses must
# equal one process's.
#
# Namespaces are named after this script's pid, so parallel runs do not clash, and removed on
# exit whatever happens. Without the right to create them (not root, no CAP_SYS_ADMIN) the test
# prints "skipped: ..." and passes.
source "$(dirname "$0")/lib.bash"
MPI_TESTS=$(dirname "$DAPE")/dape_mpi_tests
[ -x "$MPI_TESTS" ] || fail "no MPI test program at $MPI_TESTS (build the dape_mpi_tests target)"

ID=$$
NS_A=dape${ID}a
NS_B=dape${ID}b
VETH_A=dva$ID
VETH_B=dvb$ID

remove_namespaces() {
  local ns p
  for ns in "$NS_A" "$NS_B"; do
    ip netns list 2>/dev/null | grep -qw "$ns" || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true # takes its end of the veth pair along
  done
}
trap remove_namespaces EXIT

if ! err=$(ip netns add "$NS_A" 2>&1); then
  echo "skipped: cannot create network namespaces here (ip netns add: $err); needs root or CAP_SYS_ADMIN"
  exit 0
fi
if ! err=$(unshare --uts true 2>&1); then
  echo "skipped: cannot create UTS namespaces here (unshare --uts: $err); needs root or CAP_SYS_ADMIN"
  exit 0
fi
ip netns add "$NS_B"
ip link add "$VETH_A" type veth peer name "$VETH_B"
ip link set "$VETH_A" netns "$NS_A"
ip link set "$VETH_B" netns "$NS_B"
ip -n "$NS_A" addr add 10.77.0.1/24 dev "$VETH_A"
ip -n "$NS_B" addr add 10.77.0.2/24 dev "$VETH_B"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VETH_A" up
ip -n "$NS_B" link set "$VETH_B" up
echo "hosts: nsA = namespace $NS_A (10.77.0.1), nsB = namespace $NS_B (10.77.0.2)"

# Open MPI's rsh agent: `AGENT HOST COMMAND...` runs COMMAND (one shell line, as ssh would) in
# HOST's network namespace, in a UTS namespace of its own named HOST.
AGENT=$WORK/netns-agent
cat >"$AGENT" <<AGENT_SCRIPT
#!/usr/bin/env bash
host=\$1
shift
case \$host in
  nsA) ns=$NS_A ;;
  nsB) ns=$NS_B ;;
  *) echo "netns-agent: unknown host '\$host'" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts -- sh -c 'hostname "\$0" && exec sh -c "\$1"' "\$host" "\$*"
AGENT_SCRIPT
chmod +x "$AGENT"

MPIRUN=(mpirun --host nsA:1,nsB:1 -np 2 --mca plm_rsh_agent "$AGENT" --mca btl tcp,self
  --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24)
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)

# run_on_two_hosts COMMAND...: COMMAND as a job of 2 ranks, rank 0 on nsA and rank 1 on nsB.
run_on_two_hosts() {
  timeout 300 ip netns exec "$NS_A" "${MPIRUN[@]}" "$@"
}
# run_dape_on_two_hosts ARGS...: `dape ARGS` on the two hosts (e.g. prepare, or train with
# data parallelism across them).
run_dape_on_two_hosts() {
  run_on_two_hosts "$DAPE" --threads 1 "$@"
}
# Bytes sent from nsA into the veth pair so far.
veth_bytes() {
  ip netns exec "$NS_A" cat "/sys/class/net/$VETH_A/statistics/tx_bytes"
}

# ---- stage 1: collectives, topology and prepare across the hosts -----------------------------
[ "$(run_on_two_hosts hostname | sort | tr '\n' ' ')" = "nsA nsB " ] ||
  fail "the ranks do not run on hosts nsA and nsB"
before=$(veth_bytes)
# All but the tensor-parallel trainings: a TP group spanning two hosts is refused (topology.h).
run_on_two_hosts "$MPI_TESTS" \
  --gtest_filter='-DataParallelTraining.TensorParallel*:DataParallelTraining.DataAndTensor*' |
  tee mpi_tests.txt
grep -q "PASSED" mpi_tests.txt || fail "the MPI tests did not pass across two hosts"
sent=$(($(veth_bytes) - before))
# The all-reduce tests alone move tens of MB between the ranks.
[ "$sent" -gt 10000000 ] || fail "only $sent bytes crossed the veth pair"
echo "ok: MPI tests across nsA and nsB, $sent bytes sent over the veth pair"

make_corpus 400 corpus.txt
split -l 40 corpus.txt docs_ && mkdir docs && mv docs_* docs/
"$DAPE" --threads 1 prepare --input docs --out one --val-fraction 0.1 --no-progress >/dev/null
run_dape_on_two_hosts prepare --input "$WORK/docs" --out "$WORK/two" --val-fraction 0.1 \
  --no-progress | tee prepare.txt
grep -q "ranks       : 2" prepare.txt || fail "prepare did not run on 2 ranks"
digests() { "$DAPE" inspect "$1" | grep "stream xxh64"; }
[ "$(digests one)" = "$(digests two)" ] || fail "prepare across two hosts wrote other token streams"
echo "ok: dape prepare across nsA and nsB: $(digests two | tr '\n' ' ')"
# ---- stage 2: data-parallel training across the hosts ------------------------------------------
# 10 steps of a small DAPE-Kerple model, two replicas (one per host) against one process on the
# same global batches: the losses must agree within 1e-5 relative.
cat > dp.pbtxt <<CFG
data { path: "$WORK/one" }
model { layers: 2 d_model: 32 heads: 4 position: "kerple" dape { enabled: true mlp_width: 8 } }
train { steps: 10 seq_len: 32 micro_batch: 2 global_batch: 8 lr: 3e-3 min_lr: 3e-4 seed: 77 }
checkpoint { save_final: false }
eval { at_end: false }
CFG
"$DAPE" --threads 1 train --config dp.pbtxt --set run_dir="$WORK/run_one" --no-progress \
  >/dev/null 2>&1 || fail "the one-process training failed"
before=$(veth_bytes)
run_dape_on_two_hosts train --config "$WORK/dp.pbtxt" --set run_dir="$WORK/run_two" --no-progress \
  2>&1 | tee train_two.txt
grep -q "dp 1 of 2" train_two.txt || fail "the training did not run as 2 data-parallel replicas"
sent=$(($(veth_bytes) - before))
python3 - "$WORK/run_one/metrics.jsonl" "$WORK/run_two/metrics.jsonl" <<'PY' || fail "losses differ"
import json, sys
one = [json.loads(l)["loss"] for l in open(sys.argv[1])]
two = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(one) == len(two) == 10, (len(one), len(two))
worst = max(abs(a - b) / abs(a) for a, b in zip(one, two))
print("losses over 10 steps: largest relative difference %.2g" % worst)
sys.exit(0 if worst <= 1e-5 else 1)
PY
echo "ok: data-parallel training across nsA and nsB matches one process ($sent bytes over the veth)"
echo "multihost_netns: ok"
