#!/usr/bin/env bash
# Installs what ramalloc needs on Debian 12, and only what is missing.
#
#   scripts/setup.sh               build tools, GoogleTest, Asio, spdlog and fmt, valgrind
#   scripts/setup.sh --sanitizers  also clang and its sanitizer runtimes: libFuzzer for
#                                  tests/fuzz (scripts/test.sh uses it); the asan/tsan
#                                  presets use gcc, whose runtimes come with g++
#
# Each package is checked with dpkg; apt-get (update once, then install) runs only when
# something is missing. Needs root, or sudo when run as another user.
set -euo pipefail

# time, git and python3 are for the LD_PRELOAD tests (tests/preload), which run real programs.
# libasio-dev (standalone Asio 1.22) and libspdlog-dev/libfmt-dev are for the integration
# kit (integration/, ramalloc::io), its tests, the echo server and the Asio benchmark.
# valgrind: memcheck and its client-request headers, for RAMALLOC_VALGRIND=ON and the
# tests in tests/valgrind (scripts/test.sh runs them).
required=(build-essential cmake ninja-build g++ libgtest-dev time git python3
          libasio-dev libspdlog-dev libfmt-dev valgrind)
sanitizer_extras=(clang libclang-rt-14-dev)

packages=("${required[@]}")
for arg in "$@"; do
  case "$arg" in
    --sanitizers) packages+=("${sanitizer_extras[@]}") ;;
    -h|--help)
      sed -n '2,10p' "$0"
      exit 0
      ;;
    *)
      echo "setup.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

is_installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

missing=()
for pkg in "${packages[@]}"; do
  if ! is_installed "$pkg"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all needed packages are installed (${packages[*]})"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing packages: ${missing[*]}; no apt-get here, install them yourself" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup: missing packages: ${missing[*]}; run as root or install sudo" >&2
  exit 1
fi

echo "setup: installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  "${missing[@]}"
