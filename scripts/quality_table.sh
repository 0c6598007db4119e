#!/usr/bin/env bash
# Quality by calibrated stage: WikiText-2 and C4-new perplexity (GPTQ convention) of packed
# checkpoints made with each stage (RTN, GPTQ, AWQ, LWC, rotate+GPTQ) in each format, printed
# as Markdown tables (one pair per model) on stdout; progress on stderr.
#
#   scripts/quality_table.sh [--build DIR] [--device cpu|cuda] [--dtype fp32|fp16|bf16]
#                            [--models "llama-14m stories260K"] [--stages "rtn gptq awq lwc rotate+gptq"]
#                            [--formats "int4-asym int3 fp4 nf4 razer4 razer3 nvfp4 nvfp4-razer"]
#                            [--nsamples N] [--calib-seqlen N] [--max-windows N] [--work DIR]
#
# Paths are relative to the repository: the binary is DIR/apps/razerq (default build/), the data
# $RAZERQ_DATA (default ../shared/data). Evaluation: seqlen 2048 for llama-14m, 512 for
# stories260K (its context). Calibration: --nsamples (default 128) windows of --calib-seqlen
# (default: the evaluation seqlen) from C4 train, seed 0; calibrated stages run on --device.
# Checkpoints go to --work (default a temporary directory, removed at the end). With --work the
# raw results are kept in WORK/results.tsv and a rerun skips the (model, format, stage) entries
# already there: a long table can be made in pieces (e.g. one --formats per call, each under a
# time limit) and the last call prints the whole table (--table-only prints it without running
# anything). A stage the binary does not offer is reported as "n/a". Cells are perplexities;
# "bits" counts the stored scales.
#
# GPU machine (llama-14m, seqlen 2048):
#   scripts/quality_table.sh --build build --device cuda --dtype fp16 --models llama-14m
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
DEVICE=cpu
DTYPE=fp32
MODELS="llama-14m stories260K"
STAGES="rtn gptq awq lwc rotate+gptq"
FORMATS="int4-asym int3 fp4 nf4 razer4 razer3 nvfp4 nvfp4-razer"
NSAMPLES=128
CALIB_SEQLEN=
MAX_WINDOWS=
WORK_DIR=
TABLE_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$(cd "$2" && pwd); shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --dtype) DTYPE=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --stages) STAGES=$2; shift 2 ;;
    --formats) FORMATS=$2; shift 2 ;;
    --nsamples) NSAMPLES=$2; shift 2 ;;
    --calib-seqlen) CALIB_SEQLEN=$2; shift 2 ;;
    --max-windows) MAX_WINDOWS=$2; shift 2 ;;
    --work) WORK_DIR=$2; shift 2 ;;
    --table-only) TABLE_ONLY=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN=$BUILD/apps/razerq
DATA=${RAZERQ_DATA:-$ROOT/../shared/data}
[ -d "$DATA/models" ] || { echo "error: $DATA/models not found (set RAZERQ_DATA)" >&2; exit 1; }
source "$ROOT/scripts/table_common.sh"
table_work_setup
HELP=$("$BIN" quantize --help 2>&1 || true)

format_args() {  # label -> quantize arguments
  case "$1" in
    int4-asym) echo "--format int --bits 4 --asym --group 128" ;;
    int3) echo "--format int --bits 3 --group 128" ;;
    fp4) echo "--format fp4 --group 128" ;;
    nf4) echo "--format nf4 --group 128" ;;
    razer4) echo "--format razer --bits 4 --group 128" ;;
    razer3) echo "--format razer --bits 3 --group 128" ;;
    nvfp4) echo "--format nvfp4" ;;
    nvfp4-razer) echo "--format nvfp4-razer" ;;
    *) echo "error: unknown format label $1" >&2; exit 2 ;;
  esac
}
stage_args() {  # stage -> quantize arguments
  case "$1" in
    rtn) echo "" ;;
    gptq) echo "--gptq" ;;
    awq) echo "--awq" ;;
    lwc) echo "--lwc" ;;
    rotate+gptq) echo "--rotate --gptq" ;;
    *) echo "error: unknown stage $1" >&2; exit 2 ;;
  esac
}
model_dir() {
  case "$1" in
    llama-14m) echo "$DATA/models/llama-14m" ;;
    stories260K) echo "$DATA/models/stories260K/hf" ;;
    *) echo "$1" ;;  # a path
  esac
}
model_seqlen() { case "$1" in stories260K) echo 512 ;; *) echo 2048 ;; esac; }

evaluate() {  # MODEL FORMAT STAGE PATH SEQLEN BPW -> one TSV line: model format stage bpw wikitext2 c4-new
  local ppl
  ppl=$(table_ppl "$4" "$5" wikitext2 c4-new)
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$6" "$ppl" >> "$TSV"
}

for m in $MODELS; do
  [ "$TABLE_ONLY" = 1 ] && break
  dir=$(model_dir "$m")
  [ -d "$dir" ] || { echo "error: model $m not found at $dir" >&2; exit 1; }
  seqlen=$(model_seqlen "$m")
  cseq=${CALIB_SEQLEN:-$seqlen}
  if ! table_done "$m" base fp; then
    echo "== $m base" >&2
    evaluate "$m" "base" "fp" "$dir" "$seqlen" "16"
  fi
  for f in $FORMATS; do
    fargs=$(format_args "$f")
    for s in $STAGES; do
      table_done "$m" "$f" "$s" && continue
      sargs=$(stage_args "$s")
      flag=${sargs%% *}
      if [ -n "$flag" ] && ! grep -q -- "$flag" <<< "$HELP"; then
        printf '%s\t%s\t%s\t-\tn/a\tn/a\n' "$m" "$f" "$s" >> "$TSV"
        continue
      fi
      out=$WORK_DIR/$m-$f-${s/+/_}
      echo "== $m $f $s" >&2
      # shellcheck disable=SC2086
      "$BIN" -q quantize "$dir" $fargs $sargs -o "$out" --force --no-checksums \
        ${sargs:+--nsamples "$NSAMPLES" --calib-seqlen "$cseq" --device "$DEVICE"} >&2
      bpw=$(table_bpw "$out")
      evaluate "$m" "$f" "$s" "$out" "$seqlen" "$bpw"
      [ "$KEEP" = 1 ] || rm -rf "$out"
    done
  done
done

/usr/bin/python3 - "$TSV" "$STAGES" "$DEVICE" "$DTYPE" "$NSAMPLES" "$CALIB_SEQLEN" "$MAX_WINDOWS" <<'PY'
import sys
from collections import OrderedDict
path, stages, device, dtype, nsamples, cseq, maxw = sys.argv[1:8]
stages = stages.split()
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
models = OrderedDict()
for m, f, s, bpw, w, c in rows:
    models.setdefault(m, OrderedDict()).setdefault(f, {})[s] = (bpw, w, c)
for m, fm in models.items():
    base = fm.pop("base", {}).get("fp", ("16", "?", "?"))
    for ds, k in (("WikiText-2", 1), ("C4-new", 2)):
        subset = ", first %s windows of each set" % maxw if maxw else ""
        print("\n%s, %s perplexity (%s %s%s; calibration %s x %s C4 windows)\n" % (m, ds, device, dtype, subset, nsamples, cseq or "eval seqlen"))
        print("| format | bits | " + " | ".join(s.upper() if "+" not in s else s.replace("gptq", "GPTQ") for s in stages) + " |")
        print("|---|---:|" + "---:|" * len(stages))
        print("| fp (unquantized) | 16 | " + " | ".join([base[k]] + ["" for _ in stages[1:]]) + " |")
        for f, st in fm.items():
            bpw = next((v[0] for v in st.values() if v[0] not in ("-", "")), "-")
            print("| %s | %s | " % (f, bpw) + " | ".join(st.get(s, ("", "", ""))[k] for s in stages) + " |")
PY
