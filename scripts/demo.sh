#!/usr/bin/env bash
# Fresh Debian 12 -> the ramalloc demo: installs what is missing, builds the Release
# preset (2 jobs), then runs the MMO-style shard server (examples/shard_server, on the
# ramalloc::io kit) under 100 load bots for about 20 seconds and prints its table: zone
# tick time p50/p99/p99.9/max, the bots' ping and move round trips, RSS at start, peak
# and after the churn (bench/shard/run --demo). Then the quick peer comparison
# (bench/compare --quick: every allocator workload under glibc, mimalloc, jemalloc,
# tcmalloc, tbb and ramalloc, about two minutes; it installs the peers' Debian packages if
# they are missing) and its tables.
# Works from any directory. RAMALLOC_DEMO_NO_BENCH=1 skips the comparison;
# RAMALLOC_DEMO_SECONDS (default 20) sets the bots' play time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset release
echo "=== the shard server under 100 bots for ${RAMALLOC_DEMO_SECONDS:-20} s (bench/shard/run --demo)"
python3 bench/shard/run --demo --no-install --build-dir build/release \
        --duration "${RAMALLOC_DEMO_SECONDS:-20}"
if [ "${RAMALLOC_DEMO_NO_BENCH:-0}" != "1" ]; then
  echo
  echo "=== ramalloc against its peers (bench/compare --quick)"
  python3 bench/compare --quick
fi
