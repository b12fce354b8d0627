# SentencePiece end to end: prepare with train-sp (deterministic, the model saved in the dataset),
# prepare with sp:MODEL, inspect decodes the dataset, a run prepares its own dataset from
# data.prepare and trains on it (the loss falls), generate decodes with the dataset's model, a
# dataset made with another tokenizer is refused, and bad tokenizer specs are reported.
source "$(dirname "$0")/lib.bash"

make_corpus 6000 corpus.txt
"$DAPE" prepare --input corpus.txt --tokenizer train-sp:300 --out sp --val-fraction 0.05 \
    --no-progress | tee prepare.txt
grep -q "tokenizer   : sentencepiece BPE model (train-sp:300), 300 pieces" prepare.txt ||
  fail "prepare did not report the trained tokenizer"
[ -s sp/tokenizer.model ] || fail "the model was not saved in the dataset"
grep -q 'model_file: "tokenizer.model"' sp/dataset.pbtxt || fail "the manifest does not name the model"

# The same input gives the same model and tokens.
"$DAPE" prepare --input corpus.txt --tokenizer train-sp:300 --out sp_again --val-fraction 0.05 \
    --no-progress > /dev/null
for f in tokenizer.model train_00000.tok val_00000.tok dataset.pbtxt; do
  cmp -s "sp/$f" "sp_again/$f" || fail "train-sp is not deterministic: $f differs"
done
# A given model is copied into the dataset and gives the same tokens.
cp sp/tokenizer.model given.model
"$DAPE" prepare --input corpus.txt --tokenizer sp:given.model --out sp_given --val-fraction 0.05 \
    --no-progress > /dev/null
cmp -s given.model sp_given/tokenizer.model || fail "sp:MODEL was not copied into the dataset"
cmp -s sp/train_00000.tok sp_given/train_00000.tok || fail "sp:MODEL gives other tokens"

# inspect decodes the start of the train split with the dataset's model.
"$DAPE" inspect sp | tee inspect.txt
first_line=$(head -1 corpus.txt)
grep -qF "decoded (sentencepiece) : \"${first_line% }" inspect.txt ||
  fail "inspect did not decode the dataset's text"

# A run prepares its dataset from data.prepare, then trains on it.
cat > tiny.pbtxt <<CFG
run_dir: "run"
data {
  path: "auto_sp"
  prepare { input: "corpus.txt" tokenizer: "train-sp:300" val_fraction: 0.05 }
}
model { layers: 2 d_model: 32 heads: 4 position: "alibi" dape { enabled: true mlp_width: 8 } }
train { steps: 40 seq_len: 32 micro_batch: 4 global_batch: 8 lr: 3e-3 min_lr: 3e-4 }
eval { lengths: [32, 64] max_chunks: 4 }
log { interval: 10 }
CFG
"$DAPE" train --config tiny.pbtxt --no-progress 2>&1 | tee train.txt
grep -q "auto_sp holds no dataset yet; preparing it from corpus.txt with tokenizer 'train-sp:300'" \
    train.txt || fail "train did not say it prepares the dataset"
cmp -s sp/train_00000.tok auto_sp/train_00000.tok || fail "data.prepare differs from dape prepare"
loss_of() { sed -n "$1p" run/metrics.jsonl | grep -o '"loss":[0-9.]*' | cut -d: -f2; }
first=$(loss_of 1)
last=$(loss_of 40)
echo "loss: step 1 $first, step 40 $last"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' ||
  fail "the loss did not fall by more than 1 nat ($first -> $last)"

"$DAPE" generate --checkpoint run --prompt "in the beginning" --max-new 20 --temperature 0 \
    > greedy.txt
cat greedy.txt
grep -q "^in the beginning" greedy.txt || fail "generate did not print the prompt first"
[ "$(head -c -1 greedy.txt | wc -c)" -gt 20 ] || fail "generate printed no continuation"

# A second run uses the dataset as it is; asking for another tokenizer is refused.
"$DAPE" train --config tiny.pbtxt --set run_dir=run2 --set train.steps=2 --no-progress 2>&1 |
  tee train2.txt > /dev/null
grep -q "using the dataset at auto_sp" train2.txt || fail "the second run did not reuse the dataset"
expect_error "asks for tokenizer 'byte', but data.path 'auto_sp' holds a dataset prepared with tokenizer train-sp:300" \
    "$DAPE" train --config tiny.pbtxt --set run_dir=run3 --set data.prepare.tokenizer=byte
expect_error "data.prepare.tokenizer: tokenizer 'train-sp:12': vocabulary size 12 is out of range" \
    "$DAPE" train --config tiny.pbtxt --set data.prepare.tokenizer=train-sp:12

expect_error "SentencePiece model file 'missing.model' does not exist" \
    "$DAPE" prepare --input corpus.txt --tokenizer sp:missing.model --out bad
expect_error "is not a SentencePiece model file" \
    "$DAPE" prepare --input corpus.txt --tokenizer sp:corpus.txt --out bad
expect_error "is too small for a vocabulary of 100000" \
    "$DAPE" prepare --input corpus.txt --tokenizer train-sp:100000 --out bad
[ ! -e bad ] || fail "a failed prepare left an output directory"
echo "sentencepiece: ok"
