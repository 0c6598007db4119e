#!/usr/bin/env bash
# The GGUF rows of the export table: for every source format the GGUF exporter accepts,
# quantize llama-14m (round-to-nearest, searched scale/clip), `razerq export --to gguf`, and
# report what the independent re-read found: the GGUF types written, lossless tensors, and
# the worst relative error of the quantized tensors against our float64 dequantization.
# Formats without an exact GGUF type appear with --requant Q4_K (lossy; on llama-14m the
# 384-wide tensors take Q5_0, as llama-quantize falls back).
#   scripts/export_table_gguf.sh
# Environment: RAZERQ_BIN (default build/apps/razerq), RAZERQ_DATA (default ../shared/data),
# WORK (checkpoints and files; default a temporary directory, removed at the end).
# Prints a Markdown table on stdout; progress goes to stderr. About 5 s a row on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RAZERQ_BIN:-$ROOT/build/apps/razerq}
DATA=${RAZERQ_DATA:-$ROOT/../shared/data}
MODEL=$DATA/models/llama-14m
WORK_DIR=${WORK:-$(mktemp -d)}
[ -n "${WORK:-}" ] || trap 'rm -rf "$WORK_DIR"' EXIT
[ -x "$BIN" ] || { echo "error: $BIN not found (build first, or set RAZERQ_BIN)" >&2; exit 1; }
[ -d "$MODEL" ] || { echo "error: $MODEL not found (set RAZERQ_DATA)" >&2; exit 1; }

# label | quantize arguments | export arguments
ROWS=(
  "int4 sym g32|--format int --bits 4 --group 32|"
  "int4 sym g64|--format int --bits 4 --group 64|"
  "int4 sym g128|--format int --bits 4 --group 128|"
  "int3 sym g128|--format int --bits 3 --group 128|"
  "int4 asym g32|--format int --bits 4 --group 32 --asym|"
  "int4 asym g64|--format int --bits 4 --group 64 --asym|"
  "int4 asym g128|--format int --bits 4 --group 128 --asym|"
  "int2 asym g64|--format int --bits 2 --group 64 --asym|"
  "mxfp4 g32|--format mxfp4|"
  "nvfp4 g16|--format nvfp4|"
  "razer4 g128|--format razer --bits 4 --group 128|--requant Q4_K"
  "razer3 g128|--format razer --bits 3 --group 128|--requant Q4_K"
  "fp4 g128|--format fp4 --group 128|--requant Q4_K"
  "nf4 g64|--format nf4|--requant Q4_K"
  "mxfp4-razer g32|--format mxfp4-razer|--requant Q4_K"
  "nvfp4-razer g16|--format nvfp4-razer|--requant Q4_K"
  "int8 sym g128|--format int --bits 8 --group 128|--requant Q8_0"
)

PY=/usr/bin/python3
echo "| source (llama-14m) | export | GGUF types of the quantized tensors | lossless tensors | verdict | worst rel err vs our dequant |"
echo "|---|---|---|---:|---|---:|"
i=0
for row in "${ROWS[@]}"; do
  IFS='|' read -r label qargs eargs <<<"$row"
  i=$((i + 1))
  ck=$WORK_DIR/ck$i
  echo "[$i/${#ROWS[@]}] $label" >&2
  # shellcheck disable=SC2086
  "$BIN" -q quantize "$MODEL" $qargs -o "$ck" --force --no-checksums >/dev/null
  # shellcheck disable=SC2086
  "$BIN" -q --json export "$ck" --to gguf -o "$ck.gguf" --force $eargs >"$ck.json"
  "$PY" - "$ck.json" "$label" "${eargs:---to gguf}" "$ck/manifest.json" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
man = json.load(open(sys.argv[4]))
quantized = {t["name"] for t in man["tensors"] if t["quantized"]}
qt = [t for t in rep["tensors"] if t["name"] in quantized]
types = sorted({t["target_type"] for t in qt})
counts = ", ".join(f"{ty} x{sum(t['target_type'] == ty for t in qt)}" for ty in types)
n_ok = sum(t["lossless"] for t in rep["tensors"])
lossy = [t for t in qt if not t["lossless"]]
worst = max((t["rel_err"] for t in qt), default=0.0)
exact = "lossless" if not lossy else "lossy"
if not lossy and any("rounded to fp16" in t["note"] for t in qt):
    exact = "lossless (m = -d*z rounded to fp16)"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {counts} | {n_ok}/{len(rep['tensors'])} | {exact} | {worst:.3e} |")
EOF
done
