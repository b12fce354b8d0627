# Faults around sharded checkpoints, with `dape train` on 2 ranks cut by tensor parallelism (each
# rank writes a shard of its own):
# (a) rank 1 is killed (SIGKILL, by DAPE_FAULT_KILL_IN_SAVE) while writing the checkpoint of step
#     10: the job fails, step 10 is left as an uncommitted temporary directory, the checkpoint of
#     step 5 still verifies, and `--resume auto` continues from it;
# (b) a flipped byte in rank 1's shard and (c) a missing shard make loading fail with an error
#     that names the file and a tensor; `dape eval` (one process, TP 1) reads rank 1's pieces;
# (d) `dape export` of the TP 2 checkpoint, and `dape train --init-from` the exported file.
source "$(dirname "$0")/lib.bash"
MPIRUN=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)

make_corpus 4000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress > /dev/null
cat > tp2.pbtxt <<CFG
run_dir: "run"
data { path: "data" }
model { layers: 2 d_model: 32 heads: 4 position: "kerple" dape { enabled: true mlp_width: 8 } }
train { steps: 20 seq_len: 32 micro_batch: 2 global_batch: 4 lr: 3e-3 min_lr: 3e-4 }
parallel { tp: 2 }
checkpoint { interval: 5 keep_last: 0 }
eval { at_end: false }
CFG

# (a)
status=0
DAPE_FAULT_KILL_IN_SAVE=1:10 timeout 120 "${MPIRUN[@]}" -x DAPE_FAULT_KILL_IN_SAVE \
    "$DAPE" train --config tp2.pbtxt --resume none --no-progress > killed.txt 2>&1 || status=$?
[ "$status" -ne 0 ] || fail "the job whose rank 1 was killed exited 0"
[ -f run/checkpoints/step_00000005/manifest.pb ] || fail "the checkpoint of step 5 is gone"
[ ! -e run/checkpoints/step_00000010 ] || fail "the interrupted step 10 was committed"
ls -d run/checkpoints/step_00000010.tmp* > /dev/null || fail "no temporary directory of step 10"
echo "ok: killed in the save of step 10 (mpirun status $status), left $(ls -d run/checkpoints/step_*)"
"$DAPE" inspect run/checkpoints/step_00000005 > inspect5.txt || fail "step 5 does not verify"
grep -q "shard_00001.bin" inspect5.txt || fail "step 5 has no shard of rank 1"
timeout 120 "${MPIRUN[@]}" "$DAPE" train --config tp2.pbtxt --resume auto --stop-at-step 12 \
    --no-progress > resumed.txt 2>&1 || { cat resumed.txt; fail "resume after the kill failed"; }
grep -q "resumed from .*step_00000005 at step 5" resumed.txt || fail "did not resume from step 5"
[ -f run/checkpoints/step_00000012/manifest.pb ] || fail "no checkpoint at step 12"
[ ! -e "$(ls -d run/checkpoints/step_00000010.tmp* 2> /dev/null | head -1)" ] ||
  fail "the leftover of the interrupted save was not removed"
echo "ok: --resume auto continued from step 5 to 12"

# (b) and (c), on copies of step 12.
cp -r run/checkpoints/step_00000012 flipped
python3 - <<'PY'
with open("flipped/shard_00001.bin", "r+b") as f:
    f.seek(200)
    b = f.read(1)
    f.seek(200)
    f.write(bytes([b[0] ^ 0x20]))
PY
expect_error "in 'shard_00001.bin'" "$DAPE" eval --checkpoint flipped --lengths 32 --no-progress
out=$("$DAPE" eval --checkpoint flipped --lengths 32 --no-progress 2>&1) || true
grep -q "tensor '.*' piece .* fails its checksum" <<<"$out" || fail "no tensor named: $out"
expect_error "CHECKSUM MISMATCH" "$DAPE" inspect flipped
cp -r run/checkpoints/step_00000012 missing
rm missing/shard_00001.bin
expect_error "shard file 'shard_00001.bin' is missing; it holds tensor '" \
    "$DAPE" eval --checkpoint missing --lengths 32 --no-progress
"$DAPE" eval --checkpoint run/checkpoints/step_00000012 --lengths 32 --no-progress --out eval.json > /dev/null ||
  fail "eval of the intact TP 2 checkpoint at TP 1 failed"

# Export of the TP 2 checkpoint, and a fresh TP 2 run started from the exported weights.
"$DAPE" export --checkpoint run --out model.safetensors | tee export.txt
grep -q "exported .*step_00000012" export.txt || fail "export did not name the checkpoint"
timeout 120 "${MPIRUN[@]}" "$DAPE" train --config tp2.pbtxt --set run_dir=from_export --resume none \
    --init-from model.safetensors --stop-at-step 2 --no-progress > init.txt 2>&1 ||
  { cat init.txt; fail "training from the exported weights failed"; }
grep -q "initial weights from model.safetensors" init.txt || fail "--init-from was not used"
echo "PASS"
