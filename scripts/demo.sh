#!/usr/bin/env bash
# Set-up plus the main job: installs the Debian packages razerq needs, builds it (Release),
# quantizes the test model llama-14m to RaZeR W4 g128 and prints the per-layer summary.
# Idempotent. Environment: RAZERQ_DATA (default ../shared/data), RAZERQ_BUILD (default build/).
set -euo pipefail
source "$(dirname "$0")/setup_common.sh"
razerq_install
razerq_build -DRAZERQ_BUILD_TESTS=OFF
razerq_check_data

out="$RAZERQ_ROOT/out/llama-14m-razer4-g128"
mkdir -p "$RAZERQ_ROOT/out"
"$RAZERQ_BUILD/apps/razerq" quantize "$RAZERQ_DATA/models/llama-14m" \
  --format razer --bits 4 --group 128 -o "$out" --force --compare-reference
echo
"$RAZERQ_BUILD/apps/razerq" inspect "$out" --verify
