#!/usr/bin/env bash
# bench/gemv: ours (bench_gemv) vs cuBLAS fp16 vs PyTorch's int4 tinygemm, one table.
#   bench/gemv.sh BUILD_DIR [all|small] [formats]   (on the GPU machine; writes bench/gemv.md's table to stdout)
# formats: bench_gemv's --formats list, e.g. "lut4,lut3,lut4+sparse,lut3+sparse" for the lut rows
# only (M = 1, 2, 4, 8: the lut kernel has no M = 16 and prints no row for it).
set -euo pipefail
B=${1:?build dir}
SET=${2:-all}
FORMATS=${3:-razer,int,int-asym,fp4,nf4,mxfp4,nvfp4,nvfp4-razer,razer3,int3,int3-asym}
T=$(mktemp -d)
"$B/bench/bench_gemv" --formats "$FORMATS" --shapes "$SET" --json "$T/ours.json" >&2
python3 "$(dirname "$0")/gemv_tinygemm.py" "$T/tiny.json" "$SET" >&2 || echo '{"rows": []}' > "$T/tiny.json"
python3 - "$T/ours.json" "$T/tiny.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1])); tiny = json.load(open(sys.argv[2]))
tg = {(r["N"], r["K"], r["M"]): r["us"] for r in tiny["rows"]}
print(f"measured copy bandwidth {ours['copy_gbs']:.0f} GB/s; torch {tiny.get('torch', '?')}\n")
# ours: with programmatic dependent launch (the library's default); serial: without (each launch
# waits for the one before to finish), the fused GEMV only.
# read-only: a kernel that only reads the row's weight bytes, launched as ours (bench_gemv's
# read_only_kernel): the ceiling for any kernel that must read them; "% of read-only" its time
# over ours.
# host us: the host's time to issue one of our launches (bench_gemv's host_us); where it reaches
# "ours us", the row is host-bound.
print("| format | N x K | M | ours us | % of BW floor | read-only us | % of read-only | serial us | serial % | host us | cuBLAS fp16 us | tinygemm us | vs cuBLAS | serial vs cuBLAS | vs tinygemm |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in ours["rows"]:
    t = tg.get((r["N"], r["K"], r["M"]))
    ts = f"{t:.2f}" if t else "n/a"
    vt = f"{t / r['us']:.2f}x" if t else "n/a"
    su = r.get("us_serial", -1)
    ss = (f"{su:.2f} | {r['bw_pct_serial']:.1f} %", f"{r['cublas_us'] / su:.2f}x") if su > 0 else ("n/a | n/a", "n/a")
    ro = r.get("read_us", -1)
    rs = f"{ro:.2f} | {100 * ro / r['us']:.1f} %" if ro > 0 else "n/a | n/a"
    ho = r.get("host_us", -1)
    hs = f"{ho:.2f}" if ho > 0 else "n/a"
    print(f"| {r['format']} | {r['N']}x{r['K']} | {r['M']} | {r['us']:.2f} | {r['bw_pct']:.1f} % | {rs} | {ss[0]} | {hs} | {r['cublas_us']:.2f} | {ts} | {r['cublas_us'] / r['us']:.2f}x | {ss[1]} | {vt} |")
PY
rm -rf "$T"
