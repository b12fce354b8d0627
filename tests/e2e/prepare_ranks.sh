# `mpirun -np N dape prepare` for N = 1, 2, 3 on a Books3-style corpus (.jsonl.zst, several zstd
# frames, lines cut across frames, a "meta" field): every N gives the same token streams as the
# same documents as plain-text files (compared by the stream digests `dape inspect` prints), for
# the byte tokenizer and a trained SentencePiece model (whose file is the same too). A bad record
# on one rank stops every rank with the file and line; under skip it is counted once.
source "$(dirname "$0")/lib.bash"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)

"$PY" - <<'PY'
import json, os
os.makedirs("txt", exist_ok=True)
docs = []
for i in range(50):
    words = " ".join("w%d" % ((i * 37 + k * 11) % 101) for k in range(5 + (i * 29) % 90))
    docs.append("Book %d: caf\u00e9 \u2713 \"quoted\"\n%s\n" % (i, words))
for i, d in enumerate(docs):
    open("txt/doc_%02d.txt" % i, "w", encoding="utf-8").write(d)
for part, chunk in (("a", docs[:20]), ("b", docs[20:])):
    with open("books3_%s.jsonl" % part, "w", encoding="utf-8") as f:
        for d in chunk:
            f.write(json.dumps({"text": d, "meta": {"pile_set_name": "Books3"}}) + "\n")
PY
# Three frames per file, cut inside lines.
for part in a b; do
  size=$(stat -c %s books3_$part.jsonl)
  third=$((size / 3))
  dd if=books3_$part.jsonl bs=1 count=$third status=none | zstd -q -o $part.1.zst
  dd if=books3_$part.jsonl bs=1 skip=$third count=$third status=none | zstd -q -o $part.2.zst
  dd if=books3_$part.jsonl bs=1 skip=$((2 * third)) status=none | zstd -q -o $part.3.zst
  cat $part.1.zst $part.2.zst $part.3.zst > books3_$part.jsonl.zst
  zstd -dc books3_$part.jsonl.zst | cmp -s - books3_$part.jsonl || fail "frames do not rebuild $part"
done
mkdir corpus && mv books3_a.jsonl.zst books3_b.jsonl.zst corpus/

# The stream digests of a dataset: "train DIGEST COUNT" and "validation DIGEST COUNT".
digests() {
  "$DAPE" inspect "$1" | awk '/split train/ { s = "train" } /split validation/ { s = "validation" }
    /stream xxh64/ { print s, $3, $5 }'
}

for tok in byte train-sp:400; do
  "$DAPE" --threads 1 prepare --input txt --tokenizer "$tok" --out "text_$tok" --val-fraction 0.1 \
      --no-progress > /dev/null
  want=$(digests "text_$tok")
  [ "$(wc -l <<<"$want")" -eq 2 ] || fail "inspect printed no stream digests: $want"
  for n in 1 2 3; do
    "${MPIRUN[@]}" -np $n "$DAPE" --threads 1 prepare --input corpus --tokenizer "$tok" \
        --out "ranks${n}_$tok" --val-fraction 0.1 --no-progress > "prep_${n}_$tok.txt"
    grep -q "50 documents" "prep_${n}_$tok.txt" || fail "$n ranks: not 50 documents"
    if [ $n -gt 1 ]; then
      grep -q "ranks       : $n" "prep_${n}_$tok.txt" || fail "$n ranks: no ranks line"
      [ "$(ls "ranks${n}_$tok" | grep -c "^train_r00$((n - 1))_")" -ge 1 ] ||
        fail "$n ranks: rank $((n - 1)) wrote no training shard"
    fi
    got=$(digests "ranks${n}_$tok")
    [ "$got" = "$want" ] || fail "$tok, $n ranks: streams differ from plain text:
$got
vs
$want"
    if [ "$tok" != byte ]; then
      cmp -s "text_$tok/tokenizer.model" "ranks${n}_$tok/tokenizer.model" ||
        fail "$n ranks trained another SentencePiece model"
    fi
    echo "ok: $tok, $n rank(s): $(tr '\n' ' ' <<<"$got")"
  done
done

# A malformed line in the last file (rank 2's share of 3): every rank stops, naming file and line.
mkdir bad
cp corpus/books3_a.jsonl.zst bad/
# (Through a file: `zstd -dc | head` would end zstd with SIGPIPE, a failure under pipefail.)
zstd -q -dc corpus/books3_b.jsonl.zst > books3_b.jsonl.copy
{ head -n 25 books3_b.jsonl.copy; echo '{"text": "cut'; tail -n +26 books3_b.jsonl.copy; } |
  zstd -q -o bad/books3_b.jsonl.zst
expect_error "books3_b.jsonl.zst' line 26" \
  "${MPIRUN[@]}" -np 3 "$DAPE" --threads 1 prepare --input bad --out bad_ds --no-progress
[ ! -f bad_ds/dataset.pbtxt ] || fail "a failed prepare left a manifest"
"${MPIRUN[@]}" -np 3 "$DAPE" --threads 1 prepare --input bad --out bad_ds --on-bad-record skip \
    --no-progress > bad_skip.txt
grep -q "51 documents" bad_skip.txt || fail "skip: not 51 records"
grep -q "skipped     : 1 bad record" bad_skip.txt || fail "skip: the bad record was not counted once"
grep -q "malformed JSON *: 1, first: .*books3_b.jsonl.zst' line 26" bad_skip.txt ||
  fail "skip: no tally with the first location"
echo "ok: a bad record on rank 2 stops all ranks, or is counted once under skip"
