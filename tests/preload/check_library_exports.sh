#!/usr/bin/env bash
# libramalloc.so exports the public API and nothing else (issue 11: the library is built
# with -fvisibility=hidden, so its own data is addressed PC-relative, not through the
# GOT, and no internal symbol can be interposed): the malloc family, operator new and
# delete, the ram_* C API and the ramalloc:: C++ API outside ramalloc::detail.
#
#   check_library_exports.sh LIBRAMALLOC NM
set -uo pipefail
lib=$1
nm=$2
malloc_family='malloc|free|cfree|free_sized|free_aligned_sized|calloc|realloc|reallocarray|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|malloc_usable_size|malloc_trim|mallinfo|mallinfo2'
symbols=$("$nm" -D --defined-only "$lib" | awk '{ print $3 }') || exit 1
count=$(wc -l <<<"$symbols")
status=0
for s in $symbols; do
  if [[ $s =~ ^($malloc_family)$ ]] || [[ $s == ram_* ]] ||
    [[ $s =~ ^_Z(nw|na|dl|da) ]] || # operator new, new[], delete, delete[]
    [[ $s =~ ^_ZNK?8ramalloc && ! $s =~ ^_ZNK?8ramalloc6detail ]]; then
    continue
  fi
  echo "FAILED: libramalloc.so exports $s ($(c++filt "$s" 2>/dev/null || echo "$s"))" >&2
  status=1
done
for s in malloc free _Znwm _ZdlPv ram_malloc _ZN8ramalloc7acquireEm; do
  if ! grep -qx "$s" <<<"$symbols"; then
    echo "FAILED: libramalloc.so does not export $s" >&2
    status=1
  fi
done
((status == 0)) && echo "ok: $count symbols exported, all of the public API"
exit $status
