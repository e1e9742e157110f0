// Metadata memory: heap descriptors and huge-allocation descriptors.
//
// One large MAP_NORESERVE reservation handed out by an atomic bump cursor: lock-free,
// never unmapped (so a descriptor pointer read by a racing query or remote free always
// points at mapped memory), and independent of malloc.
#pragma once

#include <cstddef>

namespace ramalloc::detail {

/// `size` bytes aligned to `align` (<= 4096), zero-filled; nullptr when exhausted.
void *meta_alloc(std::size_t size, std::size_t align) noexcept;
/// Whether the `n` bytes at `p` lie in the metadata reservation: readable, whatever they
/// hold (it is mapped whole and never unmapped). O(1), safe on any value.
bool meta_holds(const void *p, std::size_t n) noexcept;

} // namespace ramalloc::detail
