#!/usr/bin/env bash
# Installs every Debian 12 package that wfm's build, tests, benchmarks and Python bindings need.
# Idempotent: when everything is present it only runs `dpkg-query` and exits (well under a second).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev python3-torch libopenblas0-openmp
  ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev
  libabsl-dev libbenchmark-dev googletest libgtest-dev libgmock-dev
  pybind11-dev python3-dev python3-pytest python3-numpy
  nlohmann-json3-dev
  openmpi-bin libopenmpi-dev
  libsentencepiece-dev sentencepiece
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# OpenBLAS with OpenMP must win over the reference BLAS (matmul is ~30x faster).
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  cand=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-openmp | head -n1 || true)
  [[ -n "$cand" ]] && $SUDO update-alternatives --set "$alt" "$cand" >/dev/null || true
done
echo "install-deps: done" >&2
