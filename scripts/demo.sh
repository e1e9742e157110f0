#!/usr/bin/env bash
# Fresh Debian 12 -> the ramalloc demo: installs what is missing, builds the Release
# preset (2 jobs), runs examples/basic/demo.cpp (the five operations across two threads),
# then the quick peer comparison (bench/compare --quick: every workload under glibc,
# mimalloc, jemalloc, tcmalloc, tbb and ramalloc, about two minutes; it installs the
# peers' Debian packages if they are missing) and prints its tables.
# Works from any directory. RAMALLOC_DEMO_NO_BENCH=1 skips the comparison.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset release
cmake --build --preset release -j 2 --target ramalloc_demo
./build/release/examples/ramalloc_demo
if [ "${RAMALLOC_DEMO_NO_BENCH:-0}" != "1" ]; then
  echo
  echo "=== ramalloc against its peers (bench/compare --quick)"
  python3 bench/compare --quick
fi
