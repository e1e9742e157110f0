// Checked mode (RAMALLOC_CHECKED=1): pages that name the bug instead of corrupting.
//
// A page formatted while checked mode is on is a *checked page*. The fast paths never
// touch one: its heap never makes it a class's current page (so every acquire from it
// takes the slow path, which pops through checked_pop), and its `bump` field stays 0 (so
// every free into it fails the fast path's "never handed out" test, and the out-of-line
// path completes it through checked_free). Fast mode therefore runs the same instructions
// whether checked mode exists or not.
//
// What a checked page adds, each O(1):
//  - a live bit per block (region side table): a free clears it with one fetch_and and
//    learns whether the block was live — every double free, of every class, local or
//    remote, however delayed, is caught exactly (two racing frees: one wins);
//  - free-list links encoded with a per-page key and validated when popped, so a write
//    after free cannot make the allocator hand out an arbitrary address;
//  - the first `checked_fill_bytes` of a freed block filled with a pattern, verified when
//    the block leaves quarantine and when it is handed out again;
//  - a per-heap FIFO quarantine of local frees (at most `quarantine_slots` blocks and
//    `quarantine_max_bytes`), so a stale pointer freed after one reuse of its address
//    still finds its block free.
#pragma once

#include "mem/heap.hpp"

namespace ramalloc::detail {

inline constexpr std::size_t checked_fill_bytes = 128;
inline constexpr unsigned char checked_fill = 0xDF;
inline constexpr std::size_t quarantine_max_bytes = std::size_t{1} << 20;
/// Live-bit words per slice: 2 KiB, one bit per block of the smallest (4-byte) class.
inline constexpr std::size_t live_words_per_slice = slice_size / 4 / 64;

inline bool checked_mode() noexcept {
  return g_options.checked.load(std::memory_order_relaxed);
}

/// The per-page key free-list links of a checked page are encoded with.
inline std::uint32_t link_key(const page *pg) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(pg->start);
  const std::uint64_t x =
      (a ^ g_canary_key.load(std::memory_order_relaxed)) * 0x9E3779B97F4A7C15ull;
  return static_cast<std::uint32_t>(x >> 32);
}

/// Reads / writes the free link held by block `b` of page `pg` (encoded on checked pages).
/// Tools: the block is free (common/annotate.hpp), so the access is bracketed.
inline std::uint32_t load_link(const page *pg, const std::byte *b) noexcept {
  std::uint32_t v;
  const std::uint32_t bs = annotate_block_size(pg);
  annotate_touch_begin(const_cast<std::byte *>(b), 8, bs);
  __builtin_memcpy(&v, b, sizeof v);
  annotate_touch_end(const_cast<std::byte *>(b), 8, bs);
  return pg->checked.load(std::memory_order_relaxed) ? v ^ link_key(pg) : v;
}
inline void store_link(const page *pg, std::byte *b, std::uint32_t link) noexcept {
  if (pg->checked.load(std::memory_order_relaxed))
    link ^= link_key(pg);
  const std::uint32_t bs = annotate_block_size(pg);
  annotate_touch_begin(b, 8, bs);
  __builtin_memcpy(b, &link, sizeof link);
  annotate_touch_end(b, 8, bs);
}

/// Fills the pattern bytes [from, min(block, checked_fill_bytes)) of a free block.
inline void fill_freed(std::byte *b, std::size_t from, std::uint32_t block_size) noexcept {
  const std::size_t n = block_size < checked_fill_bytes ? block_size : checked_fill_bytes;
  if (n > from) {
    annotate_touch_begin(b, n, block_size);
    __builtin_memset(b + from, checked_fill, n - from);
    annotate_touch_end(b, n, block_size);
  }
}

/// Makes page `pg` of region `r`, being formatted, a checked page: its live bits are
/// cleared (at most 2 KiB per slice). Returns false, leaving it a fast page, when the
/// region's live-bit table cannot be reserved.
bool checked_format(region *r, page *pg, std::uint32_t capacity) noexcept;

/// Hands out the head of checked page `pg`'s free list (non-empty), validating its link
/// and pattern and setting its live bit. O(1) plus the pattern check (≤ 124 bytes).
void *checked_pop(heap_state *h, page *pg, unsigned cls) noexcept;

/// Sets the live bit of block `idx` of checked page `pg` (a large span being handed out).
void checked_set_live(page *pg, std::uint32_t idx) noexcept;

/// Completes a free the fast path did not: if `p` lies in a checked page, or is a huge
/// block (which heap_free leaves to this path in checked mode), frees or rejects it and
/// returns true with the result in `*out` (a size mismatch is reported here and the block
/// is still freed; other errors are left to the caller to report). `sized`: a sized free
/// of `size` bytes with alignment `align` (0: the malloc rule). Returns false for
/// anything else. O(1).
bool checked_free(heap_state *current, void *p, bool sized, std::size_t size, std::size_t align,
                  free_result *out) noexcept;

/// Whether `p` is the start of a live block; otherwise `*why` says what it is. Checked
/// pages answer from their live bits (exact). Fast pages answer from the double-free
/// canary, confirmed when `current` owns the block (a block that carries it and is on
/// its page's free lists is free; one of another heap looks live, and the free that
/// follows is confirmed by its owner; 4-byte blocks always look live). Used by realloc
/// before it copies. O(1), or O(the page's capacity) when the canary is found.
bool block_is_live(heap_state *current, const void *p, free_result *why) noexcept;

/// Releases every quarantined block of `h` to its page (owner only). O(quarantine_slots).
void quarantine_drain(heap_state *h) noexcept;
/// Forgets the quarantine without touching a block (release_all resets the pages).
void quarantine_forget(heap_state *h) noexcept;

} // namespace ramalloc::detail
