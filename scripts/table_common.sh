# Sourced by the resumable table scripts (quality_table.sh, lut_table.sh, oa_table.sh): the
# work directory and its results.tsv, the "already done" check, and one evaluation as TSV
# columns. Uses the caller's BIN, WORK_DIR, DEVICE, DTYPE and MAX_WINDOWS.

# Checks that BIN exists. WORK_DIR given: keep it and its results.tsv (a rerun resumes); else a
# temporary directory, removed at exit, with a fresh results.tsv. Sets KEEP and TSV.
table_work_setup() {
  [ -x "$BIN" ] || { echo "error: $BIN not found (build the razerq target, or pass --build DIR)" >&2; exit 1; }
  KEEP=1
  if [ -z "$WORK_DIR" ]; then WORK_DIR=$(mktemp -d); KEEP=0; trap 'rm -rf "$WORK_DIR"' EXIT; fi
  mkdir -p "$WORK_DIR"
  TSV=$WORK_DIR/results.tsv
  if [ "$KEEP" = 1 ]; then touch "$TSV"; else : > "$TSV"; fi
}

# table_done V1 [V2 ...]: whether results.tsv has a line whose first columns are V1, V2, ...
table_done() {
  local key
  key=$(printf '%s\t' "$@")
  awk -v k="$key" 'index($0 "\t", k) == 1 { found = 1 } END { exit !found }' "$TSV"
}

# table_ppl PATH SEQLEN DATASET...: runs `razerq eval` (its JSON echoed to stderr) and prints the
# perplexities, tab-separated, "%.4f", in the order of the datasets.
table_ppl() {
  local path=$1 seqlen=$2 json
  shift 2
  local extra=()
  [ -n "$MAX_WINDOWS" ] && extra+=(--max-windows "$MAX_WINDOWS")
  json=$("$BIN" eval "$path" --ppl "$@" --seqlen "$seqlen" --device "$DEVICE" --dtype "$DTYPE" --json "${extra[@]}")
  echo "$json" >&2
  echo "$json" | /usr/bin/python3 -c '
import json, sys
r = {x["dataset"]: x["ppl"] for x in json.load(sys.stdin)["results"]}
print("\t".join("%.4f" % r[d] for d in sys.argv[1:]))' "$@"
}

# table_bpw CHECKPOINT: inspect's bits/weight of the quantized tensors, "%.3f".
table_bpw() {
  "$BIN" inspect "$1" --json | /usr/bin/python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["summary"]["bits_per_weight_quantized"])'
}
