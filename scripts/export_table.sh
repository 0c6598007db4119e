#!/usr/bin/env bash
# The export table: every source format razerq quantizes to x every quantized export target,
# each cell the verdict `razerq export` prints after re-reading the export with the target's
# independent decoder (formats/foreign_decoders.cpp): lossless (exact), lossless within a stated
# rounding, lossy (with the largest error), or refused.
#
#   scripts/export_table.sh [--model DIR] [--group-int G] [--skip REGEX] > table.md
#
# Defaults: llama-14m from $RAZERQ_DATA (or ../shared/data), each format at its default group
# (int: 128), razerq from $RAZERQ_BIN or build/apps/razerq. --skip is passed to quantize (e.g.
# stories260K: --group-int 32 --skip mlp, since its 172-wide MLP fits no group or GPTQ word).
# Progress goes to stderr; the markdown table to stdout. About two minutes on 2 cores.
#
# Hooks for the other targets:
#  - a target column for every target `razerq export --help` lists besides dequant (so "gguf"
#    appears once that exporter is merged and prints the same --json report);
#  - scripts/export_table_gguf.sh, if present, is run afterwards with the same model and
#    razerq binary ($1 = model dir; RAZERQ_BIN exported) and its output appended.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${RAZERQ_BIN:-build/apps/razerq}
DATA=${RAZERQ_DATA:-../shared/data}
MODEL=$DATA/models/llama-14m
GI=128
SKIP=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --group-int) GI=$2; shift 2 ;;
    --skip) SKIP+=(--skip "$2"); shift 2 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$R" ] || { echo "no razerq at $R (build it: ninja -C build razerq, or set RAZERQ_BIN)" >&2; exit 2; }
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL (set RAZERQ_DATA or pass --model)" >&2; exit 2; }
PY=/usr/bin/python3

# Targets: what the CLI accepts, dequant aside (it has no decoder-based verdict).
mapfile -t TARGETS < <("$R" export --help | grep -o -- '--to TEXT:{[^}]*}' | sed 's/.*{//; s/}//' | tr ',' '\n' | grep -v '^dequant$')

SOURCES=(
  "int --bits 2 --group $GI" "int --bits 2 --asym --group $GI"
  "int --bits 3 --group $GI" "int --bits 3 --asym --group $GI"
  "int --bits 4 --group $GI" "int --bits 4 --asym --group $GI"
  "int --bits 5 --group $GI" "int --bits 6 --asym --group $GI"
  "int --bits 8 --group $GI" "int --bits 8 --asym --group $GI"
  "fp4" "fp3" "nf4" "nf4 --group 128" "razer" "razer --bits 3"
  "mxfp4" "mxfp4-razer" "nvfp4" "nvfp4-razer"
)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One cell from the --json report of an export (stdin).
cell() {
  "$PY" -c '
import json, sys
try:
    r = json.load(sys.stdin)
except Exception:
    print("? (no JSON report)"); sys.exit()
t = r["tensors"]
n, ok = len(t), sum(1 for v in t if v["lossless"])
mx = max((v["max_abs_err"] for v in t), default=0.0)
rel = max((v["rel_err"] for v in t), default=0.0)
if ok == n and mx == 0:
    print(f"lossless, exact ({n} tensors)")
elif ok == n:
    print(f"lossless within the stated rounding: max abs {mx:.2e}, rel {rel:.2e} ({n} tensors)")
else:
    notes = sorted({v["note"] for v in t if not v["lossless"]})
    print(f"**lossy** in {n-ok}/{n} tensors: max abs {mx:.2e}, rel {rel:.2e} ({notes[0]})")
'
}

ROWS=()
for s in "${SOURCES[@]}"; do
  echo "quantize $(basename "$MODEL") --format $s" >&2
  # shellcheck disable=SC2086
  "$R" quantize "$MODEL" --format $s "${SKIP[@]}" -o "$WORK/packed" --force -q >/dev/null 2>"$WORK/q.log" || { cat "$WORK/q.log" >&2; exit 1; }
  label=$("$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))
r = next(t for t in m["tensors"] if t["quantized"])
f = r["format"] + (str(r["bits"]) if r["format"] in ("int", "razer") else "") + ("-asym" if r.get("asym") else "")
print(f + " g" + str(r["group"]))' "$WORK/packed/manifest.json")
  row="| $label |"
  for t in "${TARGETS[@]}"; do
    if "$R" export "$WORK/packed" --to "$t" -o "$WORK/out" --force --json -q >"$WORK/e.json" 2>"$WORK/e.log"; then
      row+=" $(cell <"$WORK/e.json") |"
    else
      rc=$?
      if [ $rc -eq 5 ]; then
        # The format does not map, or it does but a tensor's shape does not fit the target.
        if grep -q "tensor '" "$WORK/e.log"; then row+=" refused (tensor shape) |"; else row+=" refused |"; fi
      else row+=" error (exit $rc: $(head -c 120 "$WORK/e.log")) |"; fi
    fi
    echo "  -> $t" >&2
  done
  ROWS+=("$row")
done

NAME=$(basename "$MODEL"); [ "$NAME" = hf ] && NAME=$(basename "$(dirname "$MODEL")")
echo "Exports of $NAME${SKIP[*]:+ (quantized with ${SKIP[*]})} (razerq $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)):"
echo "each export re-read by the target's independent decoder and compared with razerq's float64 dequantization."
echo
hdr="| source format |"; sep="|---|"
for t in "${TARGETS[@]}"; do hdr+=" $t |"; sep+="---|"; done
echo "$hdr"; echo "$sep"
printf '%s\n' "${ROWS[@]}"
echo
echo "refused: the format has no exact mapping to the target; refused (tensor shape): it has, but a tensor's shape does not fit"
echo "(razerq export names the tensor, the rule and the targets that take the format)."
echo "dequant (any format) is not in the table: it writes our dequantization rounded once to fp16/bf16/fp32."

if [ -f scripts/export_table_gguf.sh ]; then
  echo
  RAZERQ_BIN=$R bash scripts/export_table_gguf.sh "$MODEL"
fi
