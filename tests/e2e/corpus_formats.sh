# Corpus formats through the command line: JSON lines compressed by the `zstd` tool (several
# frames) give the same dataset as the same documents in plain-text files; bad records stop
# prepare or are counted; Megatron .bin/.idx written by an independent numpy writer is inspected
# and trained on directly.
source "$(dirname "$0")/lib.bash"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# ---- JSON lines, .jsonl.zst, against plain text ------------------------------------------------
"$PY" - <<'PY'
import json, os
os.makedirs("txt", exist_ok=True)
docs = []
for i in range(30):
    words = " ".join("w%d" % ((i * 37 + k * 11) % 101) for k in range(5 + i * 3))
    docs.append("Document %d: caf\u00e9 \u2713 \U0001F389 \"quoted\"\n%s" % (i, words))
for i, d in enumerate(docs):
    open("txt/doc_%02d.txt" % i, "w", encoding="utf-8").write(d)
with open("corpus.jsonl", "w", encoding="utf-8") as f:
    for i, d in enumerate(docs):
        f.write(json.dumps({"meta": {"pile_set_name": "Books3", "i": i}, "text": d}) + "\n")
PY
# Two frames, cut in the middle of a line.
size=$(stat -c %s corpus.jsonl)
head -c $((size / 2 + 7)) corpus.jsonl | zstd -q -o part1.zst
tail -c +$((size / 2 + 8)) corpus.jsonl | zstd -q -o part2.zst
cat part1.zst part2.zst > corpus.jsonl.zst
[ "$(zstd -dc corpus.jsonl.zst | cmp - corpus.jsonl && echo same)" = same ] || fail "zstd frames do not rebuild the corpus"

"$DAPE" prepare --input txt --out ds_text --val-fraction 0.1 --no-progress > prep_text.txt
"$DAPE" prepare --input corpus.jsonl.zst --out ds_zst --val-fraction 0.1 --no-progress | tee prep_zst.txt
grep -q "30 documents" prep_zst.txt || fail "prepare did not read 30 documents from the .jsonl.zst"
grep -q "1 file of JSON lines (1 zstd, 30 lines)" prep_zst.txt || fail "prepare did not say what it read"
for f in train_00000.tok val_00000.tok; do
  cmp -s "ds_text/$f" "ds_zst/$f" || fail "$f differs between plain text and .jsonl.zst"
done
echo "ok: .jsonl.zst (2 frames) gives the same shards as plain-text files"

# A custom text field, and --format for a .zst whose name says nothing.
sed 's/"text":/"body":/' corpus.jsonl | zstd -q -o body.zst
expect_error "--format jsonl" "$DAPE" prepare --input body.zst --out ds_body --no-progress
expect_error "no field \"text\"" "$DAPE" prepare --input body.zst --format jsonl --out ds_body --no-progress
"$DAPE" prepare --input body.zst --format jsonl --text-field body --out ds_body --val-fraction 0.1 \
    --no-progress > /dev/null
cmp -s ds_text/train_00000.tok ds_body/train_00000.tok || fail "--text-field body read other text"

# ---- bad records --------------------------------------------------------------------------------
{
  echo '{"text": "good one"}'
  echo '{"text": "broken'
  echo '{"text": "good two"}'
  echo ''
  echo '{"title": "no text"}'
  printf '{"text": "bad \xff utf-8"}\n'
  echo '{"text": 42}'
  echo '{"text": "good three"}'
} > bad.jsonl
expect_error "'bad.jsonl' line 2: malformed JSON" "$DAPE" prepare --input bad.jsonl --out ds_bad --no-progress
[ ! -e ds_bad/dataset.pbtxt ] || fail "a failed prepare left a dataset behind"
"$DAPE" prepare --input bad.jsonl --out ds_bad --on-bad-record skip --val-fraction 0 --no-progress | tee prep_bad.txt
grep -q "skipped     : 5 bad records" prep_bad.txt || fail "skipped records not counted"
for reason in "malformed JSON *: 1" "empty line *: 1" "missing text field *: 1" "invalid UTF-8 *: 1" \
    "text field not a string *: 1"; do
  grep -q "$reason" prep_bad.txt || fail "summary lacks '$reason'"
done
grep -q "train       : .* 3 documents" prep_bad.txt || fail "the 3 good records did not all train"
# A truncated .zst: an error by default; skipped, the rest of the file lost and counted, otherwise.
# Cut inside the second frame: the first frame's whole lines survive, the line it ends inside is
# the one bad record, and the text file after it is read as usual.
head -c $(($(stat -c %s corpus.jsonl.zst) - 9)) corpus.jsonl.zst > cut.jsonl.zst
whole_lines=$(head -c $((size / 2 + 7)) corpus.jsonl | tr -cd '\n' | wc -c)
expect_error "truncated" "$DAPE" prepare --input cut.jsonl.zst --out ds_cut --no-progress
"$DAPE" prepare --input cut.jsonl.zst txt/doc_00.txt --out ds_cut --on-bad-record skip \
    --val-fraction 0 --no-progress | tee prep_cut.txt
grep -q "truncated zstd stream *: 1, first: 'cut.jsonl.zst'.* line $((whole_lines + 1)) " prep_cut.txt \
    || fail "the truncated stream was not counted at line $((whole_lines + 1))"
grep -q "train       : .* $((whole_lines + 1)) documents" prep_cut.txt \
    || fail "the $whole_lines whole lines and the text file did not all train"

# ---- Megatron / GPT-NeoX .bin/.idx ------------------------------------------------------------
cat > write_megatron.py <<'PY'
# An independent writer of the mmap indexed format (as Megatron-LM's MMapIndexedDatasetBuilder).
import struct, sys
import numpy as np
prefix, code, ndocs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dtype = {1: np.uint8, 4: np.int32, 5: np.int64, 8: np.uint16}[code]
sizes, doc_idx = [], [0]
with open(prefix + ".bin", "wb") as f:
    for d in range(ndocs):
        for s in range(1 + d % 2):
            n = 40 + (d * 17 + s * 5) % 90
            tokens = (np.arange(n) * 3 + d * 11 + s) % 250
            if s == d % 2:
                tokens[-1] = 256                       # end of document, as --append-eod does
            f.write(tokens.astype(dtype).tobytes(order="C"))
            sizes.append(n)
        doc_idx.append(len(sizes))
item = np.dtype(dtype).itemsize
pointers = np.zeros(len(sizes), dtype=np.int64)
pointers[1:] = np.cumsum(np.array(sizes[:-1], dtype=np.int64) * item)
with open(prefix + ".idx", "wb") as f:
    f.write(b"MMIDIDX\x00\x00")
    f.write(struct.pack("<Q", 1))
    f.write(struct.pack("<B", code))
    f.write(struct.pack("<Q", len(sizes)))
    f.write(struct.pack("<Q", len(doc_idx)))
    f.write(np.array(sizes, dtype=np.int32).tobytes(order="C"))
    f.write(pointers.tobytes(order="C"))
    f.write(np.array(doc_idx, dtype=np.int64).tobytes(order="C"))
PY
"$PY" write_megatron.py mg 8 200
"$PY" write_megatron.py mg_val 4 10
"$DAPE" inspect mg --vocab 257 | tee inspect_mg.txt
grep -q "dtype          : uint16 (code 8" inspect_mg.txt || fail "inspect did not show the dtype"
grep -q "documents      : 200" inspect_mg.txt || fail "inspect did not count 200 documents"
grep -q "all inside the vocabulary \[0, 257) OK" inspect_mg.txt || fail "inspect did not check ids"
expect_error "outside the vocabulary [0, 200)" "$DAPE" inspect mg.idx --vocab 200

cat > mg.pbtxt <<CFG
run_dir: "run_mg"
data { path: "mg.idx" val_fraction: 0.05 }
model { layers: 1 d_model: 16 heads: 2 position: "alibi" vocab_size: 257 }
train { steps: 5 seq_len: 32 micro_batch: 2 }
eval { lengths: [32] max_chunks: 4 }
CFG
"$DAPE" train --config mg.pbtxt --no-progress 2>&1 | tee train_mg.txt
[ "$(wc -l < run_mg/metrics.jsonl)" -eq 5 ] || fail "5 steps on Megatron data did not log 5 lines"
grep -q "ppl" train_mg.txt || fail "no evaluation on the Megatron validation documents"
"$DAPE" eval --checkpoint run_mg --lengths 32 --no-progress > /dev/null
# The int32 pair (code 4) trained on directly too.
"$DAPE" train --config mg.pbtxt --set run_dir=run_mg32 --set data.path=mg_val.idx \
    --set train.steps=2 --no-progress > /dev/null 2>&1 || fail "training on int32 Megatron data failed"
[ "$(wc -l < run_mg32/metrics.jsonl)" -eq 2 ] || fail "2 steps on int32 Megatron data did not log 2 lines"
"$DAPE" train --config mg.pbtxt --set run_dir=run_mg_val --set data.path=mg \
    --set data.validation_path=mg_val --set train.steps=2 --no-progress > /dev/null 2>&1 \
    || fail "training with data.validation_path failed"
expect_error "model.vocab_size" "$DAPE" train --config mg.pbtxt --set run_dir=r1 --set model.vocab_size=0
expect_error "outside the vocabulary [0, 250)" "$DAPE" train --config mg.pbtxt --set run_dir=r2 \
    --set model.vocab_size=250
expect_error "records no tokenizer" "$DAPE" generate --checkpoint run_mg --prompt "x"
cp mg.bin bad.bin && cp mg.idx bad.idx && printf '\x06' | dd of=bad.idx bs=1 seek=17 conv=notrunc status=none
expect_error "dtype code 6" "$DAPE" train --config mg.pbtxt --set run_dir=r3 --set data.path=bad
cp mg.idx bad.idx && truncate -s -8 bad.idx
expect_error "bad.idx' is truncated" "$DAPE" train --config mg.pbtxt --set run_dir=r4 --set data.path=bad
expect_error "--format text" "$DAPE" prepare --input mg.idx --out ds_mg --no-progress
echo "corpus_formats: all cases passed"
