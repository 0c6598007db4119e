#!/usr/bin/env python3
"""tools/razerq_load.py (NumPy, written from formats/SPEC.md) against razerq itself: for every
registry format, a packed checkpoint of stories260K (ragged groups: K = 64 and 172) and of
llama-14m (a few formats) is read by the loader and compared bit for bit with
`razerq export --to dequant` (fp32 and fp16), which rounds razerq's float64 reference once.
Unquantized tensors must come back unchanged. A manifest of another version is refused.

usage: test_razerq_load.py RAZERQ_BIN DATA_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import razerq_load  # noqa: E402

BIN, DATA = sys.argv[1], sys.argv[2]
CASES = [
    ("stories260K/hf", ["--format", "razer", "--bits", "4"]),
    ("stories260K/hf", ["--format", "razer", "--bits", "3"]),
    ("stories260K/hf", ["--format", "int", "--bits", "4"]),
    ("stories260K/hf", ["--format", "int", "--bits", "4", "--asym"]),
    ("stories260K/hf", ["--format", "int", "--bits", "3", "--asym", "--group", "32"]),
    ("stories260K/hf", ["--format", "int", "--bits", "8"]),
    ("stories260K/hf", ["--format", "fp4"]),
    ("stories260K/hf", ["--format", "fp3"]),
    ("stories260K/hf", ["--format", "nf4"]),
    ("stories260K/hf", ["--format", "mxfp4"]),
    ("stories260K/hf", ["--format", "mxfp4-razer"]),
    ("stories260K/hf", ["--format", "nvfp4"]),
    ("stories260K/hf", ["--format", "nvfp4-razer"]),
    ("llama-14m", ["--format", "razer", "--bits", "4"]),
    ("llama-14m", ["--format", "nvfp4-razer"]),
    ("llama-14m", ["--format", "int", "--bits", "4", "--asym"]),
]


def run(*args):
    r = subprocess.run([BIN, "-q", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"razerq {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def exported(path):
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            st = razerq_load.SafeTensors(os.path.join(path, f))
            for n in st.names():
                out[n] = np.array(st.get(n))
    return out


failures = 0
tmp = tempfile.mkdtemp(prefix="razerq-load-")
try:
    for model, args in CASES:
        q = os.path.join(tmp, "q")
        run("quantize", os.path.join(DATA, "models", model), "-o", q, "--force", "--no-checksums", *args)
        manifest = razerq_load.read_manifest(q)
        nq = 0
        for dt, flag in ((np.float32, "fp32"), (np.float16, "fp16")):
            d = os.path.join(tmp, "d")
            shutil.rmtree(d, ignore_errors=True)
            run("export", q, "--to", "dequant", "-o", d, "--dtype", flag)
            ref = exported(d)
            got = razerq_load.load(q, dtype=dt)
            for rec in manifest["tensors"]:
                name = rec["name"]
                a, b = got[name], ref[name]
                if rec["quantized"]:
                    nq += 1
                    same = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))
                else:
                    same = a.shape == b.shape and np.array_equal(a.astype(np.float64), b.astype(np.float64))
                if not same:
                    failures += 1
                    print(f"FAIL {model} {' '.join(args)} {flag}: {name}: loader differs from razerq export")
        print(f"ok   {model:16s} {' '.join(args):40s} {nq // 2} quantized tensors bit-equal (fp32 and fp16)")

    # A manifest of another version is refused with a message naming the file.
    q = os.path.join(tmp, "q")
    with open(os.path.join(q, "manifest.json")) as f:
        m = json.load(f)
    m["version"] = 2
    with open(os.path.join(q, "manifest.json"), "w") as f:
        json.dump(m, f)
    try:
        razerq_load.load(q)
        failures += 1
        print("FAIL: version 2 manifest was accepted")
    except ValueError as e:
        ok = "manifest.json" in str(e) and "version 2" in str(e)
        failures += 0 if ok else 1
        print(("ok  " if ok else "FAIL") + f" refused: {e}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print("PASSED" if failures == 0 else f"FAILED: {failures}")
sys.exit(1 if failures else 0)
