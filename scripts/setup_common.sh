# Shared by scripts/demo.sh and scripts/test.sh: install what razerq needs (Debian packages),
# configure and build. Idempotent: packages already present are not reinstalled, the build
# directory is reused.

RAZERQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAZERQ_BUILD="${RAZERQ_BUILD:-$RAZERQ_ROOT/build}"
RAZERQ_DATA="${RAZERQ_DATA:-$RAZERQ_ROOT/../shared/data}"
export RAZERQ_DATA

# libopenblas0-pthread: Debian's libtorch calls BLAS through the libblas.so.3 alternative, which
# is the reference BLAS unless OpenBLAS is installed (measured here: fp32 matmul 3 -> 165 GFLOP/s).
RAZERQ_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libeigen3-dev libcli11-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libsentencepiece-dev libgtest-dev python3-numpy
)

razerq_install() {
  local missing=()
  for p in "${RAZERQ_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "razerq: all packages present"
    return
  fi
  echo "razerq: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

razerq_build() {
  local jobs
  jobs="$(nproc)"
  cmake -S "$RAZERQ_ROOT" -B "$RAZERQ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$RAZERQ_BUILD" -j "$jobs"
}

razerq_check_data() {
  if [ ! -f "$RAZERQ_DATA/models/llama-14m/config.json" ]; then
    echo "razerq: data not found at $RAZERQ_DATA (set RAZERQ_DATA to the shared/data folder)" >&2
    exit 1
  fi
}
