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
# Then the fuzzers: tests/fuzz/ is configured with clang in build/fuzz (libFuzzer, with
# ASan+UBSan), and each target runs from its checked-in seed corpus (the allocator's two
# for RAMALLOC_FUZZ_SECONDS, default 50; the shard frame decoder for 20), after a replay
# of every seed and crash reproducer, two at a time (about 2 minutes with the build).
# RAMALLOC_TEST_FUZZ=0 skips this step.
#
# Then Valgrind: a small RelWithDebInfo tree with RAMALLOC_VALGRIND=ON in build/valgrind,
# only the programs of tests/valgrind built, each run under memcheck (ctest -L valgrind:
# one known bug per run must be reported, the clean runs must report nothing; well under
# a minute). RAMALLOC_TEST_VALGRIND=0 skips this step.
#
# RAMALLOC_TEST_PRESETS="debug" runs a subset (default: "debug asan tsan").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${RAMALLOC_TEST_FUZZ:-1}" != 0 ]; then
  bash scripts/setup.sh --sanitizers # clang + libclang-rt-14-dev for libFuzzer
else
  bash scripts/setup.sh
fi
for preset in ${RAMALLOC_TEST_PRESETS:-debug asan tsan}; do
  echo "=== ${preset}: configure, build, test"
  cmake --preset "${preset}"
  cmake --build --preset "${preset}" -j 2
  ctest --preset "${preset}"
done

if [ "${RAMALLOC_TEST_VALGRIND:-1}" != 0 ]; then
  echo "=== valgrind: configure (RAMALLOC_VALGRIND=ON), build tests/valgrind, run under memcheck"
  cmake -S . -B build/valgrind -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAMALLOC_VALGRIND=ON \
        -DRAMALLOC_BUILD_IO=OFF -DRAMALLOC_BUILD_EXAMPLES=OFF
  cmake --build build/valgrind -j 2 --target ramalloc_valgrind_tests
  ctest --test-dir build/valgrind --output-on-failure -L valgrind -j 2
fi

if [ "${RAMALLOC_TEST_FUZZ:-1}" != 0 ]; then
  echo "=== fuzz: configure (clang), build, run each fuzzer for ${RAMALLOC_FUZZ_SECONDS:-50} s"
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DRAMALLOC_BUILD_FUZZERS=ON -DRAMALLOC_BUILD_TESTS=OFF -DRAMALLOC_BUILD_EXAMPLES=OFF \
        -DRAMALLOC_FUZZ_SECONDS="${RAMALLOC_FUZZ_SECONDS:-50}"
  cmake --build build/fuzz -j 2
  ctest --test-dir build/fuzz --output-on-failure -L fuzz -j 2 # one fuzzer per core
fi
