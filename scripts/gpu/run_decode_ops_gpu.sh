#!/usr/bin/env bash
# The decode-step kernels (kernels/cuda/decode_ops_cuda.hpp) on the GPU machine, one device call
# (about 10 minutes at most): build -> test_kernels_cuda DecodeOpsCuda.* (float64 references) ->
# compute-sanitizer memcheck on them (racecheck too while time is left) -> test_eval_gpu
# StaticDecode / decode-kernel tests (graph decode with the kernels vs libtorch's ops, llama-14m
# fp16/bf16 and packed razer4) -> test_eval StaticDecode.* (CPU) -> `razerq bench decode --mode graph`
# with --decode-ops fused and libtorch: llama-14m fp16 vs razer4, then the 7B-shaped model (fp16 vs
# razer4, batch 1 and 16, prompt 128; then fp16 at a 1900-token prompt) while time is left.
# Everything that matters is appended to $OUT/summary.md; full logs beside it in $OUT.
# Needs the data in .device/data (RAZERQ_DATA), as run_decode_graph_gpu.sh.
#   bash scripts/gpu/run_decode_ops_gpu.sh
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin
W=${TMPDIR:-/tmp}/razerq-decode
mkdir -p "$W"
S=$OUT/summary.md
: >"$S"
say() { echo "$*" | tee -a "$S"; }
R=$B/apps/razerq

step environment
say "# run_decode_ops_gpu.sh, $(date -u '+%F %T') UTC, commit $(git rev-parse --short HEAD 2>/dev/null)"
say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
step configure
gpu_configure $B "$OUT/configure.log"
grep -E "razerq:" "$OUT/configure.log" | tee -a "$S"
step build
timeout $(( $(LEFT) - 300 )) cmake --build $B -j "$(nproc)" --target razerq test_kernels_cuda test_eval test_eval_gpu \
  razerq_synthetic_model >"$OUT/build.log" 2>&1
rc=$?
say "build rc=$rc, warnings $(grep -c 'warning' "$OUT/build.log") (t=$(( $(date +%s) - T0 )) s)"
if [ $rc -ne 0 ]; then grep -E "error|Error" "$OUT/build.log" | head -40 | tee -a "$S"; exit 1; fi

step "test_kernels_cuda DecodeOpsCuda.*"
timeout 150 $B/tests/kernels/test_kernels_cuda --gtest_filter='DecodeOpsCuda.*' >"$OUT/decode_ops_tests.log" 2>&1
say "## test_kernels_cuda DecodeOpsCuda.* rc=$?"
grep -E "^\[ device|^  |OK \]|FAILED|Failure|SKIPPED|Expected|Which is|reference" "$OUT/decode_ops_tests.log" | head -50 | tee -a "$S"

step "compute-sanitizer memcheck DecodeOpsCuda.*"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/tests/kernels/test_kernels_cuda \
  --gtest_filter='DecodeOpsCuda.*' --gtest_brief=1 >"$OUT/decode_ops_memcheck.log" 2>&1
say "memcheck rc=$? $(grep 'ERROR SUMMARY' "$OUT/decode_ops_memcheck.log" | tail -1)"

step "test_eval_gpu static decode + decode kernels"
timeout 200 $B/tests/eval/test_eval_gpu --gtest_filter='*StaticDecode*:*DecodeKernels*' >"$OUT/eval_gpu.log" 2>&1
say "## test_eval_gpu *StaticDecode*:*DecodeKernels* rc=$?"
grep -E "^  |OK \]|FAILED|Failure|SKIPPED|Expected|Which is|actual" "$OUT/eval_gpu.log" | head -60 | tee -a "$S"
step "test_eval StaticDecode.* (CPU)"
timeout 90 $B/tests/eval/test_eval --gtest_filter='StaticDecode.*' >"$OUT/eval_cpu.log" 2>&1
say "test_eval StaticDecode.* rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/eval_cpu.log" | tr '\n' ' ')"

# bench: one `razerq bench decode` per decode-ops setting; table rows into the summary.
bench() {  # tag, then bench decode arguments
  local tag=$1; shift
  for ops in fused libtorch; do
    [ "$(LEFT)" -gt 45 ] || { say "(no time left for $tag $ops)"; return; }
    timeout $(( $(LEFT) - 20 )) $R bench decode "$@" --mode graph --decode-ops $ops >"$OUT/bench-$tag-$ops.md" \
      2>"$OUT/bench-$tag-$ops.err"
    local rc=$?
    [ $rc -eq 0 ] || { say "bench $tag $ops rc=$rc: $(grep -iE 'error' "$OUT/bench-$tag-$ops.err" | head -3)"; continue; }
    tail -n +3 "$OUT/bench-$tag-$ops.md" | tee -a "$S"  # the rows, without the table header
  done
}

step "bench decode llama-14m"
L14=$RAZERQ_DATA/models/llama-14m
[ -d "$W/l14-razer4" ] || $R -q quantize "$L14" --format razer --bits 4 --group 128 -o "$W/l14-razer4"
say "## razerq bench decode --mode graph (ms / step; ops: fused = decode kernels, libtorch = libtorch's ops)"
say "| model | mode | ops | batch | prompt | ttft ms | ms / step | tokens/s | vs baseline |"
say "|---|---|---|---:|---:|---:|---:|---:|---:|"
bench l14 "$W/l14-razer4" --baseline "$L14" --batch 1,16 --prompt 128 --tokens 64

SYN=/tmp/razerq-syn7b
if [ "$(LEFT)" -gt 200 ]; then
  step "7B-shaped model"
  [ -d "$SYN" ] || $B/bench/razerq_synthetic_model "$RAZERQ_DATA/tokenizers/llama2/llama-2-7b.config.json" -o "$SYN" \
    --dtype fp16 --tokenizer "$RAZERQ_DATA/tokenizers/llama2" >/dev/null
  [ -d "$W/syn7b-razer4" ] || timeout $(( $(LEFT) - 120 )) $R -q quantize "$SYN" --format razer --bits 4 --group 128 \
    -o "$W/syn7b-razer4"
  step "bench decode 7B-shaped, prompt 128"
  bench syn7b "$W/syn7b-razer4" --baseline "$SYN" --batch 1,16 --prompt 128 --tokens 64
  step "bench decode 7B-shaped fp16, prompt 1900"
  bench syn7b-long "$SYN" --batch 1 --prompt 1900 --tokens 64
else
  say "(7B-shaped bench skipped: $(LEFT) s left)"
fi

if [ "$(LEFT)" -gt 100 ]; then
  step "compute-sanitizer racecheck DecodeOpsCuda (shared memory)"
  timeout $(( $(LEFT) - 15 )) compute-sanitizer --tool racecheck --error-exitcode 99 $B/tests/kernels/test_kernels_cuda \
    --gtest_filter='DecodeOpsCuda.*' --gtest_brief=1 >"$OUT/decode_ops_racecheck.log" 2>&1
  say "racecheck rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/decode_ops_racecheck.log" | tail -1)"
fi
step done
say "done at t=$(( $(date +%s) - T0 )) s"
