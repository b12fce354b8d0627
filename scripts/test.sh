#!/usr/bin/env bash
# The test suite, from a fresh machine: install dependencies, build, run every CTest label that
# applies here (unit, e2e, mpi; gpu tests skip themselves without a device), then rebuild the
# unit and end-to-end tests with AddressSanitizer + UndefinedBehaviorSanitizer and run them again.
# Set DAPE_SKIP_SANITIZE=1 to skip the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/install-deps.sh
# CUDA back on wherever nvcc is (the demo may have configured build/ without it).
bash scripts/build.sh -DDAPE_WERROR=ON -DDAPE_CUDA="${DAPE_CUDA:-AUTO}"
# Serially: each test already uses every core (OpenMP), and oversubscribed OpenMP threads
# spin-wait each other to a crawl.
(cd build && ctest --output-on-failure --timeout 900)
if [ "${DAPE_SKIP_SANITIZE:-0}" != "1" ]; then
  DAPE_BUILD_DIR=build-sanitize bash scripts/build.sh -DCMAKE_BUILD_TYPE=Debug -DDAPE_SANITIZE=ON \
    -DDAPE_CUDA=OFF -DDAPE_WERROR=ON
  (cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 ctest -L unit --output-on-failure --timeout 900)
  # The end-to-end tests start processes under mpirun, where Open MPI's own allocations live
  # until exit: scripts/lsan-openmpi.supp says which leaks are Open MPI's.
  (cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 OMPI_MCA_mca_base_component_disable_dlclose=1 \
    LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan-openmpi.supp:fast_unwind_on_malloc=0" \
    ctest -L e2e --output-on-failure --timeout 900)
fi
echo "test.sh: all tests passed"
