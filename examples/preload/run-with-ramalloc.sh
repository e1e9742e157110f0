#!/usr/bin/env bash
# Runs any program on ramalloc through LD_PRELOAD: malloc, free, new, delete and the rest
# of the family, in the program and in every library and child process it starts.
#
#   run-with-ramalloc.sh [--stats] [--json FILE] [--lib PATH] [--] PROGRAM [ARGS...]
#
#   --stats      print ramalloc's statistics table on stderr when each process exits
#                (RAMALLOC_SHOW_STATS=1)
#   --json FILE  write the same statistics as JSON to FILE (RAMALLOC_STATS_JSON)
#   --lib PATH   the libramalloc.so to use; otherwise $RAMALLOC_LIB, then a build tree
#                next to this script (build/release, build/debug), then the installed
#                library (ldconfig, /usr/local/lib, /usr/lib)
#
# Every RAMALLOC_* variable of the environment (RAMALLOC_PURGE_DELAY_MS,
# RAMALLOC_ON_INVALID, ...) reaches the program unchanged; see docs/tuning.md.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

lib=${RAMALLOC_LIB:-}
while (($#)); do
  case $1 in
    --stats) export RAMALLOC_SHOW_STATS=1; shift ;;
    --json) (($# >= 2)) || usage; export RAMALLOC_STATS_JSON=$2; shift 2 ;;
    --lib) (($# >= 2)) || usage; lib=$2; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "run-with-ramalloc: unknown option '$1'" >&2; usage ;;
    *) break ;;
  esac
done
(($#)) || usage

if [[ -z $lib ]]; then
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  candidates=("$here"/../../build/release/allocator/libramalloc.so
              "$here"/../../build/debug/allocator/libramalloc.so)
  if command -v ldconfig >/dev/null; then
    installed=$(ldconfig -p 2>/dev/null | awk '$1 == "libramalloc.so" { print $NF; exit }')
    [[ -n $installed ]] && candidates+=("$installed")
  fi
  candidates+=(/usr/local/lib/libramalloc.so /usr/local/lib64/libramalloc.so
               /usr/lib/x86_64-linux-gnu/libramalloc.so /usr/lib/libramalloc.so)
  for c in "${candidates[@]}"; do
    if [[ -f $c ]]; then lib=$c; break; fi
  done
fi
if [[ -z $lib || ! -f $lib ]]; then
  echo "run-with-ramalloc: libramalloc.so not found${lib:+ at $lib}; build it" \
       "(cmake --build --preset release) or pass --lib PATH" >&2
  exit 1
fi
lib=$(readlink -f "$lib")

# Keep whatever the caller already preloads, after ramalloc.
export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
exec "$@"
