#!/usr/bin/env bash
# Simulated custom-precision arithmetic (issue 7, part 2) on the GPU machine, one device call
# (about 6-9 minutes): build -> CPU kernel tests (SimArith.*) -> CUDA kernel tests (SimGemmCuda.*:
# bit-equal to the float64 emulation and the CPU kernel) -> compute-sanitizer memcheck on them ->
# eval on CUDA (EvalGpuPackedRazer4.Simulated*) -> `razerq eval --device cuda` figures on a razer4
# llama-14m checkpoint, with and without --sim-*, and CPU vs CUDA on the first 2 windows.
# Logs go to $OUT. Needs the data in .device/data (RAZERQ_DATA), as the other scripts here.
#   bash scripts/gpu/run_simprec_gpu.sh [windows]   (default 20 WikiText-2 windows on CUDA)
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin
W=${1:-20}
export OPENBLAS_NUM_THREADS=1

step environment
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
step configure
gpu_configure $B "$OUT/configure.log"
step build
timeout $(( $(LEFT) - 240 )) cmake --build $B -j "$(nproc)" --target razerq test_kernels test_kernels_cuda test_eval_gpu \
  >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "warnings: $(grep -c warning "$OUT/build.log")"

step "test_kernels SimArith.* (CPU)"
timeout 60 $B/tests/kernels/test_kernels --gtest_filter='SimArith.*' 2>&1 | tee "$OUT/sim_cpu.log" | grep -E "checked|OK \]|FAILED|Failure" | head -20
step "test_kernels_cuda SimGemmCuda.*"
timeout 150 $B/tests/kernels/test_kernels_cuda --gtest_filter='SimGemmCuda.*' 2>&1 | tee "$OUT/sim_cuda.log" \
  | grep -E "device|checked|OK \]|FAILED|Failure|SKIPPED|cuda " | head -30
step "memcheck SimGemmCuda.MatchesFloat64EmulationAndCpu"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 $B/tests/kernels/test_kernels_cuda \
  --gtest_filter='SimGemmCuda.MatchesFloat64EmulationAndCpu:SimGemmCuda.RejectsBadFormats' --gtest_brief=1 >"$OUT/sim_memcheck.log" 2>&1
echo "memcheck rc=$? $(grep 'ERROR SUMMARY' "$OUT/sim_memcheck.log" | tail -1)"
step "test_eval_gpu *Simulated*"
timeout 200 $B/tests/eval/test_eval_gpu --gtest_filter='*Simulated*' 2>&1 | tee "$OUT/sim_eval_gpu.log" \
  | grep -E "^  |OK \]|FAILED|Failure|SKIPPED" | head -30

step "razerq eval figures"
R=$B/apps/razerq
CK=/tmp/razerq-simprec-r4
$R quantize "$RAZERQ_DATA/models/llama-14m" -o $CK --format razer --bits 4 --force >"$OUT/quantize.log" 2>&1; echo "quantize rc=$?"
ev() {  # label, then razerq eval options
  local label=$1; shift
  local t=$(date +%s)
  local line
  line=$($R eval $CK --ppl wikitext2 --json "$@" 2>"$OUT/eval_$label.err" | python3 -c \
    'import json,sys; r=json.load(sys.stdin)["results"][0]; print("ppl %.6f  windows %d  %.1f s" % (r["ppl"], r["windows"], r["seconds"]))' 2>&1)
  printf '%-28s %s  (wall %d s)\n' "$label" "$line" $(( $(date +%s) - t ))
}
for dev in cuda; do
  ev "cuda fp32 none" --device cuda --max-windows $W
  for p in "e8m23 e8m23" "e5m10 e8m23" "e5m10 e5m10" "e8m7 e8m7" "e4m3 e8m7"; do
    set -- $p
    [ "$(LEFT)" -gt 60 ] || break
    ev "cuda fp32 $1/$2" --device cuda --max-windows $W --sim-mul $1 --sim-acc $2
  done
done
if [ "$(LEFT)" -gt 90 ]; then  # the same 2 windows as the CPU figures of eval/NOTES.md
  ev "cuda fp32 e5m10/e8m7 2w" --device cuda --max-windows 2 --sim-mul e5m10 --sim-acc e8m7
  ev "cpu  fp32 e5m10/e8m7 2w" --device cpu --max-windows 2 --sim-mul e5m10 --sim-acc e8m7
fi
[ "$(LEFT)" -gt 40 ] && ev "cuda fp16 e5m10/e5m10" --device cuda --dtype fp16 --max-windows $W --sim-mul e5m10 --sim-acc e5m10
step done
