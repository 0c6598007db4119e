#!/usr/bin/env bash
# Set-up plus the tests: installs the Debian packages razerq needs, builds everything (Release,
# CUDA code compiled when nvcc exists) and runs ctest. GPU tests (label "gpu") skip with a
# reason on a machine without a GPU. Idempotent. Environment as scripts/demo.sh.
set -euo pipefail
source "$(dirname "$0")/setup_common.sh"
razerq_install
razerq_build -DRAZERQ_BUILD_TESTS=ON
razerq_check_data
cd "$RAZERQ_BUILD"
ctest --output-on-failure -j "$(nproc)" --timeout 900
