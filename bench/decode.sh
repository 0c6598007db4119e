#!/usr/bin/env bash
# End-to-end decoding speed (issue 5): `razerq bench decode` on the 7B-shaped synthetic model,
# fp16 baseline against packed razer4 and int4 (g128), batch 1, 4, 16; and llama-14m.
#   bench/decode.sh BUILD_DIR [SYN7B]   (GPU machine; SYN7B made by razerq_synthetic_model when absent)
# Environment: RAZERQ_DATA (default ../shared/data). Results: bench/decode.md.
set -euo pipefail
B=${1:?build dir}
DATA=${RAZERQ_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
SYN=${2:-/tmp/razerq-syn7b}
W=${TMPDIR:-/tmp}/razerq-decode
mkdir -p "$W"
if [ ! -d "$SYN" ]; then
  "$B/bench/razerq_synthetic_model" "$DATA/tokenizers/llama2/llama-2-7b.config.json" -o "$SYN" --dtype fp16 \
    --tokenizer "$DATA/tokenizers/llama2"
fi
L14=$DATA/models/llama-14m
for f in "razer 4" "int 4"; do
  set -- $f
  for m in "$SYN:syn7b" "$L14:l14"; do
    src=${m%%:*} tag=${m##*:}
    [ -d "$W/$tag-$1$2" ] || "$B/apps/razerq" -q quantize "$src" --format "$1" --bits "$2" --group 128 -o "$W/$tag-$1$2"
  done
done
echo "## $(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
for tag in syn7b l14; do
  src=$SYN; [ $tag = l14 ] && src=$L14
  echo; echo "### $tag (prompt 128, 128 tokens decoded, greedy, KV cache, fp16)"; echo
  "$B/apps/razerq" bench decode "$W/$tag-razer4" --baseline "$src" --batch 1,4,16 --prompt 128 --tokens 128
  "$B/apps/razerq" -q bench decode "$W/$tag-int4" --batch 1,4,16 --prompt 128 --tokens 128 | tail -n +3
done
