#!/usr/bin/env bash
# The README's promise, checked where nothing was installed by hand: a fresh Debian 12 root
# (debootstrap --variant=minbase, the smallest system apt can run in), the committed checkout
# copied in as a clone would have it (git archive HEAD), and inside it what a new user runs:
#
#   install   scripts/install-deps.sh (every package the build needs, nothing else)
#   demo      scripts/demo.sh, the README's first command (its build and its training run),
#             shortened to a few steps unless --full-demo
#   tests     scripts/build.sh and the unit tests (ctest -L unit)
#
# Each stage's wall time is printed as it ends and again in a summary. The archive comes from
# the machine's own apt configuration (scripts/debian_mirror.py), read at run time. The root has
# no CUDA toolkit, so its builds are CPU-only, as on a machine without nvcc. Needs root (chroot,
# mounts) and network access to the archive; a few GB of disk.
#
#   bash scripts/clean-machine-check.sh [--root DIR] [--keep] [--full-demo] [--skip-tests]
#
# --root DIR   where to build the root (default: a new directory under ${TMPDIR:-/tmp}); it must
#              not exist yet
# --keep       leave the root in place afterwards (to look inside: chroot DIR bash)
# --full-demo  run the demo exactly as the README does (its full length) instead of a short one
# --skip-tests stop after the demo
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD

ROOT=""
KEEP=0
FULL_DEMO=0
SKIP_TESTS=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --full-demo) FULL_DEMO=1; shift ;;
    --skip-tests) SKIP_TESTS=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "clean-machine-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "clean-machine-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mounts); run it with sudo"
git -C "$SRC" rev-parse HEAD >/dev/null 2>&1 || die "$SRC is not a git checkout (the root gets git archive HEAD)"
if [ -n "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]; then
  echo "clean-machine-check: note: uncommitted changes are not checked (the root gets HEAD, $(git -C "$SRC" rev-parse --short HEAD))"
fi

if [ -z "$ROOT" ]; then
  ROOT=$(mktemp -d "${TMPDIR:-/tmp}/dape-clean-root.XXXXXX")
  rmdir "$ROOT"
fi
[ ! -e "$ROOT" ] || die "--root $ROOT exists already; give a new path"
RELEASE=bookworm

STAGES=()
stage_start=0
begin() {
  echo "==== clean-machine-check: $1"
  stage_start=$(date +%s)
}
end() {
  local s=$(($(date +%s) - stage_start))
  STAGES+=("$(printf '%-10s %3dm%02ds' "$1" $((s / 60)) $((s % 60)))")
  echo "==== clean-machine-check: $1 done in $((s / 60))m$((s % 60))s"
}

MOUNTS=()
cleanup() {
  local rc=$?
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  if [ "$KEEP" -eq 1 ]; then
    echo "clean-machine-check: root kept at $ROOT"
  elif [ -d "$ROOT" ]; then
    # Only after every mount is gone: never remove through a bind mount of the host's /dev.
    if ! grep -q " $ROOT/" /proc/mounts; then rm -rf --one-file-system "$ROOT"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT

# ---- the root ---------------------------------------------------------------------------------
begin debootstrap
command -v debootstrap >/dev/null || {
  echo "clean-machine-check: installing debootstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
MIRROR=$(python3 "$SRC/scripts/debian_mirror.py" mirror --release "$RELEASE")
echo "clean-machine-check: debootstrap --variant=minbase $RELEASE from $MIRROR into $ROOT"
debootstrap --variant=minbase "$RELEASE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
  tail -20 "$ROOT.debootstrap.log" >&2
  die "debootstrap failed (log: $ROOT.debootstrap.log)"
}
rm -f "$ROOT.debootstrap.log"
# The archive's other suites (-updates, -security) as this machine has them, so the root gets
# the same package versions a freshly installed machine of this kind would.
rm -f "$ROOT/etc/apt/sources.list"
python3 "$SRC/scripts/debian_mirror.py" sources --release "$RELEASE" >"$ROOT/etc/apt/sources.list.d/debian.sources"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# mount_in_root DIR MOUNT-ARGS...: mounts onto $ROOT/DIR and remembers it for the clean-up.
mount_in_root() {
  local dir=$1; shift
  mount "$@" "$ROOT/$dir" && MOUNTS+=("$ROOT/$dir")
}
mount_in_root proc -t proc proc
mount_in_root sys -t sysfs sysfs
mount_in_root dev --bind /dev
mount_in_root dev/pts -t devpts devpts 2>/dev/null || true  # optional: ptys for the tests
mkdir -p "$ROOT/root/dape"
git -C "$SRC" archive HEAD | tar -x -C "$ROOT/root/dape"
end debootstrap

# Runs a command in the root as a new user's login shell would: a clean environment.
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive /bin/bash -c "cd /root/dape && $1"
}

# ---- what a new user runs ---------------------------------------------------------------------
begin install
in_root "bash scripts/install-deps.sh"
end install

begin demo
if [ "$FULL_DEMO" -eq 1 ]; then
  in_root "bash scripts/demo.sh"
else
  # The demo's own command, with fewer steps and smaller evaluations.
  in_root "bash scripts/demo.sh --set train.steps=40 --set checkpoint.interval=20 \
    --set eval.interval=20 --set eval.max_chunks=2 --set log.interval=10"
fi
end demo

if [ "$SKIP_TESTS" -eq 0 ]; then
  begin tests
  in_root "bash scripts/build.sh && cd build && ctest -L unit --output-on-failure --timeout 900"
  end tests
fi

echo "==== clean-machine-check: every stage passed ($(git -C "$SRC" rev-parse --short HEAD), $(
  grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores)"
printf '  %s\n' "${STAGES[@]}"
