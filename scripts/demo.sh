#!/usr/bin/env bash
# Fresh Debian 12 -> the ramalloc demo: installs what is missing, builds the Release
# preset (2 jobs) and runs examples/basic/demo.cpp. Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset release
cmake --build --preset release -j 2 --target ramalloc_demo
./build/release/examples/ramalloc_demo
