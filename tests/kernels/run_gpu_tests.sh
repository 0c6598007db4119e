#!/usr/bin/env bash
# Builds and runs the kernel tests on a machine with a GPU (e.g. through the device tool):
# prints the environment, configures, builds only test_kernels and test_kernels_cuda, runs
# both, runs compute-sanitizer memcheck on the CUDA test (the throughput test left out), and
# ends with a compact summary. Full logs go to $OUT (or /tmp/razerq-gpu-logs).
#   usage: bash tests/kernels/run_gpu_tests.sh [build-dir]   (from the repository root)
set -u
B=${1:-build-gpu}
LOGS=${OUT:-/tmp/razerq-gpu-logs}
mkdir -p "$LOGS"
export PATH="$PATH:/usr/local/cuda/bin"
J=$(nproc)

echo "== environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
nvcc --version 2>&1 | tail -1
cmake --version 2>&1 | head -1
g++ --version 2>&1 | head -1
for f in /usr/lib/x86_64-linux-gnu/libgtest.a /usr/src/googletest/CMakeLists.txt /usr/include/gtest/gtest.h \
         /usr/include/eigen3/Eigen/Core /usr/include/nlohmann/json.hpp /usr/include/CLI/CLI.hpp \
         /usr/include/spdlog/spdlog.h; do
  if [ -e "$f" ]; then echo "have    $f"; else echo "MISSING $f"; fi
done
command -v compute-sanitizer >/dev/null && echo "have    $(command -v compute-sanitizer)" || echo "MISSING compute-sanitizer"

GEN=Ninja
command -v ninja >/dev/null || GEN="Unix Makefiles"
echo "== configure ($GEN)"
t0=$(date +%s)
timeout 150 cmake -S . -B "$B" -G "$GEN" -DCMAKE_BUILD_TYPE=Release >"$LOGS/configure.log" 2>&1
cfg=$?
grep -E "razerq:|GoogleTest|CUDA compiler identification" "$LOGS/configure.log"
[ $cfg -ne 0 ] && tail -30 "$LOGS/configure.log"
bld=1
if [ $cfg -eq 0 ]; then
  echo "== build"
  timeout 300 cmake --build "$B" -j "$J" --target test_kernels test_kernels_cuda >"$LOGS/build.log" 2>&1
  bld=$?
  [ $bld -ne 0 ] && grep -E "error|Error" "$LOGS/build.log" | head -30
  echo "build rc=$bld in $(( $(date +%s) - t0 )) s, warnings: $(grep -c 'warning' "$LOGS/build.log")"
fi

t_cpu=-1; t_gpu=-1; t_mc=-1
if [ $bld -eq 0 ]; then
  echo "== test_kernels"
  timeout 60 "$B/tests/kernels/test_kernels" --gtest_brief=1 >"$LOGS/test_kernels.log" 2>&1
  t_cpu=$?
  tail -4 "$LOGS/test_kernels.log"
  echo "== test_kernels_cuda"
  timeout 150 "$B/tests/kernels/test_kernels_cuda" >"$LOGS/test_kernels_cuda.log" 2>&1
  t_gpu=$?
  grep -E "^\[ (device|perf) |FAILED|Failure" "$LOGS/test_kernels_cuda.log" | head -40
  grep -m2 -A1 "Skipped" "$LOGS/test_kernels_cuda.log"
  tail -3 "$LOGS/test_kernels_cuda.log"
  echo "== compute-sanitizer memcheck (test_kernels_cuda, throughput test left out)"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$B/tests/kernels/test_kernels_cuda" --gtest_filter=-*Throughput* --gtest_brief=1 >"$LOGS/memcheck.log" 2>&1
  t_mc=$?
  tail -6 "$LOGS/memcheck.log"
fi

echo "== summary"
echo "configure rc=$cfg  build rc=$bld"
printf 'test_kernels       rc=%s  %s\n' "$t_cpu" "$(grep -E '^\[  PASSED  \]|tests? from .* ran' "$LOGS/test_kernels.log" 2>/dev/null | tr '\n' ' ')"
printf 'test_kernels_cuda  rc=%s  %s  skipped=%s\n' "$t_gpu" \
  "$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]' "$LOGS/test_kernels_cuda.log" 2>/dev/null | tr '\n' ' ')" \
  "$(grep -c '^\[  SKIPPED \]' "$LOGS/test_kernels_cuda.log" 2>/dev/null)"
printf 'memcheck           rc=%s  %s\n' "$t_mc" "$(grep -E 'ERROR SUMMARY' "$LOGS/memcheck.log" 2>/dev/null | tail -1)"
