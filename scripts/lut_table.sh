#!/usr/bin/env bash
# The lut format (SqueezeLLM-style) next to razer at 3 and 4 bits on llama-14m: WikiText-2, PTB
# and C4-new perplexity (GPTQ convention, seqlen 2048) with inspect's bits/weight, printed as a
# Markdown table on stdout; progress on stderr.
#
#   scripts/lut_table.sh [--build DIR] [--device cpu|cuda] [--dtype fp32|fp16|bf16]
#                        [--calib-dtype fp32|bf16|fp16] [--sensitivity fisher|act2|none] [--nsamples N] [--calib-seqlen N]
#                        [--max-windows N] [--rows "base razer4 razer4-g32 ... lut3-ds"]
#                        [--model DIR] [--seqlen N] [--work DIR] [--table-only]
#
# Rows: razerN = razer N bits g128 (search); razerN-gG = the same at group G, at lut's size:
# razer4-g32 (4.5 bits/weight) next to lut4 (4.574 on llama-14m), razer4-g16 (5.0) next to
# lut4-ds (4.886), razer3-g64 (3.25) next to lut3 (3.287), razer3-g32 (3.5) next to lut3-ds
# (3.599); lutN = lut dense only (--outlier-frac 0 --sensitive-frac 0); lutN-ds =
# dense-and-sparse (0.45 % outliers + 0.05 % sensitive weights). Default: all of them; the table
# lists them in that order (pairs at nearly equal bits next to each other) whatever --rows says.
# lut's sensitivity is computed on --nsamples (default 128) C4-train windows of --calib-seqlen
# (default 2048), seed 0, k-means seed 0, with the model in --calib-dtype (default fp32; fisher
# refuses fp16; --dtype is the evaluation's). --model (default
# DATA/models/llama-14m) and --seqlen (evaluation, default 2048) allow a small model, e.g.
# --model DATA/models/stories260K/hf --seqlen 512 --calib-seqlen 512. The binary is
# DIR/apps/razerq (default build/), the data $RAZERQ_DATA (default ../shared/data). With --work,
# results are kept in WORK/results.tsv and a rerun skips the rows already there (resumable);
# --table-only prints the table from it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
DEVICE=cpu
DTYPE=fp32
CALIB_DTYPE=fp32
SENS=fisher
NSAMPLES=128
CALIB_SEQLEN=2048
MAX_WINDOWS=
ROWS="base razer4 razer4-g32 lut4 razer4-g16 lut4-ds razer3 razer3-g64 lut3 razer3-g32 lut3-ds"
MODEL=
SEQLEN=2048
WORK_DIR=
TABLE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    --calib-dtype) CALIB_DTYPE=$2; shift 2 ;;
    --sensitivity) SENS=$2; shift 2 ;;
    --nsamples) NSAMPLES=$2; shift 2 ;;
    --calib-seqlen) CALIB_SEQLEN=$2; shift 2 ;;
    --max-windows) MAX_WINDOWS=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --seqlen) SEQLEN=$2; shift 2 ;;
    --work) WORK_DIR=$2; shift 2 ;;
    --table-only) TABLE_ONLY=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN=$BUILD/apps/razerq
DATA=${RAZERQ_DATA:-$ROOT/../shared/data}
MODEL=${MODEL:-$DATA/models/llama-14m}
MODEL_NAME=$(basename "$MODEL")
[ "$MODEL_NAME" = hf ] && MODEL_NAME=$(basename "$(dirname "$MODEL")")
[ -d "$MODEL" ] || { echo "error: $MODEL not found (set RAZERQ_DATA)" >&2; exit 1; }
source "$ROOT/scripts/table_common.sh"
table_work_setup

row_args() {  # row -> quantize arguments
  local calib="--sensitivity $SENS --nsamples $NSAMPLES --calib-seqlen $CALIB_SEQLEN --device $DEVICE --calib-dtype $CALIB_DTYPE"
  case "$1" in
    razer4) echo "--format razer --bits 4 --group 128" ;;
    razer3) echo "--format razer --bits 3 --group 128" ;;
    razer[34]-g[0-9]*) echo "--format razer --bits ${1:5:1} --group ${1#razer?-g}" ;;
    lut4) echo "--format lut --bits 4 --outlier-frac 0 --sensitive-frac 0 $calib" ;;
    lut3) echo "--format lut --bits 3 --outlier-frac 0 --sensitive-frac 0 $calib" ;;
    lut4-ds) echo "--format lut --bits 4 $calib" ;;
    lut3-ds) echo "--format lut --bits 3 $calib" ;;
    *) echo "error: unknown row $1" >&2; exit 2 ;;
  esac
}

evaluate() {  # ROW PATH BPW -> one TSV line: row bpw wikitext2 ptb c4-new
  local ppl
  ppl=$(table_ppl "$2" "$SEQLEN" wikitext2 ptb c4-new)
  printf '%s\t%s\t%s\n' "$1" "$3" "$ppl" >> "$TSV"
}

for r in $ROWS; do
  [ "$TABLE_ONLY" = 1 ] && break
  table_done "$r" && continue
  echo "== $r" >&2
  if [ "$r" = base ]; then
    evaluate base "$MODEL" 16
    continue
  fi
  out=$WORK_DIR/$r
  # shellcheck disable=SC2046
  "$BIN" -q quantize "$MODEL" $(row_args "$r") -o "$out" --force --no-checksums >&2
  bpw=$(table_bpw "$out")
  evaluate "$r" "$out" "$bpw"
  [ "$KEEP" = 1 ] || rm -rf "$out"
done

/usr/bin/python3 - "$TSV" "$DEVICE" "$DTYPE" "$SENS" "$NSAMPLES" "$CALIB_SEQLEN" "$MAX_WINDOWS" "$MODEL_NAME" "$SEQLEN" "$CALIB_DTYPE" <<'PY'
import re, sys
path, device, dtype, sens, ns, cseq, maxw, model, seqlen, cdtype = sys.argv[1:11]
names = {"base": "fp (unquantized)", "razer4": "razer 4-bit g128", "razer3": "razer 3-bit g128",
         "lut4": "lut 4-bit, dense only", "lut4-ds": "lut 4-bit, dense-and-sparse (0.45 % + 0.05 %)",
         "lut3": "lut 3-bit, dense only", "lut3-ds": "lut 3-bit, dense-and-sparse (0.45 % + 0.05 %)"}
# Pairs at nearly equal bits next to each other, whatever order the rows ran in.
order = ["base", "razer4", "razer4-g32", "lut4", "razer4-g16", "lut4-ds", "razer3", "razer3-g64", "lut3", "razer3-g32", "lut3-ds"]
def name(r):
    m = re.fullmatch(r"razer([34])-g([0-9]+)", r)
    return "razer %s-bit g%s" % m.groups() if m else names.get(r, r)
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
rows.sort(key=lambda x: order.index(x[0]) if x[0] in order else len(order))
subset = ", first %s windows of each set" % maxw if maxw else ""
print("\n%s perplexity, seqlen %s (%s %s%s; lut sensitivity %s on %s x %s C4-train windows, %s)\n"
      % (model, seqlen, device, dtype, subset, sens, ns, cseq, cdtype))
print("| format | bits/weight | WikiText-2 | PTB | C4-new |")
print("|---|---:|---:|---:|---:|")
for r, bpw, w, p, c in rows:
    print("| %s | %s | %s | %s | %s |" % (name(r), bpw, w, p, c))
PY
