#!/usr/bin/env python3
"""PyTorch's int4 tinygemm (torch._weight_int4pack_mm, group 128, bf16 activations) at the
bench_gemv shapes: the peer column of bench/gemv.md. Rotating weight sets >= 200 MB, CUDA events
around batches of launches, median of 15 batches (as bench_gemv). Writes JSON to argv[1]."""
import json
import sys

import torch

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (28672, 8192), (8192, 28672), (16384, 16384)]
if len(sys.argv) > 2 and sys.argv[2] == "small":
    SHAPES = [(4096, 4096), (28672, 8192)]
MS = [1, 2, 4, 8, 16]
G = 128


def pack(N, K):
    w = torch.randint(0, 16, (N, K), dtype=torch.int32, device="cuda")
    try:  # torch >= 2.5: uint8 [N, K/2], two codes per byte (high nibble first)
        u8 = ((w[:, ::2] << 4) | w[:, 1::2]).to(torch.uint8)
        return torch._convert_weight_to_int4pack(u8, 8)
    except Exception:
        return torch._convert_weight_to_int4pack(w, 8)


def median_us(fn, reps):
    fn(reps)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t = []
    for _ in range(15):
        a.record()
        fn(reps)
        b.record()
        b.synchronize()
        t.append(1000.0 * a.elapsed_time(b) / reps)
    return sorted(t)[len(t) // 2]


rows = []
for N, K in SHAPES:
    per = N * K // 2 + (K // G) * N * 2 * 2
    n = max(2, -(-(200 << 20) // per))
    ws = [pack(N, K) for _ in range(n)]
    sz = [(torch.rand(K // G, N, 2, device="cuda") * 0.01).to(torch.bfloat16) for _ in range(n)]
    for M in MS:
        x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        i = [0]

        def run(r):
            for _ in range(r):
                j = i[0] % n
                i[0] += 1
                torch._weight_int4pack_mm(x, ws[j], G, sz[j])

        try:
            us = median_us(run, 50)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"tinygemm {N}x{K} M={M}: {e}", file=sys.stderr)
            us = None
        rows.append({"N": N, "K": K, "M": M, "us": us})
        print(f"tinygemm {N}x{K} M={M}: {us}", flush=True)
    del ws, sz
    torch.cuda.empty_cache()
json.dump({"torch": torch.__version__, "rows": rows}, open(sys.argv[1], "w"), indent=1)
