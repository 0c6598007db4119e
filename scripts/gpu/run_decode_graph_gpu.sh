#!/usr/bin/env bash
# Issue 5 item 4 on the GPU machine, in one device call (about 10 minutes at most):
#   build (PyTorch's libtorch: the configure log must say "libtorch with CUDA: CUDA graphs") ->
#   test_eval_gpu StaticDecode tests (graph replay vs eager static steps vs the dynamic cache,
#   fp16 llama-14m and packed razer4) -> test_eval StaticDecode (CPU) -> `razerq bench decode`
#   on llama-14m (fp16 vs razer4, --mode eager, static, graph) -> the 7B-shaped model (fp16 vs
#   razer4, graph then eager) while time is left. Logs go to $OUT.
# Needs the data in .device/data (RAZERQ_DATA), as run_eval_gpu.sh.
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin
W=${TMPDIR:-/tmp}/razerq-decode
mkdir -p "$W"

step configure
gpu_configure $B "$OUT/configure.log"
grep -E "razerq:" "$OUT/configure.log"
step build
timeout $(( $(LEFT) - 240 )) cmake --build $B -j "$(nproc)" --target razerq test_eval test_eval_gpu razerq_synthetic_model \
  >"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc, warnings $(grep -c 'warning' "$OUT/build.log")"
if [ $rc -ne 0 ]; then grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; fi

step "test_eval_gpu StaticDecode"
timeout 120 $B/tests/eval/test_eval_gpu --gtest_filter='*StaticDecode*' 2>&1 | tee "$OUT/test_static_gpu.log" |
  grep -E "^\s+(llama|razer)|OK|FAILED|SKIPPED|Failure|error|Expected|Which is|actual" | head -60
step "test_eval StaticDecode (CPU)"
timeout 60 $B/tests/eval/test_eval --gtest_filter='StaticDecode.*' 2>&1 | tail -3

step "llama-14m decode, three modes"
L14=$RAZERQ_DATA/models/llama-14m
[ -d "$W/l14-razer4" ] || $B/apps/razerq -q quantize "$L14" --format razer --bits 4 --group 128 -o "$W/l14-razer4"
for mode in eager static graph; do
  timeout 90 $B/apps/razerq bench decode "$W/l14-razer4" --baseline "$L14" --batch 1,16 --prompt 128 --tokens 64 \
    --mode $mode 2>"$OUT/l14-$mode.err" | tee "$OUT/l14-$mode.md"
  grep -iE "error" "$OUT/l14-$mode.err"
done

SYN=/tmp/razerq-syn7b
if [ "$(LEFT)" -gt 240 ]; then
  step "7B-shaped decode"
  [ -d "$SYN" ] || $B/bench/razerq_synthetic_model "$RAZERQ_DATA/tokenizers/llama2/llama-2-7b.config.json" -o "$SYN" \
    --dtype fp16 --tokenizer "$RAZERQ_DATA/tokenizers/llama2" >/dev/null
  [ -d "$W/syn7b-razer4" ] || timeout $(( $(LEFT) - 120 )) $B/apps/razerq -q quantize "$SYN" --format razer --bits 4 \
    --group 128 -o "$W/syn7b-razer4"
  for mode in graph eager; do
    [ "$(LEFT)" -gt 60 ] || break
    timeout $(( $(LEFT) - 20 )) $B/apps/razerq bench decode "$W/syn7b-razer4" --baseline "$SYN" --batch 1,16 \
      --prompt 128 --tokens 64 --mode $mode 2>"$OUT/syn7b-$mode.err" | tee "$OUT/syn7b-$mode.md"
    grep -iE "error" "$OUT/syn7b-$mode.err"
  done
fi
step done
