# The command line end to end: prepare → train (with a periodic eval and checkpoint) → eval →
# generate → inspect → golden.
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
# generate: the prompt and a continuation; greedy and seeded sampling reproduce exactly.
for run in 1 2; do
  "$DAPE" generate --checkpoint run --prompt "in the beginning" --max-new 40 --temperature 0 \
      > "greedy$run.txt"
  "$DAPE" generate --checkpoint run --prompt "let there be" --max-new 40 --temperature 0.8 \
      --top-k 8 --seed 5 > "sampled$run.txt"
done
cat greedy1.txt sampled1.txt
grep -q "^in the beginning" greedy1.txt || fail "generate did not print the prompt first"
[ "$(head -c -1 greedy1.txt | wc -c)" -gt 16 ] || fail "generate printed no continuation"
cmp -s greedy1.txt greedy2.txt || fail "greedy generation differs between two runs"
cmp -s sampled1.txt sampled2.txt || fail "sampling with --seed 5 differs between two runs"
expect_error "--prompt is empty" "$DAPE" generate --checkpoint run --prompt ""
expect_error "checkpoint 'nowhere' does not exist" "$DAPE" generate --checkpoint nowhere --prompt x
mv data data_moved
expect_error "dataset directory 'data' named by the checkpoint's config" \
    "$DAPE" generate --checkpoint run --prompt "in"
"$DAPE" generate --checkpoint run --prompt "in" --data data_moved --max-new 4 > /dev/null
mv data_moved data
# A learned-position model has max_positions positions: a longer prompt or continuation is refused.
"$DAPE" train --config tiny.pbtxt --set run_dir=run_learned --set model.position=learned \
    --set model.max_positions=40 --set train.steps=2 --set eval.lengths=32 --no-progress > /dev/null
expect_error "more than the 40 positions (model.max_positions)" \
    "$DAPE" generate --checkpoint run_learned --prompt "$(printf 'word %.0s' {1..9})"
expect_error "use --max-new 24 or less" \
    "$DAPE" generate --checkpoint run_learned --prompt "in the beginning" --max-new 30

"$DAPE" inspect data | tee inspect_data.txt
"$DAPE" inspect data/train_00000.tok > /dev/null
"$DAPE" inspect run | tee inspect_ckpt.txt
grep -q "layers.1.attn.dape.w1" inspect_ckpt.txt || fail "inspect lists no DAPE tensors"

# The PyTorch-made files and those of other shapes, with each implementation: exit status 0 only
# if every tensor passes.
files=("$SRC"/tests/data/golden/pytorch/*.safetensors "$SRC"/tests/data/golden/*.safetensors)
for impl in reference fused; do
  "$DAPE" golden --attention $impl "${files[@]}" | tail -1 | tee golden_$impl.txt
  grep -q "^${#files[@]} of ${#files[@]} checks passed" golden_$impl.txt ||
    fail "golden ($impl): expected ${#files[@]} passing files"
done
echo "cli_pipeline: ok"
