#!/usr/bin/env bash
# Issue 4 on the GPU machine, in one device call (about 10 minutes at most):
#   build (PyTorch's libtorch, sm_90) -> transformers fixtures -> test_eval_gpu -> the 7B-shaped
#   end-to-end WikiText-2 evaluation and forward speed (bench/eval.sh cuda) -> the README's
#   quality table on CUDA fp16 -> test_kernels_cuda -> test_eval (CPU suites).
# Each step is skipped when too little of the call's time is left. Logs and results go to $OUT.
# Needs the data in .device/data (RAZERQ_DATA); .device/{googletest,lib,include} are used when
# the machine lacks GoogleTest sources or libsentencepiece.
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin

step environment
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
step configure
gpu_configure $B "$OUT/configure.log"
grep -E "razerq:" "$OUT/configure.log"
step build
timeout $(( $(LEFT) - 200 )) cmake --build $B -j "$(nproc)" --target razerq test_eval test_eval_gpu test_kernels_cuda \
  razerq_synthetic_model bench_eval_speed >"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc, warnings $(grep -c 'warning' "$OUT/build.log")"
if [ $rc -ne 0 ]; then grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; fi

step "transformers fixtures"
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/gpu/make_transformers_fixtures.py "$OUT/transformers" 2>&1 | grep -v Warning
mkdir -p tests/golden/transformers && cp -r "$OUT"/transformers/* tests/golden/transformers/ 2>/dev/null

step "test_eval_gpu"
timeout 150 $B/tests/eval/test_eval_gpu 2>&1 | tee "$OUT/test_eval_gpu.log" | grep -E "^\s+(llama|razer|opt|qwen|llama3)|OK|FAILED|SKIPPED|Failure|error" | head -60

if [ "$(LEFT)" -gt 200 ]; then
  step "bench/eval.sh cuda (7B-shaped)"
  timeout $(( $(LEFT) - 90 )) bash bench/eval.sh $B cuda /tmp/razerq-syn7b 2>&1 | tr '\r' '\n' | grep -v "windows, " | tee "$OUT/bench_eval.log"
fi
if [ "$(LEFT)" -gt 80 ]; then
  step "eval table (cuda fp16)"
  RAZERQ_BIN=$B/apps/razerq timeout $(( $(LEFT) - 40 )) bash scripts/eval_table.sh --device cuda --dtype fp16 -q \
    >"$OUT/eval_table.md" 2>"$OUT/eval_table.log"
  cat "$OUT/eval_table.md"; tail -3 "$OUT/eval_table.log"
fi
if [ "$(LEFT)" -gt 60 ]; then
  step "test_kernels_cuda"
  timeout $(( $(LEFT) - 30 )) $B/tests/kernels/test_kernels_cuda --gtest_brief=1 >"$OUT/test_kernels_cuda.log" 2>&1
  tail -5 "$OUT/test_kernels_cuda.log"
fi
if [ "$(LEFT)" -gt 40 ]; then
  step "test_eval (CPU suites, transformers fixtures)"
  timeout $(( $(LEFT) - 10 )) $B/tests/eval/test_eval --gtest_filter='EvalTransformers.*:EvalSynthetic*' 2>&1 | tail -12
fi
step done
