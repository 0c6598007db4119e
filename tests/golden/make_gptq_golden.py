#!/usr/bin/env python3
"""Independent GPTQ (NumPy, float64) for tests/quantizer/test_gptq.cpp: int4 symmetric, group 128,
on llama-14m's model.layers.0.self_attn.q_proj.weight [384, 384] with fixed calibration inputs.

The algorithm is IST-DASLab/gptq's GPTQ.fasterquant (damp 0.01 x mean diag, Cholesky of H^-1,
blocks of 128 columns, lazy batch updates, no act-order), re-written here without torch. The
group parameters follow razerq's rule for int symmetric with clip ratios {1} and no range-aware
candidate (the test runs razerq with those options): the fp16 scale is the better (lower squared
error) of fp16(absmax / 7) and fp16(2 absmax / 15), codes clamp(round(x / s), -8, 7) + 8, chosen
on the error-updated weights when the group's first column is reached.

Writes tests/golden/gptq_l14_q_proj.x.f32 (the inputs X [256, 384], float32) and
gptq_l14_q_proj.json (sha256 of the codes, the codes themselves hex-encoded, and the relative
layer-output error ||(Wq - W) X^T|| / ||W X^T||).
usage: /usr/bin/python3 tests/golden/make_gptq_golden.py [DATA_DIR]"""
import hashlib
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import razerq_load  # noqa: E402  (safetensors reading only)

DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")
MODEL = os.path.join(DATA, "models", "llama-14m")
NAME = "model.layers.0.self_attn.q_proj.weight"


def fp16(v):
    return np.float64(np.float16(v))


def group_params(x):
    """x [rows, n] -> scale per row (fp16 value), razerq's int4-sym rule with clip {1}."""
    absmax = np.abs(x).max(axis=1)
    best_s = np.zeros(x.shape[0])
    best_e = np.full(x.shape[0], np.inf)
    for cand in (absmax / 7.0, 2.0 * absmax / 15.0):
        s = np.array([fp16(c) for c in cand])
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(np.rint(np.where(s[:, None] > 0, x / s[:, None], 0)), -8, 7)
        e = ((x - q * s[:, None]) ** 2).sum(axis=1)
        better = e < best_e
        best_s = np.where(better, s, best_s)
        best_e = np.where(better, e, best_e)
    return best_s


def quant(x, s):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.rint(np.where(s > 0, x / s, 0)), -8, 7)
    return q + 8, q * s


def gptq(W, H, group=128, blocksize=128, percdamp=0.01):
    assert group == blocksize
    W = W.copy()
    rows, cols = W.shape
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(cols)] += percdamp * np.mean(np.diag(H))
    Hinv = np.linalg.inv(np.linalg.cholesky(H)).T @ np.linalg.inv(np.linalg.cholesky(H))  # H^-1
    Hinv = np.linalg.cholesky(Hinv).T  # upper factor U: H^-1 = U^T U
    codes = np.zeros((rows, cols), dtype=np.uint8)
    Q = np.zeros_like(W)
    scale = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros((rows, count))
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % group == 0:  # group == blocksize: the block's first column
                scale = group_params(W1[:, i:i + group])
            c, q = quant(w, scale)
            codes[:, i1 + i] = c
            Q[:, i1 + i] = q
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return codes, Q


def main():
    index = json.load(open(os.path.join(MODEL, "model.safetensors.index.json")))
    st = razerq_load.SafeTensors(os.path.join(MODEL, index["weight_map"][NAME]))
    W = st.get(NAME).astype(np.float64)
    rows, cols = W.shape
    rng = np.random.default_rng(0)
    A = np.eye(cols) + 0.3 * rng.standard_normal((cols, cols)) / np.sqrt(cols)
    X = (rng.standard_normal((256, cols)) @ A).astype(np.float32)
    X[:, ::7] *= 4  # a few columns with large inputs
    Xd = X.astype(np.float64)
    H = Xd.T @ Xd
    codes, Q = gptq(W, H)
    rel = np.linalg.norm((Q - W) @ Xd.T) / np.linalg.norm(W @ Xd.T)
    X.tofile(os.path.join(HERE, "gptq_l14_q_proj.x.f32"))
    out = {"tensor": NAME, "rows": rows, "cols": cols, "samples": 256, "group": 128, "format": "int4 sym",
           "x_sha256": hashlib.sha256(X.tobytes()).hexdigest(),
           "codes_sha256": hashlib.sha256(codes.tobytes()).hexdigest(), "codes_hex": codes.tobytes().hex(),
           "rel_output_error": rel,
           "numpy": np.__version__}
    json.dump(out, open(os.path.join(HERE, "gptq_l14_q_proj.json"), "w"), indent=1)
    print(f"{NAME}: rel output error {rel:.6f}; codes sha256 {out['codes_sha256'][:16]}")


if __name__ == "__main__":
    main()
