#!/usr/bin/env python3
"""Lists the GPU code embedded in a binary, like `cuobjdump --list-elf` (which not every CUDA
install has): reads the ELF section .nv_fatbin (with objcopy) and walks the fat binaries in it.

Each fat binary is a header (magic 0xBA55ED50, version, header size, payload size) followed by
entries, each with a kind (1 PTX, 2 ELF/SASS), its header size, payload size and target
architecture (the `arch` field, e.g. 80 for sm_80). Prints one line per kind and architecture
with the number of entries, e.g. `elf sm_90: 11`.

  python3 scripts/list_cuda_arch.py BINARY [--require sm_80,sm_90]

--require: exit 1 unless every listed architecture has ELF (SASS) code in the binary.
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

FATBIN_MAGIC = 0xBA55ED50
KINDS = {1: "ptx", 2: "elf"}


def fatbin_section(binary):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "fatbin")
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", binary, out],
                       check=True)
        with open(out, "rb") as f:
            return f.read()


def list_entries(data):
    """Yields (kind, arch) for every entry of every fat binary in the section."""
    off = 0
    while off + 16 <= len(data):
        magic, _version, header_size, payload = struct.unpack_from("<IHHQ", data, off)
        if magic != FATBIN_MAGIC:  # fat binaries are 8-byte aligned in the section
            off += 8
            continue
        entry, end = off + header_size, off + header_size + payload
        if end > len(data):
            sys.exit(f"list_cuda_arch: fat binary at offset {off} runs past the section "
                     f"({end} > {len(data)} bytes)")
        while entry + 32 <= end:
            kind, _, entry_header, size = struct.unpack_from("<HHIQ", data, entry)
            (arch,) = struct.unpack_from("<I", data, entry + 28)
            if entry_header == 0:
                sys.exit(f"list_cuda_arch: entry at offset {entry} has a zero header size")
            yield KINDS.get(kind, f"kind{kind}"), arch
            entry += entry_header + size
        off = end


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--require", default="", help="comma-separated sm_XY that must have ELF code")
    args = ap.parse_args()
    if not os.path.isfile(args.binary):
        sys.exit(f"list_cuda_arch: {args.binary}: no such file")
    counts = {}
    for kind, arch in list_entries(fatbin_section(args.binary)):
        counts[(kind, arch)] = counts.get((kind, arch), 0) + 1
    if not counts:
        print(f"{args.binary}: no GPU code (.nv_fatbin is empty or missing)")
    for (kind, arch), n in sorted(counts.items()):
        print(f"{kind} sm_{arch}: {n}")
    missing = [a for a in args.require.split(",") if a and
               ("elf", int(a.removeprefix("sm_"))) not in counts]
    if missing:
        sys.exit(f"list_cuda_arch: {args.binary} has no ELF code for {', '.join(missing)}")


if __name__ == "__main__":
    main()
