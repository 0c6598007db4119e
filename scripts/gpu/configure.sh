# Sourced by the scripts in scripts/gpu/ (run from the repository root on the GPU machine):
#   gpu_configure BUILD_DIR LOG
# configures the tree against PyTorch's libtorch for sm_90 (Release, RAZERQ_DATA_DIR from
# $RAZERQ_DATA), taking GoogleTest sources and libsentencepiece from .device/{googletest,lib,
# include} where the machine lacks them. On failure it prints the log's tail and exits.
# The common start of a device-call script (after `source`-ing this file): T0 (the start time),
# OUT (created; default /tmp/razerq-gpu), B=build-gpu, CUDA's bin/ on PATH, RAZERQ_DATA (default
# .device/data, the copy a call carries). LEFT prints the
# seconds left of the call's BUDGET (default 570), step a progress header with both times.
gpu_call_begin() {
  T0=$(date +%s)
  OUT=${OUT:-/tmp/razerq-gpu}
  mkdir -p "$OUT"
  B=build-gpu
  export PATH="$PATH:/usr/local/cuda/bin"
  export RAZERQ_DATA=${RAZERQ_DATA:-$PWD/.device/data}
}
LEFT() { echo $(( ${BUDGET:-570} - ($(date +%s) - T0) )); }
step() { echo; echo "== $1 (t=$(( $(date +%s) - T0 )) s, left $(LEFT) s)"; }

gpu_configure() {
  local b=$1 log=$2 tp
  local extra=()
  if [ ! -f /usr/src/googletest/CMakeLists.txt ] && ! ls /usr/lib/x86_64-linux-gnu/libgtest.a >/dev/null 2>&1; then
    echo "no GoogleTest here: using .device/googletest"
    extra+=(-DRAZERQ_GTEST_SOURCE_DIR="$PWD/.device/googletest")
  fi
  if ! ls /usr/lib/x86_64-linux-gnu/libsentencepiece.so* >/dev/null 2>&1 && ! ls /usr/lib/libsentencepiece.so* >/dev/null 2>&1; then
    echo "no libsentencepiece here: using .device/lib"
    ln -sf libsentencepiece.so.0 .device/lib/libsentencepiece.so
    extra+=(-DRAZERQ_SENTENCEPIECE_LIB="$PWD/.device/lib/libsentencepiece.so")
  fi
  [ -f /usr/include/sentencepiece_processor.h ] || extra+=(-DRAZERQ_SENTENCEPIECE_INCLUDE="$PWD/.device/include")
  tp=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  cmake -S . -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tp" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DRAZERQ_DATA_DIR="$RAZERQ_DATA" "${extra[@]}" >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
}
