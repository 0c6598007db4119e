#!/usr/bin/env bash
# Forward throughput of the evaluation path at seqlen 2048 (issue 4), and the end-to-end time of
# a WikiText-2 evaluation.
#   bench/eval.sh BUILD_DIR cpu            llama-14m fp32 on this machine's CPU
#   bench/eval.sh BUILD_DIR cuda [SYN7B]   llama-14m and the 7B-shaped model, fp16, on the GPU;
#                                          SYN7B: a directory made by razerq_synthetic_model from
#                                          tokenizers/llama2/llama-2-7b.config.json (made when absent)
# Environment: RAZERQ_DATA (default ../shared/data). Results: bench/eval.md.
set -euo pipefail
B=${1:?build dir}
DEV=${2:-cpu}
DATA=${RAZERQ_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
L14=$DATA/models/llama-14m
if [ "$DEV" = cpu ]; then
  "$B/bench/bench_eval_speed" "$L14" --device cpu --dtype fp32 --seqlen 2048 --iters 5
  "$B/bench/bench_eval_speed" "$L14" --device cpu --dtype bf16 --seqlen 2048 --iters 3
  exit 0
fi
SYN=${3:-/tmp/razerq-syn7b}
for b in 1 4; do "$B/bench/bench_eval_speed" "$L14" --device cuda --dtype fp16 --seqlen 2048 --batch $b --iters 20; done
if [ ! -d "$SYN" ]; then
  "$B/bench/razerq_synthetic_model" "$DATA/tokenizers/llama2/llama-2-7b.config.json" -o "$SYN" --dtype fp16 \
    --tokenizer "$DATA/tokenizers/llama2"
fi
for b in 1; do "$B/bench/bench_eval_speed" "$SYN" --device cuda --dtype fp16 --seqlen 2048 --batch $b --iters 5; done
# End to end: process start to result (tokenize WikiText-2, load 13.5 GB, 163 windows of 2048).
for b in 1; do
  s=$(date +%s%N)
  "$B/apps/razerq" eval "$SYN" --ppl wikitext2 --seqlen 2048 --device cuda --dtype fp16 --batch $b --data-dir "$DATA"
  ms=$(( ($(date +%s%N) - s) / 1000000 ))
  echo "end to end (batch $b): $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
done
