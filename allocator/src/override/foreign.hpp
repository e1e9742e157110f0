// Pointers ramalloc did not allocate, seen by the malloc override: memory glibc handed
// out before the preload took effect (or through __libc_malloc) is given back to glibc;
// anything else is reported.
#pragma once

#include <cstddef>

namespace ramalloc::detail {

/// Whether `p` looks like the start of a live glibc malloc chunk: a plausible header
/// that lies where glibc puts chunks of its kind (brk heap, an arena's heap, or an mmapped
/// chunk). Reads through process_vm_readv, so a wild or unmapped pointer never faults. A
/// heuristic: docs/api.md says what it does and does not guarantee.
bool glibc_owns(const void *p) noexcept;
/// Usable size of a glibc chunk (only when glibc_owns(p)).
std::size_t glibc_usable_size(const void *p) noexcept;

} // namespace ramalloc::detail

extern "C" {
void *__libc_malloc(std::size_t);
void __libc_free(void *);
void *__libc_realloc(void *, std::size_t);
}
