#!/usr/bin/env bash
# Builds bench_quantize_cpu and runs it; the table goes to stdout and to bench/quantize_cpu.md,
# headed by the date, the machine, the compiler and the exact command.
#   bench/quantize_cpu.sh [BUILD_DIR] [--quick] [--formats a,b,...]
# BUILD_DIR (default build/) is reused when configured, else configured (Ninja, Release).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command="bench/quantize_cpu.sh"
for a in "$@"; do command+=" $(printf '%q' "$a")"; done
build="$root/build"
if [[ $# -gt 0 && $1 != -* ]]; then build="$(cd "$1" 2>/dev/null && pwd || echo "$1")"; shift; fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --target bench_quantize_cpu >&2

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
cxx="$(cache CMAKE_CXX_COMPILER)"
out="$root/bench/quantize_cpu.md"
trap 'rm -f "$out.tmp"' EXIT  # a failed run leaves the previous table in place
{
  echo "# quantize_tensor CPU throughput"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- nproc: $(nproc)"
  echo "- CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
  echo "- compiler: $("$cxx" --version | head -n1) ($(cache CMAKE_BUILD_TYPE), RAZERQ_NATIVE=$(cache RAZERQ_NATIVE))"
  echo "- load average before the run (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`$command\`"
  echo
  "$build/bench/bench_quantize_cpu" "$@"
} | tee "$out.tmp"
mv "$out.tmp" "$out"
