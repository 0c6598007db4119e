#!/usr/bin/env bash
# Syntax-checks the RAZERQ_TORCH_CUDA code (libtorch's CUDA streams, guards and graphs, and what
# it enables, e.g. eval::Model's decode kernels) on a machine whose libtorch has no CUDA: Debian's
# libtorch 1.13 ships the c10/cuda and ATen/cuda headers but not the generated
# c10/cuda/impl/cuda_cmake_macros.h, stubbed here. Runs g++ -fsyntax-only with RAZERQ_HAS_CUDA=1
# and RAZERQ_TORCH_CUDA=1 and the project's warning flags on each file (default: the torch
# sources of eval/ that have such code, and apps/cmd_bench.cpp). Code under TORCH_VERSION_MAJOR
# >= 2 is still not seen (these are 1.13 headers); the real check is the GPU machine's build.
#   scripts/check_torch_cuda_syntax.sh [FILE...]   (from the repository root)
set -u
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
mkdir -p "$stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$stub/c10/cuda/impl/cuda_cmake_macros.h"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(eval/model.cpp eval/decode.cpp apps/cmd_bench.cpp)
rc=0
for f in "${files[@]}"; do
  if g++ -fsyntax-only -std=c++17 -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GLIBCXX_USE_CXX11_ABI=1 \
      -DRAZERQ_HAS_CUDA=1 -DRAZERQ_TORCH_CUDA=1 -I. -isystem /usr/include/torch/csrc/api/include \
      -isystem /usr/local/cuda/include -isystem "$stub" "$f"; then
    echo "ok      $f"
  else
    echo "FAILED  $f"
    rc=1
  fi
done
exit $rc
