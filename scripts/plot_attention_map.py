#!/usr/bin/env python3
"""Draws an attention map written by `dape attention-map --out FILE.json` as a PNG grid.

One row per head; columns: the attention probabilities P (query i down, key j across, the
causal upper triangle blank), and for DAPE models f's adjustment to the logits (a diverging
colour scale centred on zero, so local and anti-local patterns read as red and blue). The image
is --width × --height pixels exactly (default 1200 × 300 per head row), so tests can check it.
"""
import argparse
import json
import sys

from plot_setup import load_matplotlib


def square(rows, n):
    """Triangular rows (row i holds i + 1 values) as an n × n list with None above the diagonal."""
    return [[row[j] if j < len(row) else float("nan") for j in range(n)] for row in rows]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="the map, from dape attention-map --out FILE.json")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--width", type=int, default=0, help="pixels (default 600 per column)")
    ap.add_argument("--height", type=int, default=0, help="pixels (default 300 per head)")
    ap.add_argument("--title", default="", help="a title above the grid")
    args = ap.parse_args()
    try:
        with open(args.json) as f:
            m = json.load(f)
        heads, n = m["heads"], m["length"]
        panels = [("P", m["probs"])]
        if m.get("dape"):
            panels.append(("f (DAPE)", m["dape_f"]))
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"plot_attention_map.py: cannot read the map '{args.json}': {e}")
    plt = load_matplotlib("plot_attention_map.py")
    dpi = 100
    width = args.width or 600 * len(panels)
    height = args.height or 300 * heads
    fig, axes = plt.subplots(heads, len(panels), figsize=(width / dpi, height / dpi), dpi=dpi,
                             squeeze=False)
    for h in range(heads):
        for c, (name, table) in enumerate(panels):
            ax = axes[h][c]
            grid = square(table[h], n)
            if c == 0:
                im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                bound = max((abs(v) for row in table[h] for v in row), default=1.0) or 1.0
                im = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound,
                               interpolation="nearest")
            ax.set_title(f"head {h}: {name}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.yaxis.get_major_locator().set_params(integer=True)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    scheme = m.get("position", "?") + (" + DAPE" if m.get("dape") else "")
    fig.suptitle(args.title or f"layer {m.get('layer', '?')}, {scheme}, {n} tokens", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(args.out, dpi=dpi)  # no bbox_inches="tight": the size stays width × height
    print(f"wrote {args.out} ({width} x {height})")


if __name__ == "__main__":
    main()
