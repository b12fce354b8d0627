# Helpers for the end-to-end tests. Each test is run as: bash TEST.sh DAPE_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
DAPE=$1
SRC=$2
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_error EXPECTED_TEXT CMD...: the command must exit with status 1 (a reported error, not a
# crash: 3 is an internal error, >= 128 a signal) and print EXPECTED_TEXT.
expect_error() {
  local want=$1; shift
  local out status=0
  out=$(timeout 120 "$@" 2>&1) || status=$?
  [ "$status" -eq 1 ] || fail "expected exit status 1 from '$*', got $status; output:
$out"
  grep -qF -- "$want" <<<"$out" || fail "expected '$want' in the output of '$*'; got:
$out"
  echo "ok: '$*' -> $(grep -m1 -F -- "$want" <<<"$out" | cut -c1-160)"
}

# A small deterministic text corpus of N lines.
make_corpus() {
  local n=$1 out=$2
  awk -v n="$n" 'BEGIN { srand(7); split("in the beginning was word and light darkness said let there be", w, " ");
    for (i = 0; i < n; i++) { line = ""; for (j = 0; j < 12; j++) line = line w[int(rand() * 12) + 1] " "; print line "." } }' > "$out"
}
