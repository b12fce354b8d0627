#!/usr/bin/env python3
"""Prints the Debian archive this machine's apt configuration uses, and its sources for a new root.

scripts/clean-machine-check.sh builds a fresh Debian root with debootstrap from the same archive
the machine itself installs from, so no mirror is written into the repository. apt keeps its
sources in two formats: one-line entries in /etc/apt/sources.list and *.list files, and deb822
stanzas in *.sources files (Debian 12's default). This reads both, keeps the enabled `deb`
entries of the given release (its own suite and the -updates and -security suites) with the
`main` component, and prints:

    mirror   the URI of the release's own suite (what debootstrap fetches from)
    sources  the deb822 stanzas to write into the new root, suites limited to the release

Usage: debian_mirror.py mirror|sources [--release bookworm] [--etc /etc/apt]
"""
import argparse
import glob
import os
import sys


def one_line_entries(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=…]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 3:
            yield {"uri": words[0], "suites": [words[1]], "components": words[2:]}


def deb822_entries(path):
    stanza = {}
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines() + [""]
    for raw in lines:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                enabled = stanza.get("enabled", "yes").lower() != "no"
                if enabled and "deb" in stanza.get("types", "").split():
                    for uri in stanza.get("uris", "").split():
                        yield {"uri": uri, "suites": stanza.get("suites", "").split(),
                               "components": stanza.get("components", "").split()}
            stanza = {}
            continue
        if ":" in raw and not raw[0].isspace():
            key, value = raw.split(":", 1)
            stanza[key.strip().lower()] = value.strip()
    return


def entries(etc):
    files = []
    if os.path.isfile(os.path.join(etc, "sources.list")):
        files.append(os.path.join(etc, "sources.list"))
    files += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.list")))
    files += sorted(glob.glob(os.path.join(etc, "sources.list.d", "*.sources")))
    for f in files:
        yield from (deb822_entries(f) if f.endswith(".sources") else one_line_entries(f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["mirror", "sources"])
    ap.add_argument("--release", default="bookworm")
    ap.add_argument("--etc", default="/etc/apt")
    args = ap.parse_args()
    rel = args.release
    wanted = {rel, rel + "-updates", rel + "-security"}
    kept = []  # (uri, suites) in the order the machine lists them
    for e in entries(args.etc):
        if "main" not in e["components"]:
            continue
        suites = [s for s in e["suites"] if s in wanted]
        if suites:
            kept.append((e["uri"].rstrip("/"), suites))
    mirror = next((uri for uri, suites in kept if rel in suites), None)
    if mirror is None:
        sys.exit(f"debian_mirror.py: no enabled 'deb' source for suite '{rel}' with component "
                 f"'main' in {args.etc}/sources.list or {args.etc}/sources.list.d/")
    if args.what == "mirror":
        print(mirror)
        return
    for uri, suites in kept:
        print("Types: deb")
        print(f"URIs: {uri}")
        print(f"Suites: {' '.join(suites)}")
        print("Components: main")
        print("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg")
        print()


if __name__ == "__main__":
    main()
