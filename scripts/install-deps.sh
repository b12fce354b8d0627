#!/usr/bin/env bash
# Installs the Debian packages dape builds and runs with (DESIGN.md §6). Idempotent: does
# nothing when everything is present. Needs root or sudo.
set -euo pipefail

PACKAGES=(
  cmake g++ make pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libdnnl-dev
  # Debian 12's libdnnl-dev (oneDNN 2.6) asks for OpenCL in its CMake config (dnnl-config.cmake
  # calls find_package(OpenCL)) without depending on a package that provides the headers and the
  # libOpenCL.so link: without these, configure stops at "Could NOT find OpenCL".
  ocl-icd-opencl-dev opencl-headers
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libcli11-dev
  libzstd-dev zstd libsimdjson-dev libsentencepiece-dev libxxhash-dev
  python3 python3-numpy python3-matplotlib
  bible-kjv
)

# The CUDA build's NCCL (parallel/nccl): where nvcc is installed but nccl.h is not beside it nor
# in the system include directories, NVIDIA's libnccl-dev (from NVIDIA's CUDA apt repository).
if command -v nvcc >/dev/null; then
  cuda_root=$(dirname "$(dirname "$(command -v nvcc)")")
  have_nccl=0
  for h in "$cuda_root/include/nccl.h" /usr/include/nccl.h /usr/local/include/nccl.h; do
    [ ! -f "$h" ] || have_nccl=1
  done
  [ "$have_nccl" -eq 1 ] || PACKAGES+=(libnccl-dev libnccl2)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
