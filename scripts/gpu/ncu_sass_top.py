#!/usr/bin/env python3
# The SASS instructions with the most warp-stall samples in one kernel of an ncu report, and the
# stall reasons over the kernel. Usage (on the GPU machine):
#   ncu -k regex:gemv_kernel --launch-skip 40 --launch-count 1 --section WarpStateStats \
#       --section SourceCounters -o rep -f build-gpu/bench/bench_gemv --formats razer --shapes 8192x28672 --m 1
#   ncu --import rep.ncu-rep --page source --csv --print-source sass > rep.csv
#   python3 scripts/gpu/ncu_sass_top.py rep.csv 20
import csv, sys, collections
path, n = sys.argv[1], int(sys.argv[2])
rows = list(csv.reader(open(path, errors='replace')))


def num(cell):  # a CSV count ('1,234' or empty); ValueError if not a number
    return float(cell.replace(',', '') or 0)


# the header row
hi = next((i for i, r in enumerate(rows) if any('Source' == c.strip() for c in r)), None)
if hi is None:
    sys.exit(f'{path}: no "Source" header row (expected `ncu --import REP --page source --csv --print-source sass`)')
h = rows[hi]
src = next(i for i, c in enumerate(h) if c.strip() == 'Source')
samp = next((i for i, c in enumerate(h) if c.startswith('Warp Stall Sampling (All')), None)
if samp is None:
    sys.exit(f'{path}: no "Warp Stall Sampling (All Samples)" column (profile with --section SourceCounters)')
# per-reason columns: stall_*
data = []
for r in rows[hi + 1:]:
    if len(r) <= samp: continue
    try: s = num(r[samp])
    except ValueError: continue
    data.append((s, r))
tot = sum(s for s, _ in data)
print(f'{path}: {len(data)} instructions, {tot:.0f} samples')
reason_cols = [i for i, c in enumerate(h) if c.startswith('stall_')]
agg = collections.Counter()
for s, r in data:
    for i in reason_cols:
        try: agg[h[i]] += num(r[i])
        except ValueError: pass
if agg: print('  reasons:', ', '.join(f'{k[6:]} {v/tot*100:.0f}%' for k, v in agg.most_common(8)))
for s, r in sorted(data, key=lambda x: -x[0])[:n]:
    top = sorted(((num(r[i]), h[i][6:]) for i in reason_cols if r[i].strip() not in ('', '0')), reverse=True)[:2]
    print(f'  {s/tot*100:5.1f}%  {r[src].strip()[:70]:70s} {" ".join(f"{k}:{v:.0f}" for v, k in top)}')
