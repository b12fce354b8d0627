#!/usr/bin/env python3
"""Plots perplexity against evaluation length from the table.csv of the extrapolation study.

table.csv (launcher/experiments/extrapolation) has the columns scheme, length, seeds, ppl_mean,
ppl_std, ppl_last_mean, ppl_last_std; one line per scheme (error bars: std over seeds where
there are several), lengths on a log-2 x axis, perplexity on a log y axis. The image is
--width × --height pixels exactly (default 1000 × 600).
"""
import argparse
import csv
import sys

from plot_setup import load_matplotlib


def read_table(path, column):
    series = {}
    try:
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    length = int(row["length"])
                    mean = float(row[column + "_mean"])
                    std = float(row[column + "_std"] or 0.0)
                except (KeyError, TypeError, ValueError) as e:
                    sys.exit(f"plot_extrapolation.py: {path} line {line}: {e}")
                series.setdefault(row["scheme"], []).append((length, mean, std))
    except OSError as e:
        sys.exit(f"plot_extrapolation.py: cannot read {path}: {e}")
    if not series:
        sys.exit(f"plot_extrapolation.py: {path} holds no rows")
    return series


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="table.csv of the study")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--metric", choices=["ppl", "ppl_last"], default="ppl",
                    help="perplexity over all predictions or over the last 256 of each chunk")
    ap.add_argument("--train-length", type=int, default=0,
                    help="draw a vertical line at the training length")
    ap.add_argument("--title", default="")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--height", type=int, default=600)
    args = ap.parse_args()
    series = read_table(args.csv, args.metric)
    plt = load_matplotlib("plot_extrapolation.py")
    dpi = 100
    fig, ax = plt.subplots(figsize=(args.width / dpi, args.height / dpi), dpi=dpi)
    for scheme, points in series.items():
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        errs = [p[2] for p in points]
        style = "-" if "dape" in scheme else "--"
        ax.errorbar(xs, ys, yerr=errs if any(errs) else None, fmt=style + "o", markersize=3,
                    capsize=2, label=scheme)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    lengths = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    if args.train_length:
        ax.axvline(args.train_length, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("evaluation length (tokens)")
    label = "perplexity" if args.metric == "ppl" else "perplexity, last 256 predictions"
    ax.set_ylabel(label)
    ax.set_title(args.title or f"{label} against evaluation length")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=dpi)  # fixed figsize and dpi: the PNG is width × height
    print(f"wrote {args.out} ({args.width} x {args.height})")


if __name__ == "__main__":
    main()
