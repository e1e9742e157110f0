#!/usr/bin/env bash
# Fresh Debian 12 -> the whole ramalloc test suite: installs what is missing, builds the
# Debug preset (2 jobs) and runs every test through ctest. Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset debug
cmake --build --preset debug -j 2
ctest --preset debug
