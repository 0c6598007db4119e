#!/usr/bin/env bash
# Issue 8, "real loaders", on the GPU machine in one device call (a few minutes):
#   build razerq (PyTorch's libtorch, sm_90) -> for each format: quantize llama-14m, export
#   --to dequant, razerq eval --device cuda --dtype fp16 (WikiText-2, GPTQ convention, 2048)
#   -> scripts/gpu/check_transformers_export.py: transformers loads the dequant directory in
#   fp16 on CUDA and computes the same perplexity on the same token stream.
# Usage (repository root, data in .device/data as for run_eval_gpu.sh, or RAZERQ_DATA):
#   bash scripts/gpu/check_transformers_export.sh                       # razer4 g128 and int4-asym g128
#   FORMATS="nf4;nvfp4" bash scripts/gpu/check_transformers_export.sh   # other formats (';'-separated)
# Logs and the JSON figures go to $OUT. Exit status 1 when a perplexity differs by more than
# the script's tolerance (1e-4 relative) or the token streams differ.
#
# Only the dequant export is loaded here: transformers needs gptqmodel for GPTQ and the
# compressed-tensors package for compressed-tensors checkpoints, and bitsandbytes for NF4,
# none of which the GPU machine has (the script says which are importable).
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/razerq-gpu}
mkdir -p "$OUT"
B=build-gpu
export RAZERQ_DATA=${RAZERQ_DATA:-$PWD/.device/data}
export PATH="$PATH:/usr/local/cuda/bin"
source "$(dirname "$0")/configure.sh"
step() { echo; echo "== $1 (t=$(( $(date +%s) - T0 )) s)"; }

step environment
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
for m in gptqmodel compressed_tensors bitsandbytes sentencepiece; do
  python3 -c "import $m; print('$m', getattr($m, '__version__', '?'))" 2>/dev/null || echo "$m: not installed"
done
step "configure + build razerq"
gpu_configure $B "$OUT/configure.log"
cmake --build $B -j "$(nproc)" --target razerq >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
R=$B/apps/razerq

IFS=';' read -r -a FMTS <<<"${FORMATS:-razer;int --bits 4 --asym}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
status=0
for f in "${FMTS[@]}"; do
  tag=$(echo "$f" | tr -c 'a-z0-9\n' '_' )
  step "llama-14m --format $f"
  # shellcheck disable=SC2086
  $R quantize "$RAZERQ_DATA/models/llama-14m" --format $f -o "$W/packed" --force -q || exit 1
  $R export "$W/packed" --to dequant -o "$W/dequant" --force -q || exit 1
  $R eval "$W/packed" --ppl wikitext2 --device cuda --dtype fp16 --json -q >"$OUT/eval_$tag.json" || exit 1
  read -r PPL TOK SHA < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(r["ppl"], r["stream_tokens"], r["stream_sha256"])' "$OUT/eval_$tag.json")
  echo "razerq eval cuda fp16: ppl $PPL, $TOK tokens, ids sha256 $SHA"
  python3 scripts/gpu/check_transformers_export.py "$W/dequant" --data "$RAZERQ_DATA" --ours-ppl "$PPL" \
    --ours-tokens "$TOK" --ours-sha256 "$SHA" --json "$OUT/check_transformers_$tag.json" 2>&1 | grep -v -i warn
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
step "done (status $status)"
exit $status
