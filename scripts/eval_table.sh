#!/usr/bin/env bash
# The README's quality table: llama-14m WikiText-2 and C4-new perplexity (GPTQ convention,
# seqlen 2048) of the unquantized model and of round-to-nearest (searched scale/clip) packed
# checkpoints in the formats users compare RaZeR with.
#   scripts/eval_table.sh [--device cuda --dtype fp16] [any other `razerq eval` option]
# Environment: RAZERQ_BIN (default build/apps/razerq), RAZERQ_DATA (default ../shared/data),
# WORK (checkpoints; default a temporary directory, removed at the end).
# Prints a Markdown table on stdout; progress and the raw JSON go to stderr.
# On the 2-core development machine a row takes about 12 minutes in fp32; on the H100 seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RAZERQ_BIN:-$ROOT/build/apps/razerq}
DATA=${RAZERQ_DATA:-$ROOT/../shared/data}
MODEL=$DATA/models/llama-14m
WORK_DIR=${WORK:-$(mktemp -d)}
[ -n "${WORK:-}" ] || trap 'rm -rf "$WORK_DIR"' EXIT
EVAL_ARGS=("$@")
[ -x "$BIN" ] || { echo "error: $BIN not found (build first, or set RAZERQ_BIN)" >&2; exit 1; }
[ -d "$MODEL" ] || { echo "error: $MODEL not found (set RAZERQ_DATA)" >&2; exit 1; }

# label | quantize arguments (empty: the unquantized model)
ROWS=(
  "base (unquantized)|"
  "int4-asym g128|--format int --bits 4 --asym --group 128"
  "fp4 g128|--format fp4 --group 128"
  "nf4 g128|--format nf4 --group 128"
  "razer4 g128|--format razer --bits 4 --group 128"
  "razer3 g128|--format razer --bits 3 --group 128"
  "mxfp4 g32|--format mxfp4"
  "nvfp4 g16|--format nvfp4"
  "nvfp4-razer g16|--format nvfp4-razer"
)

echo "| weights | bits/weight (quantized linears) | WikiText-2 | C4-new | eval s |"
echo "|---|---:|---:|---:|---:|"
i=0
for row in "${ROWS[@]}"; do
  label=${row%%|*}
  qargs=${row#*|}
  path=$MODEL
  bpw="16"
  if [ -n "$qargs" ]; then
    path=$WORK_DIR/q$i
    # shellcheck disable=SC2086
    "$BIN" -q quantize "$MODEL" $qargs -o "$path" --force --no-checksums >&2
    bpw=$("$BIN" inspect "$path" --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["summary"]["bits_per_weight_quantized"])')
  fi
  echo "== $label" >&2
  json=$("$BIN" eval "$path" --ppl wikitext2 c4-new --seqlen 2048 --json "${EVAL_ARGS[@]}")
  echo "$json" >&2
  echo "$json" | python3 -c '
import json, sys
label, bpw = sys.argv[1], sys.argv[2]
r = {x["dataset"]: x for x in json.load(sys.stdin)["results"]}
secs = sum(x["seconds"] for x in r.values())
print("| %s | %s | %.4f | %.4f | %.1f |" % (label, bpw, r["wikitext2"]["ppl"], r["c4-new"]["ppl"], secs))' "$label" "$bpw"
  i=$((i + 1))
done
