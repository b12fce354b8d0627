# --device and --precision: bad values are refused with the field, the value and the choices; on a
# machine where CUDA cannot run (a build without it, or no GPU), --device cuda stops every command
# that builds a model with exit status 1 and a message that names the device and the reason.
source "$(dirname "$0")/lib.bash"

make_corpus 2000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress >/dev/null
cat > ok.pbtxt <<CFG
run_dir: "run"
data { path: "data" }
model { layers: 1 d_model: 16 heads: 2 position: "alibi" }
train { steps: 2 seq_len: 16 micro_batch: 2 }
eval { at_end: false }
CFG

# The flags are documented.
help=$("$DAPE" --help)
for flag in --device --precision; do
  grep -q -- "$flag" <<<"$help" || fail "dape --help does not mention $flag"
done

# Command-line values outside the choices: usage errors (status 2) that list the choices.
expect_usage_error() {
  local want=$1; shift
  local out status=0
  out=$(timeout 60 "$@" 2>&1) || status=$?
  [ "$status" -eq 2 ] || fail "expected exit status 2 from '$*', got $status; output:
$out"
  grep -qF -- "$want" <<<"$out" || fail "expected '$want' in the output of '$*'; got:
$out"
  echo "ok: '$*' -> usage error"
}
expect_usage_error "cpu" "$DAPE" --device gpu train --config ok.pbtxt
expect_usage_error "bf16" "$DAPE" --precision fp16 train --config ok.pbtxt

# Config values outside the choices: the field, where it was set, the value and the choices.
expect_error "--set train.device=tpu: train.device: 'tpu' is not one of cpu|cuda" \
  "$DAPE" train --config ok.pbtxt --set train.device=tpu
expect_error "--set train.precision=fp16: train.precision: 'fp16' is not one of bf16|fp32" \
  "$DAPE" train --config ok.pbtxt --set train.precision=fp16

# --device overrides the config, and the resolved config says what runs.
"$DAPE" --device cpu --precision fp32 train --config ok.pbtxt --set train.device=cuda --check \
  >resolved.txt
grep -q 'device: "cpu"' resolved.txt || fail "--device cpu did not override train.device"
grep -q 'precision: "fp32"' resolved.txt || fail "--precision fp32 did not override"

# A short CPU run, for a checkpoint to evaluate.
"$DAPE" --device cpu train --config ok.pbtxt --no-progress >/dev/null 2>&1 ||
  fail "training on the CPU failed"

# --device cuda where CUDA cannot run. With a usable GPU these commands would run instead.
if "$DAPE" --version | grep -q "^CUDA devices:"; then
  echo "skipped: a CUDA device is visible, so --device cuda does not fail here"
  exit 0
fi
# Status 1 (a reported error, not a crash), the device named, and why it cannot be used: a
# build without CUDA says it has no CUDA backend, a CUDA build on a machine without a GPU that
# there is no CUDA device.
expect_no_cuda() {
  local out status=0
  out=$(timeout 120 "$@" 2>&1) || status=$?
  [ "$status" -eq 1 ] || fail "expected exit status 1 from '$*', got $status; output:
$out"
  grep -q "cuda" <<<"$out" || fail "the message of '$*' does not name the device cuda:
$out"
  grep -qE "no CUDA backend|no CUDA device" <<<"$out" ||
    fail "the message of '$*' does not say why CUDA cannot be used:
$out"
  echo "ok: '$*' -> $(grep -m1 -E 'no CUDA (backend|device)' <<<"$out" | cut -c1-200)"
}
expect_no_cuda "$DAPE" --device cuda train --config ok.pbtxt --set run_dir=run_cuda --no-progress
expect_no_cuda "$DAPE" train --config ok.pbtxt --set run_dir=run_cuda --set train.device=cuda \
  --no-progress
expect_no_cuda "$DAPE" --device cuda --precision fp32 train --config ok.pbtxt \
  --set run_dir=run_cuda --no-progress
expect_no_cuda "$DAPE" --device cuda eval --checkpoint run --lengths 16 --no-progress
expect_no_cuda "$DAPE" --device cuda generate --checkpoint run --prompt "in the" --max-new 4
expect_no_cuda "$DAPE" --device cuda golden "$SRC"/tests/data/golden/alibi_B2N33H6D2W16.safetensors
[ ! -e run_cuda/checkpoints ] || fail "a refused --device cuda run wrote checkpoints"
echo "device_errors: all checks passed"
