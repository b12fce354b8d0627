# Bad input gets a clear error and exit status 1 — never a crash or a hang.
source "$(dirname "$0")/lib.bash"

make_corpus 3000 corpus.txt
"$DAPE" prepare --input corpus.txt --out data --val-fraction 0.05 --no-progress >/dev/null
cat > ok.pbtxt <<CFG
run_dir: "run"
data { path: "data" }
model { layers: 1 d_model: 16 heads: 2 position: "alibi" }
train { steps: 3 seq_len: 16 micro_batch: 2 }
eval { at_end: false }
CFG

# Configs.
expect_error "does not exist" "$DAPE" train --config missing.pbtxt
printf 'model {\n  layers: 2\n  heads: \n}\n' > malformed.pbtxt
expect_error "malformed.pbtxt:4:" "$DAPE" train --config malformed.pbtxt
printf 'model {\n  layerz: 2\n}\n' > unknown.pbtxt
expect_error "unknown.pbtxt:2:" "$DAPE" train --config unknown.pbtxt
printf 'train {\n  seq_len: -4\n}\n' > range.pbtxt
expect_error "range.pbtxt:2: train.seq_len: -4 is out of range" "$DAPE" train --config range.pbtxt
expect_error "model.heads: 3 heads do not divide model.d_model = 16" "$DAPE" train --config ok.pbtxt --set model.heads=3
expect_error "has no field 'stepz'" "$DAPE" train --config ok.pbtxt --set train.stepz=3
expect_error "data.path is not set" "$DAPE" train --config ok.pbtxt --set data.path=

# Token shards.
cp -r data data_missing && rm data_missing/train_00000.tok
expect_error "train_00000.tok" "$DAPE" train --config ok.pbtxt --set data.path=data_missing
cp -r data data_trunc && truncate -s -10 data_trunc/train_00000.tok
expect_error "train_00000.tok" "$DAPE" train --config ok.pbtxt --set data.path=data_trunc
expect_error "train_00000.tok" "$DAPE" inspect data_trunc/train_00000.tok
# Token ids at or above the vocabulary (257 for bytes): every 8th uint16 token becomes 300, so
# every training sample holds one.
cp -r data data_badtok
python3 - data_badtok/train_00000.tok <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
for off in range(40, len(b) - 1, 16):   # after the 40-byte header, every 8th token
    b[off:off + 2] = (300).to_bytes(2, 'little')
open(p, 'wb').write(bytes(b))
PY
expect_error "checksum" "$DAPE" train --config ok.pbtxt --set data.path=data_badtok
expect_error "300" "$DAPE" train --config ok.pbtxt --set data.path=data_badtok --set data.verify_checksums=false

# Checkpoints.
expect_error "does not exist" "$DAPE" eval --checkpoint nowhere --lengths 16
mkdir -p empty_dir
expect_error "is not a checkpoint" "$DAPE" eval --checkpoint empty_dir --lengths 16
"$DAPE" train --config ok.pbtxt --no-progress >/dev/null 2>&1 || fail "training the small model failed"
ckpt=$(ls -d run/checkpoints/step_* | tail -1)
cp -r "$ckpt" bad_manifest && head -c 50 /dev/urandom > bad_manifest/manifest.pb
expect_error "unreadable" "$DAPE" eval --checkpoint bad_manifest --lengths 16
cp -r "$ckpt" flipped && printf '\x7f' | dd of=flipped/shard_00000.bin bs=1 seek=64 conv=notrunc status=none
expect_error "fails its checksum" "$DAPE" eval --checkpoint flipped --lengths 16
expect_error "CHECKSUM MISMATCH" "$DAPE" inspect flipped
echo "bad_input: all cases reported cleanly"
