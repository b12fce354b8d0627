# The length-extrapolation study and attention maps end to end: launcher/experiments/extrapolation
# in --dry-run and on a tiny config (2 schemes × 2 steps, lengths 32 and 64) writing table.md,
# table.csv and a PNG of the expected size, then again (nothing redone); `dape attention-map` as
# JSON (a causal softmax per row) and as a PNG grid of the expected size; and its errors.
source "$(dirname "$0")/lib.bash"

STUDY="$SRC/launcher/experiments/extrapolation"
# The Python that has matplotlib (Debian's python3-matplotlib is the system interpreter's).
PY=python3
python3 -c "import matplotlib" 2>/dev/null || PY=/usr/bin/python3
"$PY" -c "import matplotlib" || fail "matplotlib is missing: run scripts/install-deps.sh"

# png_size FILE: "WIDTH HEIGHT" from the PNG signature and IHDR chunk.
png_size() {
  "$PY" - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read(33)
if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
    sys.exit(f"{sys.argv[1]} is not a PNG")
print(*struct.unpack(">II", data[16:24]))
PY
}

make_corpus 3000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.1 --no-progress > prepare.txt
cat > tiny.pbtxt <<CFG
run_dir: "unused"
data { path: "data" }
model { layers: 2 d_model: 32 heads: 4 position: "none" }
train { steps: 50 seq_len: 16 micro_batch: 4 global_batch: 4 lr: 3e-3 min_lr: 3e-4 }
checkpoint { interval: 100 }
eval { interval: 100 lengths: [32] max_chunks: 2 }
log { interval: 1 }
CFG
args=(--config tiny.pbtxt --train-length 32 --steps 2 --lengths 32,64 --schemes alibi,kerple_dape
      --max-chunks 4 --out study --dape "$DAPE" --threads 2)

"$STUDY" "${args[@]}" --dry-run | tee dry.txt
[ "$(grep -c ' train ' dry.txt)" -eq 2 ] || fail "--dry-run should print 2 train commands"
[ "$(grep -c ' eval ' dry.txt)" -eq 2 ] || fail "--dry-run should print 2 eval commands"
grep -q -- "--set model.position=kerple --set model.dape.enabled=true" dry.txt ||
  fail "--dry-run: kerple_dape's settings are missing"
grep -q -- "--set train.seq_len=32" dry.txt || fail "--dry-run: the training length is missing"
[ ! -e study ] || fail "--dry-run wrote into the output directory"

"$STUDY" "${args[@]}" | tee study.txt
for f in table.md table.csv ppl_vs_length.png runs/alibi/eval.json runs/kerple_dape/eval.json; do
  [ -s "study/$f" ] || fail "study/$f was not written"
done
cat study/table.csv
[ "$(wc -l < study/table.csv)" -eq 5 ] || fail "table.csv: a header and 2 schemes × 2 lengths"
head -1 study/table.csv | grep -q "^scheme,length,seeds,ppl_mean,ppl_std,ppl_last_mean,ppl_last_std$" ||
  fail "table.csv header"
grep -q "^| kerple_dape | [0-9.]* | [0-9.]* |$" study/table.md || fail "table.md lacks kerple_dape"
# The table's numbers are the eval files' (alibi at length 64).
want=$("$PY" -c 'import json; r={x["length"]: x for x in json.load(open("study/runs/alibi/eval.json"))["results"]}; print("%.6g" % r[64]["ppl"])')
grep -q "^alibi,64,1,$want,0," study/table.csv || fail "table.csv's alibi,64 is not $want"
[ "$(png_size study/ppl_vs_length.png)" = "1000 600" ] || fail "plot size $(png_size study/ppl_vs_length.png)"
grep -q "elapsed" study.txt || fail "no progress printed"

"$STUDY" "${args[@]}" | tee again.txt
[ "$(grep -c 'done already' again.txt)" -eq 2 ] || fail "a second run redid finished work"

# Attention maps: JSON, then a PNG grid (4 heads × {P, f}: 1200 × 1200).
"$DAPE" attention-map --checkpoint study/runs/kerple_dape --text "in the beginning was" \
    --layer 1 --out map.json
"$PY" - <<'PY'
import json, sys
m = json.load(open("map.json"))
assert m["heads"] == 4 and m["length"] == 20 and m["dape"] and m["position"] == "kerple", m
assert len(m["token_text"]) == 20 and m["token_text"][0] == "i"
for name in ("probs", "bias", "dape_f"):
    assert [len(r) for r in m[name][0]] == list(range(1, 21)), name
for head in m["probs"]:
    for row in head:
        assert abs(sum(row) - 1) < 1e-9 and min(row) >= 0, row
print("map.json: 4 heads, causal softmax rows")
PY
"$DAPE" attention-map --checkpoint study/runs/kerple_dape --text "in the beginning was" \
    --layer 0 --out grid.png
[ -s grid.json ] || fail "the JSON beside grid.png was not written"
[ "$(png_size grid.png)" = "1200 1200" ] || fail "grid.png size $(png_size grid.png)"
"$DAPE" attention-map --checkpoint study/runs/alibi --text "let there be" --layer 0 --out alibi.png
[ "$(png_size alibi.png)" = "600 1200" ] || fail "alibi.png size $(png_size alibi.png) (no f column)"

expect_error "layer 2 is out of range: the model has 2 layers" \
  "$DAPE" attention-map --checkpoint study/runs/alibi --text "x" --layer 2 --out m.json
expect_error "must end in .json or .png" \
  "$DAPE" attention-map --checkpoint study/runs/alibi --text "x" --out m.txt
echo "study: OK"
