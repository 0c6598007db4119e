#!/usr/bin/env bash
# bench/gemv: ours (bench_gemv) vs cuBLAS fp16 vs PyTorch's int4 tinygemm, one table.
#   bench/gemv.sh BUILD_DIR [all|small] [formats]   (on the GPU machine; writes bench/gemv.md's table to stdout)
# formats: bench_gemv's --formats list, e.g. "lut4,lut3,lut4+sparse,lut3+sparse" for the lut rows
# only (M = 1, 2, 4, 8: the lut kernel has no M = 16 and prints no row for it).
# Each format runs in a process of its own (its own copy-bandwidth and cuBLAS measurements): a
# process that had already allocated and freed the rotated weight sets of hundreds of rows ran
# the same kernel up to 2.5 % slower (28672x8192, M = 1; bench/gemv.md, thirty-third session),
# which a process that loads one model's weights does not see. Rows are ordered shape, format, M.
set -euo pipefail
B=${1:?build dir}
SET=${2:-all}
FORMATS=${3:-razer,int,int-asym,fp4,nf4,mxfp4,nvfp4,nvfp4-razer,razer3,int3,int3-asym}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT  # (also when a format's bench_gemv fails: set -e ends the script there)
IFS=, read -r -a FLIST <<< "$FORMATS"
for i in "${!FLIST[@]}"; do
  "$B/bench/bench_gemv" --formats "${FLIST[$i]}" --shapes "$SET" --json "$T/ours_$i.json" >&2 ||
    { echo "bench/gemv.sh: bench_gemv failed for format '${FLIST[$i]}' (its messages above); no table" >&2; exit 1; }
done
python3 "$(dirname "$0")/gemv_tinygemm.py" "$T/tiny.json" "$SET" >&2 || echo '{"rows": []}' > "$T/tiny.json"
python3 - "$T/tiny.json" "$T"/ours_*.json <<'PY'
import json, re, sys
tiny = json.load(open(sys.argv[1]))
parts = [json.load(open(f)) for f in sorted(sys.argv[2:], key=lambda f: int(re.search(r'ours_(\d+)', f).group(1)))]
# shape order as bench_gemv runs them (its first process), then format (the list's order), then M
shape_order = {}
for p in parts:
    for r in p["rows"]:
        shape_order.setdefault((r["N"], r["K"]), len(shape_order))
rows = [(shape_order[(r["N"], r["K"])], i, n, r) for i, p in enumerate(parts) for n, r in enumerate(p["rows"])]
ours = {"rows": [r for *_, r in sorted(rows, key=lambda t: t[:3])]}
bw = [p["copy_gbs"] for p in parts]
tg = {(r["N"], r["K"], r["M"]): r["us"] for r in tiny["rows"]}
bws = f"{bw[0]:.0f} GB/s" if max(bw) - min(bw) < 0.5 else f"{min(bw):.0f}-{max(bw):.0f} GB/s (one process per format)"
print(f"measured copy bandwidth {bws}; torch {tiny.get('torch', '?')}\n")
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
