#!/usr/bin/env bash
# Fresh Debian 12 -> the whole ramalloc test suite: installs what is missing, then builds
# and runs every test three times over (2 jobs each):
#   debug  assertions and loop-step counters on; every test, the LD_PRELOAD and
#          override suites included
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan   ThreadSanitizer
# (The sanitizer builds leave out the override and LD_PRELOAD tests: ASan and TSan
# replace malloc themselves.) Works from any directory.
#
# RAMALLOC_TEST_PRESETS="debug" runs a subset (default: "debug asan tsan").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
for preset in ${RAMALLOC_TEST_PRESETS:-debug asan tsan}; do
  echo "=== ${preset}: configure, build, test"
  cmake --preset "${preset}"
  cmake --build --preset "${preset}" -j 2
  ctest --preset "${preset}"
done
