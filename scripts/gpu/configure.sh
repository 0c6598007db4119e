# Sourced by the scripts in scripts/gpu/ (run from the repository root on the GPU machine):
#   gpu_configure BUILD_DIR LOG
# configures the tree against PyTorch's libtorch for sm_90 (Release, RAZERQ_DATA_DIR from
# $RAZERQ_DATA), taking GoogleTest sources and libsentencepiece from .device/{googletest,lib,
# include} where the machine lacks them. On failure it prints the log's tail and exits.
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
