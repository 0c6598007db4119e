#!/usr/bin/env bash
# Issue 6 on the GPU machine: the llama-14m quality table by calibrated stage (RTN, GPTQ, AWQ,
# LWC, rotate+GPTQ; WikiText-2 and C4-new at seqlen 2048, CUDA fp16 evaluation, calibration on
# CUDA with 128 x 2048 C4 tokens) through scripts/quality_table.sh.
#
# Resumable, for device calls of about 10 minutes: each call builds razerq (incrementally, in
# build-gpu/), then runs the (format, stage) entries not yet in build-gpu/quality-llama14m/
# results.tsv, WORKERS (4) at a time, until the time is up, and prints the table so far (also to
# $OUT/quality_llama14m.md). Call it again until the log says "complete" (the whole table took
# two calls on the H100, 2026-11-23). build-gpu/ does not survive between device calls: carry
# its results.tsv back (e.g. copy it into .device/ and from there before the next call).
# Needs the data in .device/data (RAZERQ_DATA), as scripts/gpu/run_eval_gpu.sh. NSAMPLES and
# CALIB_SEQLEN (default 128 x 2048) set the calibration of every stage; keep them across calls.
set -u
source "$(dirname "$0")/configure.sh"
gpu_call_begin
W=$B/quality-llama14m
FORMATS="int4-asym int3 fp4 nf4 razer4 razer3 nvfp4 nvfp4-razer"
STAGES="rtn gptq awq lwc rotate+gptq"

step configure
gpu_configure $B "$OUT/configure.log"
step build
timeout $(( $(LEFT) - 60 )) cmake --build $B -j "$(nproc)" --target razerq >"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc, warnings $(grep -c 'warning' "$OUT/build.log")"
if [ $rc -ne 0 ]; then grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; fi

mkdir -p "$W"
touch "$W/results.tsv"
TSV=$W/results.tsv
source scripts/table_common.sh
have() { table_done llama-14m "$1" "$2"; }
# The missing (format, stage) entries, WORKERS (default 4) at a time: one process per entry
# (llama-14m is small; the GPU is shared). On the H100 one entry takes ~1 min (RTN, GPTQ,
# rotate+GPTQ) to ~5 min (AWQ with the razer/nvfp4 searches) with 8 workers.
todo=$(for s in $STAGES; do for f in $FORMATS; do have "$f" "$s" || echo "$f $s"; done; done)
# The unquantized baseline first (the table's fp row comes with any entry).
first=$(echo "$todo" | head -1)
if [ -n "$first" ]; then
  step "llama-14m $first"
  timeout $(( $(LEFT) - 40 )) bash scripts/quality_table.sh --build $B --device cuda --dtype fp16 --models llama-14m \
    --formats "${first% *}" --stages "${first#* }" --work "$W" --nsamples "${NSAMPLES:-128}" --calib-seqlen "${CALIB_SEQLEN:-2048}" \
    >/dev/null 2>>"$OUT/quality.log"
  step "the rest, ${WORKERS:-4} at a time"
  echo "$todo" | tail -n +2 | timeout $(( $(LEFT) - 40 )) xargs -P "${WORKERS:-4}" -L 1 sh -c \
    'bash scripts/quality_table.sh --build '"$B"' --device cuda --dtype fp16 --models llama-14m --formats "$0" --stages "$1" \
       --work '"$W"' --nsamples '"${NSAMPLES:-128}"' --calib-seqlen '"${CALIB_SEQLEN:-2048}"' >/dev/null 2>>'"$OUT"'/quality.log'
fi
missing=0
for s in $STAGES; do for f in $FORMATS; do have "$f" "$s" || missing=$((missing + 1)); done; done
step table
bash scripts/quality_table.sh --build $B --device cuda --dtype fp16 --models llama-14m --stages "$STAGES" --work "$W" \
  --nsamples "${NSAMPLES:-128}" --calib-seqlen "${CALIB_SEQLEN:-2048}" --table-only | tee "$OUT/quality_llama14m.md"
cp "$W/results.tsv" "$OUT/quality_llama14m.tsv"
if [ "$missing" -eq 0 ]; then echo "complete"; else echo "$missing entries left: call again"; fi
