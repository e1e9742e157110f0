#!/usr/bin/env bash
# shellcheck disable=SC2317  # prepare_NAME and case_NAME are called by name
# Runs real programs twice -- on glibc's malloc, then with LD_PRELOAD=libramalloc.so --
# and requires exactly the same output: stdout, stderr (with the run's own directory
# normalised) and exit code. Prints the time and peak RSS of both runs for information.
#
#   run_preload_tests.sh LIBRAMALLOC WORKDIR [PROGRAM...]
#
# PROGRAM is any of: python3 sort git gxx cmake (default: all of them).
#   python3  a threaded script that builds, sorts and hashes a few hundred MB of objects
#            (workload.py, with PYTHONMALLOC=malloc so every object goes through malloc)
#   sort     GNU sort of a generated 200 MB file (external merge with a 96 MB buffer)
#   git      init, 30 commits, log, diff, blame, grep, gc, fsck on a generated repository
#   gxx      g++ -O2 of compile_me.cpp: same object file, same program output
#   cmake    configure and build cmake_project/ (compiler probes, checks, Threads)
#
# Environment:
#   RAMALLOC_PRELOAD_SCALE  scales the python, sort and git workloads (default 1; e.g.
#                           0.25 on a slow machine)
#   CMAKE_COMMAND           the cmake to run for the cmake workload (default: cmake)
#   RAMALLOC_CMAKE_GENERATOR  its generator (default: Ninja when ninja exists)
#
# Exit status: 0 all identical, 1 a difference or a failure, 77 every requested program
# is missing from this machine (ctest reports the test as skipped).
set -uo pipefail

if (($# < 2)); then
  sed -n '3,25p' "$0" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$(readlink -f "$1")
work=$2
shift 2
programs=("$@")
((${#programs[@]})) || programs=(python3 sort git gxx cmake)
scale=${RAMALLOC_PRELOAD_SCALE:-1}
# Set when the script runs itself as one measured case (see run_once).
case_name=${RAMALLOC_PRELOAD_CASE:-}
unset RAMALLOC_PRELOAD_CASE
if [[ -z $case_name ]]; then
  # The glibc run must really be on glibc, whatever the caller's environment.
  unset LD_PRELOAD RAMALLOC_SHOW_STATS RAMALLOC_STATS_JSON
fi

gnu_time=
if [[ -z $case_name ]]; then
  if [[ ! -f $lib ]]; then
    echo "run_preload_tests: no library at '$1'" >&2
    exit 1
  fi
  if ! awk -v s="$scale" 'BEGIN { exit !(s > 0 && s <= 100) }'; then
    echo "run_preload_tests: RAMALLOC_PRELOAD_SCALE='$scale' is not a number in (0, 100]" >&2
    exit 1
  fi
  mkdir -p "$work"
  work=$(cd "$work" && pwd)
  # GNU time gives elapsed time and peak RSS (of the program and of every child it
  # waited for); without it only the time is measured.
  if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%e' -o /dev/null true 2>/dev/null; then
    gnu_time=/usr/bin/time
  fi
fi

# --- the workloads ---------------------------------------------------------------------
# prepare_NAME: checks that the program exists (returns 77 when not) and builds shared
# inputs once. case_NAME RUNDIR: the measured command, run with RUNDIR as its working
# directory, once per allocator.

python=
prepare_python3() {
  command -v python3 >/dev/null || return 77
  # The real interpreter, not a version-manager shim (a shell script).
  python=$(python3 -c 'import sys; print(sys.executable)') || return 1
}
case_python3() {
  PYTHONMALLOC=malloc PYTHONHASHSEED=0 exec "$python" "$here/workload.py" "$scale"
}

sort_input=
prepare_sort() {
  command -v sort >/dev/null || return 77
  local mb
  mb=$(awk -v s="$scale" 'BEGIN { n = int(200 * s); print (n < 1 ? 1 : n) }')
  sort_input=$work/inputs/sort-input-${mb}MB.txt
  [[ -f $sort_input.done ]] && return 0
  mkdir -p "$work/inputs"
  # About 40.7 bytes a line; mawk and gawk both give a fixed sequence for a fixed seed.
  awk -v lines=$((mb * 25760)) 'BEGIN {
    srand(20240601);
    n = split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima " \
              "mike november oscar papa quebec romeo sierra tango uniform victor whiskey " \
              "xray yankee zulu", w, " ");
    for (i = 0; i < lines; i++)
      printf "%s %s%d %08x %s %d.%03d\n", w[int(rand() * n) + 1], w[int(rand() * n) + 1],
             int(rand() * 1000), int(rand() * 4294967295), w[int(rand() * n) + 1],
             int(rand() * 100000), i % 1000
  }' >"$sort_input" || return 1
  touch "$sort_input.done"
}
case_sort() {
  mkdir -p tmp
  LC_ALL=C sort --parallel=2 -S 96M -T tmp "$sort_input" -o sorted.txt || return
  wc -l <sorted.txt
  sha256sum <sorted.txt
  head -n 2 sorted.txt
  tail -n 2 sorted.txt
  rm -f sorted.txt
}

prepare_git() { command -v git >/dev/null || return 77; }
case_git() { exec bash "$here/git_workload.sh" "$PWD/git" "$scale"; }

prepare_gxx() { command -v g++ >/dev/null || return 77; }
case_gxx() {
  g++ -std=c++20 -O2 -frandom-seed=ramalloc -c "$here/compile_me.cpp" -o prog.o || return
  g++ prog.o -o prog || return
  sha256sum prog.o prog
  ./prog
}

cmake_bin=
prepare_cmake() {
  cmake_bin=${CMAKE_COMMAND:-$(command -v cmake)} || return 77
  [[ -x $cmake_bin ]] || return 77
  command -v c++ >/dev/null || return 77
}
case_cmake() {
  local generator=${RAMALLOC_CMAKE_GENERATOR:-}
  if [[ -z $generator ]]; then
    if command -v ninja >/dev/null; then generator=Ninja; else generator="Unix Makefiles"; fi
  fi
  "$cmake_bin" -S "$here/cmake_project" -B build -G "$generator" || return
  "$cmake_bin" --build build || return
  ./build/preload_demo || return
  cat build/config.h
}

# Re-invoked by itself (below) so that time and LD_PRELOAD wrap one process tree.
if [[ -n $case_name ]]; then
  eval "$RAMALLOC_PRELOAD_STATE"
  unset RAMALLOC_PRELOAD_STATE
  "case_$case_name"
  exit
fi

# --- running and comparing -------------------------------------------------------------

human_kb() { awk -v k="$1" 'BEGIN { if (k == "") print "n/a"; else if (k >= 1048576) printf "%.2f GiB", k / 1048576; else printf "%.0f MiB", k / 1024 }'; }

# run_once NAME MODE: runs case NAME in a fresh WORK/NAME/MODE; leaves MODE.out/.err/.rc
# (normalised) and MODE.time ("seconds kilobytes") beside it.
run_once() {
  local name=$1 mode=$2
  local dir=$work/$name/$mode
  rm -rf "$dir"
  mkdir -p "$dir"
  local -a env_cmd=(env)
  if [[ $mode == ramalloc ]]; then
    # Any bad free would be a bug: make it fatal (and so visible) whatever the build type.
    env_cmd+=(LD_PRELOAD="$lib" RAMALLOC_ON_INVALID=abort RAMALLOC_STATS_JSON="$dir.stats.json")
    rm -f "$dir.stats.json"
  fi
  local state
  state=$(declare -p python sort_input cmake_bin scale here)
  local -a cmd=("${env_cmd[@]}" RAMALLOC_PRELOAD_CASE="$name" RAMALLOC_PRELOAD_STATE="$state"
                bash "$here/run_preload_tests.sh" "$lib" "$work")
  local rc start end
  if [[ -n $gnu_time ]]; then
    (cd "$dir" && "$gnu_time" -f '%e %M' -o "$dir.time" "${cmd[@]}" >"$dir.out.raw" 2>"$dir.err.raw")
    rc=$?
  else
    start=$(date +%s.%N)
    (cd "$dir" && "${cmd[@]}" >"$dir.out.raw" 2>"$dir.err.raw")
    rc=$?
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }' >"$dir.time"
  fi
  echo "$rc" >"$dir.rc"
  # GNU time notes a non-zero status in its output file: keep only the figures.
  tail -n 1 "$dir.time" >"$dir.time.tmp" && mv "$dir.time.tmp" "$dir.time"
  local f
  for f in out err; do
    sed -e "s|$dir|<RUN>|g" -e "s|$work|<WORK>|g" "$dir.$f.raw" >"$dir.$f"
  done
}

rows=()
failed=0
ran=0
for name in "${programs[@]}"; do
  if ! declare -F "case_$name" >/dev/null; then
    echo "run_preload_tests: unknown program '$name' (python3 sort git gxx cmake)" >&2
    exit 2
  fi
  "prepare_$name"
  status=$?
  if ((status == 77)); then
    rows+=("$(printf '%-8s %-10s' "$name" "skipped (not installed)")")
    continue
  elif ((status != 0)); then
    rows+=("$(printf '%-8s %-10s' "$name" "FAILED: could not prepare its input")")
    failed=1
    continue
  fi
  ran=1
  run_once "$name" glibc
  run_once "$name" ramalloc
  base=$work/$name/glibc
  ours=$work/$name/ramalloc
  verdict=identical
  if ! cmp -s "$base.rc" "$ours.rc"; then
    verdict="DIFFERENT exit code ($(cat "$base.rc") vs $(cat "$ours.rc"))"
  elif ! cmp -s "$base.out" "$ours.out"; then
    verdict="DIFFERENT stdout"
  elif ! cmp -s "$base.err" "$ours.err"; then
    verdict="DIFFERENT stderr"
  elif [[ $(cat "$base.rc") != 0 ]]; then
    verdict="FAILED on both (exit $(cat "$base.rc"))"
  elif ! grep -q '"reserved_bytes": [1-9]' "$ours.stats.json" 2>/dev/null; then
    verdict="NOT PRELOADED (no RAMALLOC_STATS_JSON output)"
  fi
  if [[ $verdict != identical ]]; then
    failed=1
    echo "---- $name: $verdict; first differences (glibc < > ramalloc):"
    diff "$base.out" "$ours.out" | head -n 20
    diff "$base.err" "$ours.err" | head -n 20
    echo "---- stderr of the ramalloc run (last lines):"
    tail -n 20 "$ours.err"
  fi
  read -r t_base k_base <"$base.time"
  read -r t_ours k_ours <"$ours.time"
  rows+=("$(printf '%-8s %-10s %11s s %11s s %12s %12s' "$name" "$verdict" "$t_base" "$t_ours" \
            "$(human_kb "${k_base:-}")" "$(human_kb "${k_ours:-}")")")
done

echo
echo "Real programs, glibc malloc vs LD_PRELOAD=$lib (scale $scale)"
printf '%-8s %-10s %13s %13s %12s %12s\n' program output "time glibc" "time ramalloc" \
  "RSS glibc" "RSS ramalloc"
for row in "${rows[@]}"; do echo "$row"; done
[[ -n $gnu_time ]] || echo "(/usr/bin/time not found: peak RSS not measured; install the 'time' package)"

((failed)) && exit 1
((ran)) || exit 77
exit 0
