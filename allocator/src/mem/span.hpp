// Span management inside a heap's regions (see span.cpp).
#pragma once

#include "mem/heap.hpp"

namespace ramalloc::detail {

/// A span of `n` slices whose start is aligned to `align_slices` slices, its slices mapped
/// to its head, state `unused` until the caller has stored its shape and publishes
/// `in_use` (with release); nullptr when the heap cannot grow. Dirty (resident) spans are
/// preferred, unless `clean_only` (the reserve pre-faults memory that is not resident
/// yet). `zeroed` (when given) tells whether the span's bytes are known to be zero: a
/// clean span of an OS region was never touched since it was mapped or purged
/// (MADV_DONTNEED); a static buffer's spans never are.
page *span_alloc(heap_state *h, std::uint32_t n, std::uint32_t align_slices, bool *zeroed = nullptr,
                 bool clean_only = false) noexcept;
/// Returns an in-use span (or cached page) to the free bins, coalescing with neighbours.
/// `purged`: its memory was just given back to the OS. Returns the merged span's head.
page *span_free(heap_state *h, page *pg, bool purged) noexcept;
/// Purges up to `max_bytes` from the oldest dirty span (never dropping the heap's
/// committed bytes below the reserve); returns bytes purged.
std::size_t span_purge_front(heap_state *h, std::size_t max_bytes) noexcept;
/// Makes every span of `r` free again as one clean span, dropping its resident pages
/// (OS regions) without visiting blocks. The caller has already forgotten every list that
/// held the region's pages. O(spans of the region). Returns the spans visited.
std::size_t span_reset_region(heap_state *h, region *r) noexcept;
/// Pre-faults at most `max_bytes` (at least one slice) of the reserve `h` owes, from
/// memory not resident yet; returns the bytes it pre-faulted (0: nothing owed, or no
/// memory). O(max_bytes / 64 KiB) plus one madvise/touch of that range.
std::size_t reserve_step(heap_state *h, std::size_t max_bytes) noexcept;

} // namespace ramalloc::detail
