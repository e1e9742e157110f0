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
//  - a live bit per block (region side table, the XOR of an allocated bit the owner flips
//    with a plain store and a freed bit each free flips with one CAS): a free learns
//    whether the block was live — every double free, of every class, local or remote,
//    however delayed, is caught exactly (two racing frees: one wins);
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
/// Words per slice of each live-bit table (allocated, freed): 2 KiB, one bit per block of
/// the smallest (4-byte) class.
inline constexpr std::size_t live_words_per_slice = slice_size / 4 / 64;

inline bool checked_mode() noexcept {
  return g_options.checked.load(std::memory_order_relaxed);
}

/// The per-page key free-list links of a checked page are encoded with: keyed by the
/// page's address and the process's random key. Computed when the page is formatted.
inline std::uint32_t make_link_key(const page *pg) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(pg->start);
  const std::uint64_t x =
      (a ^ g_canary_key.load(std::memory_order_relaxed)) * 0x9E3779B97F4A7C15ull;
  return static_cast<std::uint32_t>(x >> 32);
}
inline std::uint32_t link_key(const page *pg) noexcept {
  return pg->checked_key.load(std::memory_order_relaxed);
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

/// The pattern as one word (`checked_fill` in every byte), and as a 16-byte vector.
inline constexpr std::uint64_t checked_fill_word = 0x0101010101010101ull * checked_fill;
using fill_vector = std::uint64_t __attribute__((vector_size(16)));
inline constexpr fill_vector checked_fill_vector = {checked_fill_word, checked_fill_word};

/// fill_freed's stores, without the tools' brackets.
inline void fill_freed_bytes(std::byte *b, std::size_t from, std::uint32_t block_size) noexcept {
  const auto half = static_cast<std::uint32_t>(checked_fill_word);
  if (block_size < 16) { // 4 or 8 bytes: word 0 is the link (from 4) or the pattern
    if (from == 0)
      __builtin_memcpy(b, &half, sizeof half);
    if (block_size == 8)
      __builtin_memcpy(b + 4, &half, sizeof half);
    return;
  }
  // Bytes 0..3 are written either way (with the pattern), then the link is put back.
  std::uint32_t link;
  __builtin_memcpy(&link, b, sizeof link);
  if (block_size >= checked_fill_bytes) {
#pragma GCC unroll 8
    for (std::size_t i = 0; i < checked_fill_bytes; i += 16)
      __builtin_memcpy(b + i, &checked_fill_vector, sizeof checked_fill_vector);
  } else {
    for (std::size_t i = 0; i < block_size; i += 16)
      __builtin_memcpy(b + i, &checked_fill_vector, sizeof checked_fill_vector);
  }
  if (from != 0)
    __builtin_memcpy(b, &link, sizeof link);
}

/// Fills the pattern bytes [from, min(block, checked_fill_bytes)) of a free block; `from`
/// is 0, or 4 to keep a free link. 16-byte stores: every block size from 16 bytes on is a
/// multiple of 16 (blocks of 128 bytes or more: a fixed 8 stores); the 4- and 8-byte
/// classes take one 4-byte store.
inline void fill_freed(std::byte *b, std::size_t from, std::uint32_t block_size) noexcept {
  // Tools: the block is free (common/annotate.hpp), so the writes are bracketed.
  const std::size_t n = block_size < checked_fill_bytes ? block_size : checked_fill_bytes;
  annotate_touch_begin(b, n, block_size);
  fill_freed_bytes(b, from, block_size);
  annotate_touch_end(b, n, block_size);
}

/// Whether the pattern bytes [from, min(block, checked_fill_bytes)) of a free block are
/// intact (`from` 0 or 4): one 16-byte compare per 16 bytes, at most 8.
inline bool pattern_intact(const std::byte *b, std::size_t from,
                           std::uint32_t block_size) noexcept {
  const auto half = static_cast<std::uint32_t>(checked_fill_word);
  std::uint32_t w;
  if (block_size < 16) {
    __builtin_memcpy(&w, b, sizeof w);
    bool ok = from != 0 || w == half;
    if (block_size == 8) {
      __builtin_memcpy(&w, b + 4, sizeof w);
      ok = ok && w == half;
    }
    return ok;
  }
  fill_vector v;
  __builtin_memcpy(&v, b, sizeof v);
  // Word 0's low four bytes (little-endian) hold the link when `from` is 4.
  const fill_vector first_mask = {from == 0 ? ~std::uint64_t{0} : ~std::uint64_t{0xFFFFFFFF},
                                  ~std::uint64_t{0}};
  fill_vector diff = (v ^ checked_fill_vector) & first_mask;
  if (block_size >= checked_fill_bytes) {
#pragma GCC unroll 8
    for (std::size_t i = 16; i < checked_fill_bytes; i += 16) {
      __builtin_memcpy(&v, b + i, sizeof v);
      diff |= v ^ checked_fill_vector;
    }
  } else {
    for (std::size_t i = 16; i < block_size; i += 16) {
      __builtin_memcpy(&v, b + i, sizeof v);
      diff |= v ^ checked_fill_vector;
    }
  }
  return (diff[0] | diff[1]) == 0;
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
