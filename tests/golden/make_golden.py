#!/usr/bin/env python3
"""Golden files for the attention core, in shapes other than the shared ones.

An independent float64 implementation of the attention math of DESIGN.md section 1 and
shared/golden/README.md, written with numpy alone (it shares no code with the C++): the
forward pass is computed directly from the formulas, and every gradient by central finite
differences of the loss sum(out * grad_out), in float64. The files use the shared golden format
(safetensors, float32, same tensor names and metadata), so `dape golden` and the unit tests read
them like the shared ones.

Finite differences and kinks: LeakyReLU, ReLU and max(i, thr) have kinks; a central difference
that straddles one is wrong. Each derivative is therefore taken at two step sizes, and where they
disagree the step is shrunk until two consecutive ones agree.

Inputs are rounded to float32 before the computation, so the files hold exactly what was computed
on. Run with Debian's python3 (numpy), from the repository root:

    /usr/bin/python3 tests/golden/make_golden.py [--out tests/data/golden]
"""

import argparse
import json
import math
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("make_golden.py needs numpy: install python3-numpy and run it with /usr/bin/python3")

LEAKY_SLOPE = 0.01
FIRE_EPS = 1e-6
KERPLE_CLAMP_MIN = 1e-2
ROPE_BASE = 10000.0


# ---- the math -------------------------------------------------------------------------------


def alibi_slopes(n):
    """The ALiBi reference get_slopes(n)."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n - closest]


def leaky_relu(x):
    return np.where(x > 0, x, LEAKY_SLOPE * x)


def relu(x):
    return np.where(x > 0, x, 0.0)


def rotary(x):
    """x [B, N, H, D] -> x cos + rotate_half(x) sin, angle = pos * base^(-2k/D)."""
    n, d = x.shape[1], x.shape[3]
    inv_freq = ROPE_BASE ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.outer(np.arange(n, dtype=np.float64), inv_freq)  # [N, D/2]
    emb = np.concatenate([angles, angles], axis=-1)  # [N, D]
    cos, sin = np.cos(emb)[None, :, None, :], np.sin(emb)[None, :, None, :]
    half = d // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def position_bias(cfg, p, n):
    """B [H, N, N]; rel = i - j on and below the diagonal, 0 above (masked later anyway)."""
    h = cfg["heads"]
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :]
    rel = np.where(j <= i, i - j, 0.0)
    scheme = cfg["scheme"]
    if scheme in ("none", "rope"):
        return np.zeros((h, n, n))
    if scheme == "alibi":
        return -p["alibi_slopes"][:, None, None] * rel[None]
    if scheme == "kerple":
        pp = np.maximum(p["kerple_p"], KERPLE_CLAMP_MIN)[:, None, None]
        aa = np.maximum(p["kerple_a"], KERPLE_CLAMP_MIN)[:, None, None]
        return -pp * np.log(1.0 + aa * rel[None])
    if scheme == "fire":
        c = p["fire_c"].reshape(())
        threshold = np.abs(p["fire_L_multiplier"].reshape(()) * p["fire_L"].reshape(()))
        positions = np.maximum(np.arange(n, dtype=np.float64), threshold)[:, None]
        psi = lambda x: np.log(np.abs(c * x) + 1.0)
        u = psi(rel) / (psi(positions) + FIRE_EPS)  # [N, N]
        hidden = u[..., None] * p["fire_w1"][:, 0] + p["fire_b1"]  # [N, N, W]
        hidden = leaky_relu(hidden) if cfg["dape"] else relu(hidden)
        g = hidden @ p["fire_w2"].T + p["fire_b2"]  # [N, N, H]
        return np.transpose(g, (2, 0, 1))
    raise ValueError(scheme)


def attention(cfg, p, batch=None):
    """out [B, N, H, D] (or of one batch element when `batch` is given)."""
    sl = slice(None) if batch is None else slice(batch, batch + 1)
    q, k, v = p["q"][sl], p["k"][sl], p["v"][sl]
    n, d = q.shape[1], q.shape[3]
    if cfg["scheme"] == "rope":
        q, k = rotary(q), rotary(k)
    s = np.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)
    bias = np.broadcast_to(position_bias(cfg, p, n)[None], s.shape)
    a = s + bias
    if cfg["dape"]:
        x = np.concatenate([s, bias], axis=1)  # [B, 2H, N, N]
        z = np.einsum("wc,bcij->bwij", p["dape_w1"], x) + p["dape_b1"][None, :, None, None]
        y = np.einsum("hw,bwij->bhij", p["dape_w2"], leaky_relu(z))
        a = a + y + p["dape_b2"][None, :, None, None]
    causal = np.tril(np.ones((n, n), dtype=bool))
    a = np.where(causal[None, None], a, -np.inf)
    a = a - a.max(axis=-1, keepdims=True)
    e = np.exp(a)
    prob = e / e.sum(axis=-1, keepdims=True)
    return np.einsum("bhij,bjhd->bihd", prob, v)


def loss(cfg, p, batch=None):
    sl = slice(None) if batch is None else slice(batch, batch + 1)
    return float(np.sum(attention(cfg, p, batch) * p["grad_out"][sl]))


def derivative(f, x, index):
    """d f / d x[index] by central differences, the step shrunk until two steps agree."""
    saved = x[index]
    previous = None
    h = 1e-6 * max(1.0, abs(saved))
    for _ in range(8):
        x[index] = saved + h
        fp = f()
        x[index] = saved - h
        fm = f()
        x[index] = saved
        g = (fp - fm) / (2 * h)
        if previous is not None and abs(g - previous) <= 1e-6 * max(1.0, abs(g)):
            return g
        previous = g
        h *= 0.25
    raise RuntimeError("finite differences do not settle at index %s" % (index,))


def gradient(cfg, p, name):
    x = p[name]
    g = np.zeros_like(x)
    per_batch = name in ("q", "k", "v")
    for index in np.ndindex(x.shape):
        b = index[0] if per_batch else None  # q, k, v of element b change only its loss
        g[index] = derivative(lambda: loss(cfg, p, b), x, index)
    return g


# ---- the files --------------------------------------------------------------------------------


def make_inputs(cfg, rng):
    b, n, h, d = cfg["batch"], cfg["seq_len"], cfg["heads"], cfg["head_dim"]
    w = cfg["mlp_width"]
    f32 = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)
    uniform = lambda bound, shape: f32(rng.uniform(-bound, bound, shape))
    p = {}
    for name in ("q", "k", "v", "grad_out"):
        p[name] = f32(rng.standard_normal((b, n, h, d)))
    if cfg["scheme"] == "alibi":
        p["alibi_slopes"] = f32(alibi_slopes(h))
    elif cfg["scheme"] == "kerple":
        p["kerple_p"] = f32(rng.uniform(0.05, 2.0, h))
        p["kerple_a"] = f32(rng.uniform(0.05, 1.0, h))
    elif cfg["scheme"] == "fire":
        p["fire_c"] = f32(np.array(cfg["fire_c"]))
        p["fire_L"] = f32(np.array(cfg["fire_L"]))
        p["fire_L_multiplier"] = f32(np.array(cfg["fire_L_multiplier"]))
        p["fire_w1"] = uniform(1.0, (w, 1))
        p["fire_b1"] = uniform(1.0, (w,))
        p["fire_w2"] = uniform(2.0 / math.sqrt(w), (h, w))
        p["fire_b2"] = uniform(2.0 / math.sqrt(w), (h,))
    if cfg["dape"]:
        # Twice PyTorch's default bound, so that f's nonlinearity matters.
        p["dape_w1"] = uniform(2.0 / math.sqrt(2 * h), (w, 2 * h))
        p["dape_b1"] = uniform(2.0 / math.sqrt(2 * h), (w,))
        p["dape_w2"] = uniform(2.0 / math.sqrt(w), (h, w))
        p["dape_b2"] = uniform(2.0 / math.sqrt(w), (h,))
    return p


LEARNED = [
    "q", "k", "v", "kerple_p", "kerple_a", "fire_c", "fire_L_multiplier", "fire_w1", "fire_b1",
    "fire_w2", "fire_b2", "dape_w1", "dape_b1", "dape_w2", "dape_b2",
]


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def make_file(cfg, out_dir, seed):
    rng = np.random.default_rng(seed)
    p = make_inputs(cfg, rng)
    tensors = dict(p)
    tensors["out"] = attention(cfg, p)
    for name in LEARNED:
        if name in p:
            tensors["grad_" + name] = gradient(cfg, p, name)
    metadata = {
        "scheme": cfg["scheme"],
        "dape": "true" if cfg["dape"] else "false",
        "batch": str(cfg["batch"]),
        "seq_len": str(cfg["seq_len"]),
        "heads": str(cfg["heads"]),
        "head_dim": str(cfg["head_dim"]),
        "mlp_width": str(cfg["mlp_width"]),
        "leaky_slope": "0.01",
        "fire_eps": "1e-6",
        "kerple_clamp_min": "1e-2",
        "generator": "tests/golden/make_golden.py: numpy float64, gradients by central "
        "finite differences",
    }
    name = "%s%s_B%dN%dH%dD%dW%d.safetensors" % (
        cfg["scheme"], "_dape" if cfg["dape"] else "", cfg["batch"], cfg["seq_len"],
        cfg["heads"], cfg["head_dim"], cfg["mlp_width"])
    path = os.path.join(out_dir, name)
    write_safetensors(path, tensors, metadata)
    return path


def config(scheme, dape, batch, seq_len, heads, head_dim, width, **extra):
    c = dict(scheme=scheme, dape=dape, batch=batch, seq_len=seq_len, heads=heads,
             head_dim=head_dim, mlp_width=width)
    c.update(extra)
    return c


CONFIGS = [
    # A non-power-of-2 H with ALiBi (the interleaved slopes), N in 50..100, W != 16.
    config("alibi", True, 1, 64, 3, 4, 8),
    config("alibi", False, 2, 33, 6, 2, 16),
    config("kerple", True, 2, 50, 5, 4, 12),
    # FIRE with a small L so that max(i, |L_mult L|) takes both sides; ReLU g without DAPE,
    # LeakyReLU g with DAPE; a negative c. Thresholds stay clear of integers: |L_mult L| is
    # computed from float32 inputs, and a rounding that lands on an integer i makes a tie, where
    # the gradient splits in half.
    config("fire", True, 1, 96, 2, 4, 6, fire_c=0.25, fire_L=40.0, fire_L_multiplier=1.31),
    config("fire", False, 2, 20, 3, 4, 10, fire_c=-0.4, fire_L=8.0, fire_L_multiplier=0.9),
    config("rope", True, 1, 72, 2, 6, 20),
    config("none", True, 1, 80, 1, 8, 9),
    # N in the hundreds: several 64-key blocks of a tiled kernel, a ragged last one.
    config("kerple", True, 1, 200, 2, 2, 8),
    config("alibi", True, 1, 260, 3, 2, 6),
    # N = 1: a single key per query.
    config("none", True, 3, 1, 4, 8, 7),
    config("kerple", False, 2, 1, 2, 4, 16),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="tests/data/golden", help="output directory")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for seed, cfg in enumerate(CONFIGS):
        path = make_file(cfg, args.out, 1000 + seed)
        print("%s (%d bytes)" % (path, os.path.getsize(path)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
