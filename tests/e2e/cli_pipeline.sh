# The command line end to end: prepare → train (with a periodic eval and checkpoint) → eval →
# inspect → golden.
source "$(dirname "$0")/lib.bash"

make_corpus 6000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress | tee prepare.txt
grep -q "entropy" prepare.txt || fail "prepare printed no summary"
cat > tiny.pbtxt <<CFG
run_dir: "run"
data { path: "data" }
model { layers: 2 d_model: 32 heads: 4 position: "fire" dape { enabled: true mlp_width: 8 } }
train { steps: 30 seq_len: 32 micro_batch: 4 global_batch: 8 lr: 3e-3 min_lr: 3e-4 }
checkpoint { interval: 10 keep_last: 2 }
eval { interval: 10 lengths: [32, 64] max_chunks: 4 }
log { interval: 10 }
CFG
"$DAPE" train --config tiny.pbtxt --no-progress | tee train.txt
grep -q "ppl" train.txt || fail "train printed no evaluation table"
[ "$(wc -l < run/metrics.jsonl)" -eq 30 ] || fail "metrics.jsonl should have 30 lines"
grep -q '"tokens_per_s"' run/metrics.jsonl || fail "metrics.jsonl lacks tokens_per_s"
[ -f run/config.pbtxt ] && [ -f run/eval_final.json ] || fail "run directory incomplete"
[ "$(ls -d run/checkpoints/step_* | wc -l)" -eq 2 ] || fail "keep_last 2 not honoured"

"$DAPE" eval --checkpoint run --lengths 32,64 --out eval.json --no-progress | tee eval.txt
grep -q '"length":64' eval.json || fail "eval.json lacks length 64"
"$DAPE" inspect data | tee inspect_data.txt
"$DAPE" inspect data/train_00000.tok > /dev/null
"$DAPE" inspect run | tee inspect_ckpt.txt
grep -q "layers.1.attn.dape.w1" inspect_ckpt.txt || fail "inspect lists no DAPE tensors"

# The PyTorch-made files and those of other shapes: exit status 0 only if every tensor passes.
"$DAPE" golden --attention reference "$SRC"/tests/data/golden/pytorch/*.safetensors \
    "$SRC"/tests/data/golden/*.safetensors | tail -1 | tee golden.txt
grep -q "^19 of 19 checks passed" golden.txt || fail "golden: expected 19 passing files"
echo "cli_pipeline: ok"
