#!/usr/bin/env bash
# The OA-CIM results table (outlier-aware INT on top of GPTQ) for one model: BASELINE (fp),
# INT / INT+OUTLIER / INT+OFFSET / INT+OUTLIER+OFFSET at each bit width, WikiText-2, PTB and
# C4-new perplexity (GPTQ convention), bits/weight of the quantized linears and the share of 1
# bits in the stored codes (without and with offsets). Markdown on stdout, progress on stderr.
#
#   scripts/oa_table.sh [--build DIR] [--model DIR] [--bits "3 4"] [--block-size 32]
#                       [--qq-scale-bits 4] [--qq-group-size 16] [--nsamples N] [--calib-seqlen N]
#                       [--seqlen 2048] [--max-windows N] [--device cpu|cuda] [--dtype fp32|fp16]
#                       [--work DIR] [--table-only]
#
# INT is OA-CIM's README command: --per-out-dim --sym with 4-bit second-level scales per 16
# rows (its --qq_zero_bits 4 has nothing to act on with --sym), all with --gptq (C4 train
# calibration, seed 0). OUTLIER adds --outliers --block-size 32, OFFSET adds --offset.
# With --work the raw results stay in WORK/results.tsv and a rerun skips the configurations
# already there (resumable, as scripts/quality_table.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
DATA=${RAZERQ_DATA:-$ROOT/../shared/data}
MODEL=$DATA/models/llama-14m
BITS="3 4"
BLOCK=32
QQ_BITS=4
QQ_GROUP=16
NSAMPLES=128
CALIB_SEQLEN=2048
SEQLEN=2048
MAX_WINDOWS=
DEVICE=cpu
DTYPE=fp32
WORK_DIR=
TABLE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --bits) BITS=$2; shift 2 ;;
    --block-size) BLOCK=$2; shift 2 ;;
    --qq-scale-bits) QQ_BITS=$2; shift 2 ;;
    --qq-group-size) QQ_GROUP=$2; shift 2 ;;
    --nsamples) NSAMPLES=$2; shift 2 ;;
    --calib-seqlen) CALIB_SEQLEN=$2; shift 2 ;;
    --seqlen) SEQLEN=$2; shift 2 ;;
    --max-windows) MAX_WINDOWS=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    --work) WORK_DIR=$2; shift 2 ;;
    --table-only) TABLE_ONLY=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN=$BUILD/apps/razerq
[ -f "$MODEL/config.json" ] || { echo "error: no model at $MODEL" >&2; exit 1; }
source "$ROOT/scripts/table_common.sh"
table_work_setup

config_args() {  # CONFIG BITS -> quantize arguments
  local a="--format int --bits $2 --sym --per-out-dim --qq-scale-bits $QQ_BITS --qq-group-size $QQ_GROUP"
  case "$1" in
    int) ;;
    int+outlier) a="$a --outliers --block-size $BLOCK" ;;
    int+offset) a="$a --offset" ;;
    int+outlier+offset) a="$a --outliers --block-size $BLOCK --offset" ;;
    *) echo "error: unknown configuration $1" >&2; exit 2 ;;
  esac
  echo "$a"
}

evaluate() {  # KEY PATH BITS -> one TSV line: key bits bpw ones ones_without_offset wikitext2 ptb c4-new
  local ppl meta
  ppl=$(table_ppl "$2" "$SEQLEN" wikitext2 ptb c4-new)
  meta=$(/usr/bin/python3 -c '
import json, os, sys
bpw, ones, plain = "16", "", ""
m = os.path.join(sys.argv[1], "manifest.json")
if os.path.exists(m):
    q = json.load(open(m))
    bpw = "%.4f" % q["summary"]["bits_per_weight_quantized"]
    ones = "%.2f" % (100 * q["quantization"]["code_ones_share"])
    plain = "%.2f" % (100 * q["quantization"]["code_ones_share_without_offset"])
print("\t".join([bpw, ones, plain]))' "$2")
  printf '%s\t%s\t%s\t%s\n' "$1" "$3" "$meta" "$ppl" >> "$TSV"
}

if [ "$TABLE_ONLY" = 0 ]; then
  if ! table_done base; then
    echo "== baseline" >&2
    evaluate base "$MODEL" 16
  fi
  for b in $BITS; do
    for c in int int+outlier int+offset int+outlier+offset; do
      key="$c/$b"
      table_done "$key" && continue
      out=$WORK_DIR/ckpt_${c//+/_}_$b
      echo "== $key: $BIN quantize $(config_args "$c" "$b") --gptq --nsamples $NSAMPLES --calib-seqlen $CALIB_SEQLEN" >&2
      # shellcheck disable=SC2046
      "$BIN" quantize "$MODEL" $(config_args "$c" "$b") --gptq --nsamples "$NSAMPLES" --calib-seqlen "$CALIB_SEQLEN" \
        --device "$DEVICE" -o "$out" --force >&2
      evaluate "$key" "$out" "$b"
      rm -rf "$out"
    done
  done
fi

/usr/bin/python3 - "$TSV" "$MAX_WINDOWS" "$SEQLEN" "$NSAMPLES" "$CALIB_SEQLEN" <<'EOF'
import sys
tsv, maxw, seqlen, ns, cs = sys.argv[1:6]
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open(tsv) if l.strip()}
names = {"int": "INT{b}", "int+outlier": "INT{b}+OUTLIER", "int+offset": "INT{b}+OFFSET", "int+outlier+offset": "INT{b}+OUTLIER+OFFSET"}
print("llama-14m, GPTQ-convention perplexity at seqlen %s%s; GPTQ calibration %s x %s C4 train windows" %
      (seqlen, ", first %s windows of each set" % maxw if maxw else "", ns, cs))
print()
print("| configuration | bits/weight | WikiText-2 | PTB | C4-new | 1 bits without offset | 1 bits stored |")
print("|---|---:|---:|---:|---:|---:|---:|")
def line(label, r):
    ones = r[3] + " %" if r[3] else ""
    plain = r[4] + " %" if r[4] else ""
    print("| %s | %s | %s | %s | %s | %s | %s |" % (label, r[2], r[5], r[6], r[7], plain, ones))
if "base" in rows: line("BASELINE (fp32)", rows["base"])
for b in ("3", "4"):
    for c in ("int", "int+outlier", "int+offset", "int+outlier+offset"):
        k = c + "/" + b
        if k in rows: line(names[c].format(b=b), rows[k])
EOF
