#!/usr/bin/env bash
# libramalloc.so is preloaded into C programs too: it must not bring a C++ runtime into
# them (docs/benchmarks.md, "Fixed cost": libstdc++ alone was 1.5 MiB of resident memory
# in every process). Checks the library's dynamic section and what a C program under the
# preload really has mapped.
#
#   check_library_deps.sh LIBRAMALLOC READELF
set -uo pipefail
lib=$1
readelf=$2
status=0
needed=$("$readelf" -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "libramalloc.so needs: $(echo $needed)"
for n in $needed; do
  case $n in
    libstdc++* | libc++* | libgcc_s*)
      echo "FAILED: libramalloc.so links $n" >&2
      status=1
      ;;
  esac
done
# cat is a C program: under the preload its address space holds no C++ runtime.
maps=$(LD_PRELOAD=$lib cat /proc/self/maps) || { echo "FAILED: cat under the preload" >&2; exit 1; }
if ! grep -q 'libramalloc' <<<"$maps"; then
  echo "FAILED: the preloaded library is not mapped in cat" >&2
  status=1
fi
if grep -Eq 'libstdc\+\+|libc\+\+|libgcc_s' <<<"$maps"; then
  echo "FAILED: a C++ runtime is mapped in a C program under the preload:" >&2
  grep -E 'libstdc\+\+|libc\+\+|libgcc_s' <<<"$maps" >&2
  status=1
fi
((status == 0)) && echo "ok: no C++ runtime linked or loaded"
exit $status
