#!/usr/bin/env bash
# The fused GEMV on the GPU machine, one device call: build -> resource usage (registers, spills)
# -> correctness (test_kernels_cuda, GemvCuda.*) -> compute-sanitizer memcheck on the small cases
# -> bench/gemv.sh (ours, cuBLAS fp16, tinygemm). Logs and the table go to $OUT.
#   bash scripts/gpu/run_gemv_gpu.sh [all|small] [formats]
# formats: bench_gemv's --formats (default: gemv.sh's list); the lut rows alone:
#   bash scripts/gpu/run_gemv_gpu.sh all lut4,lut3,lut4+sparse,lut3+sparse
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin
gpu_configure $B "$OUT/configure.log"
cmake --build $B -j "$(nproc)" --target test_kernels_cuda bench_gemv >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "build done at $(( $(date +%s) - T0 )) s; warnings: $(grep -c warning "$OUT/build.log")"
echo "== resource usage (gemv kernels)"
cuobjdump -res-usage $B/kernels/CMakeFiles/razerq_kernels_cuda.dir/cuda/gemv.cu.o 2>&1 | grep -A1 "gemv_kernel" | grep -o "REG:[0-9]* STACK:[0-9]* SHARED:[0-9]* LOCAL:[0-9]*" | sort | uniq -c
cuobjdump -res-usage $B/kernels/CMakeFiles/razerq_kernels_cuda.dir/cuda/lut_gemv.cu.o 2>&1 | grep -A1 "lut_gemv_kernel\|sparse_add_kernel" | grep -o "REG:[0-9]* STACK:[0-9]* SHARED:[0-9]* LOCAL:[0-9]*" | sort | uniq -c
echo "== correctness"
timeout 240 $B/tests/kernels/test_kernels_cuda --gtest_filter='Gemv*:LutGemv*' 2>&1 | tee "$OUT/gemv_tests.log" | grep -E "^  |OK \]|FAILED|Failure|y\[" | head -60
echo "== memcheck"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 $B/tests/kernels/test_kernels_cuda \
  --gtest_filter='GemvCuda.EveryFormat*:GemvCuda.Unsupported*:LutGemvCuda.*' --gtest_brief=1 >"$OUT/memcheck.log" 2>&1; echo "memcheck rc=$?"
grep "ERROR SUMMARY" "$OUT/memcheck.log" | tail -1
echo "== bench (t=$(( $(date +%s) - T0 )) s)"
timeout 300 bash bench/gemv.sh $B "${1:-all}" ${2:+"$2"} 2>"$OUT/bench.log" | tee "$OUT/gemv_table.md"
grep "^check " "$OUT/bench.log"  # the lut rows' float64 checks
tail -3 "$OUT/bench.log"
echo "done at $(( $(date +%s) - T0 )) s"
