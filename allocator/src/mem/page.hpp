// Page descriptors: the out-of-band record of one span of slices.
//
// A descriptor lives in its region's header, never in user memory, so a block can be as
// small as 4 bytes and a wild pointer can be checked without reading user pages. Only
// the descriptor of a span's first slice is used; `region::slice_head` maps every slice
// to it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/defs.hpp"
#include "ds/list.hpp"

namespace ramalloc::detail {

struct heap_state;
struct region;

enum class page_state : std::uint8_t {
  unused = 0, // never part of a span (or a non-head slice)
  free_clean, // free span, purged: not resident
  free_dirty, // free span, still resident; purged after purge_delay
  cached,     // empty one-slice page kept in its heap's cache (resident)
  in_use,     // a small/medium page or a large span
};

/// A block's free link: the 32-bit offset of the next free block inside the same page.
inline constexpr std::uint32_t nil_offset = 0xFFFFFFFFu;
inline constexpr std::uint8_t large_class = 54; // == class_count: large spans

/// Remote-free word: [0,32) offset of the list head plus one (0: empty list), [32,63)
/// block count, bit 63 "queued" (the page is in its owner's inbox). One CAS pushes a
/// block; the owner takes the whole list and its length with one fetch_and, which leaves
/// an empty list behind and keeps the queued bit.
namespace remote_word {
inline constexpr std::uint64_t queued = std::uint64_t{1} << 63;
inline constexpr std::uint64_t empty = 0;
constexpr std::uint32_t head(std::uint64_t w) {
  const auto h = static_cast<std::uint32_t>(w);
  return h == 0 ? nil_offset : h - 1;
}
constexpr std::uint32_t count(std::uint64_t w) {
  return static_cast<std::uint32_t>((w >> 32) & 0x7FFFFFFFu);
}
constexpr std::uint64_t make(std::uint32_t head, std::uint32_t count, bool q) {
  return std::uint64_t{head + 1} | (std::uint64_t{count} << 32) | (q ? queued : 0);
}
} // namespace remote_word

struct alignas(sharing_span) page {
  // Three parts, split by who writes them, so that a thread freeing into a page it does
  // not own never shares a line with the owner's allocations: the owner writes line 2 on
  // every allocation and free, remote frees write line 4, and line 0 changes only when the
  // page is formatted or extended. Each part has a 128-byte pair of lines of its own
  // (sharing_span: the second line of each pair is cold or empty).
  //
  // --- line 0: the page's shape; read by every free and query, from any thread ---
  std::byte *start = nullptr; // first byte of the span
  // Index of the first never-used block: written by the owner only, read by any free
  // (relaxed: a block reaches its freeing thread only after it was handed out, through
  // some synchronisation that also orders the bump store that made it).
  std::atomic<std::uint32_t> bump{0};
  std::atomic<std::uint32_t> block_size{0};
  std::atomic<std::uint32_t> capacity{0}; // blocks in the page
  std::atomic<std::uint32_t> slices{0};   // span length in slices
  std::atomic<page_state> state{page_state::unused};
  std::uint8_t size_class = 0;             // or large_class
  // The key of its free blocks' canaries (g_canary_key's low half when the page was
  // formatted; mem/heap.hpp, canary_of): read from the line a free has loaded already.
  std::atomic<std::uint32_t> canary_key{0};
  // ceil(2^64 / block_size), large_span_magic for a large span (0 in a descriptor never
  // formatted: no offset is a block start; a span being formatted again still holds its
  // previous life's magic): offset -> index and the block-start test (locate).
  std::atomic<std::uint64_t> div_magic{0};
  region *home = nullptr;
  // bump * block_size: the byte offset of the first never-used block, so the free fast
  // path's "never handed out" test is one compare. Written only with the bump index, by
  // store_shape and set_page_bump (0 on a checked page, whose bump stays 0).
  std::atomic<std::uint32_t> bump_end{0};
  // --- line 1: checked mode (mem/checked.cpp); never read on a fast path ---
  alignas(64)
  // A checked page keeps `bump` at 0, so every free into it fails the fast path's "never
  // handed out" test and is completed out of line by checked_free; its real bump index
  // is here. Read by checked frees from any thread: relaxed atomics.
  std::atomic<std::uint32_t> checked_bump{0};
  std::atomic<bool> checked{false};
  // The key its free-list links are encoded with (link_key), computed once per format.
  std::atomic<std::uint32_t> checked_key{0};

  // --- line 2: owner-only (the allocation fast path reads and writes these) ---
  alignas(sharing_span) std::uint32_t free_head = nil_offset; // blocks ready to hand out
  std::uint32_t local_free_head = nil_offset; // a remote list parked while free_head was busy
  // The free fast path's one decrement (release_one_needs_more) leaves this word <= 0
  // exactly when the free needs more than the link: the page emptied, or it was full.
  // It holds the blocks out (remote frees subtract when taken), plus 1 while the page is
  // an empty current page on the idle list (`idle`: a class bouncing between 0 and 1
  // live blocks empties it again and again, and that needs nothing), minus 2^31 while
  // the page is out of its class's available list (full, or not an available small
  // page). The owner increments it directly for a block handed out; everything else
  // goes through the accessors below.
  static constexpr std::uint32_t out_of_avail = 0x80000000u;
  std::int32_t used_word = static_cast<std::int32_t>(out_of_avail);
  bool idle = false;            // read through in_idle()
  bool watched = false;         // an inbox entry the owner put back (mem/heap.cpp, watch)
  list_links<page> links;       // class available list, page cache, or free-span bin
  list_links<page> dirty_links; // dirty FIFO (free spans) or idle list (empty current pages)
  std::uint64_t freed_at_ms = 0;
  std::uint64_t watched_at_ms = 0; // when the owner put it back on the inbox

  // --- line 4: written by remote frees ---
  alignas(sharing_span) std::atomic<std::uint64_t> remote{remote_word::empty};
  std::atomic<page *> inbox_next{nullptr};

  std::uint32_t used() const noexcept {
    return (static_cast<std::uint32_t>(used_word) & ~out_of_avail) - (idle ? 1 : 0);
  }
  void set_used(std::uint32_t n) noexcept {
    const std::uint32_t flag = static_cast<std::uint32_t>(used_word) & out_of_avail;
    used_word = static_cast<std::int32_t>(flag | (n + (idle ? 1 : 0)));
  }
  void sub_used(std::uint32_t n) noexcept { set_used(used() - n); }
  bool in_avail() const noexcept { return used_word >= 0; }
  void set_in_avail(bool in) noexcept {
    const auto w = static_cast<std::uint32_t>(used_word);
    used_word = static_cast<std::int32_t>(in ? w & ~out_of_avail : w | out_of_avail);
  }
  /// An empty current page on its heap's idle list.
  bool in_idle() const noexcept { return idle; }
  void set_in_idle(bool in) noexcept {
    const std::uint32_t n = used();
    idle = in;
    set_used(n);
  }
  /// A block came back: whether the page emptied or was full (the free's slow cases).
  /// One `subl` to memory and a branch on its flags (GCC loads, subtracts, stores and
  /// tests otherwise); the plain decrement under TSan, which cannot see inline asm.
  bool release_one_needs_more() noexcept {
#if RAMALLOC_X86_ASM
    bool le;
    asm("subl $1, %0" : "+m"(used_word), "=@ccle"(le));
    return le;
#else
    return --used_word <= 0;
#endif
  }

  /// Index of the block containing byte `offset`.
  std::uint32_t block_index(std::uint32_t offset) const noexcept { return locate(offset).index; }
  /// Where byte `offset` lies: the index of its block and whether it is that block's
  /// first byte, from one 64x64->128 multiply (Lemire, Kaser and Kurz, "Faster remainder
  /// by direct computation", 2019: with c = ceil(2^64 / d) and 32-bit n, n / d is the high
  /// half of c * n, and d divides n exactly when the low half is below c).
  struct position {
    std::uint32_t index;
    bool start;
  };
  position locate(std::uint32_t offset) const noexcept {
    const std::uint64_t c = div_magic.load(std::memory_order_relaxed);
    const unsigned __int128 product = static_cast<unsigned __int128>(c) * offset;
    return {static_cast<std::uint32_t>(product >> 64), static_cast<std::uint64_t>(product) < c};
  }
  /// locate(offset).start alone: the low half of the product is one 64-bit multiply,
  /// which needs no register pair (the free fast path). The magic is loaded with acquire
  /// (a plain load on x86-64): a free that sees a new format's magic also sees the bump
  /// index of 0 and the block size stored before it (format_page), never the previous
  /// life's bump.
  bool starts_block(std::uint32_t offset) const noexcept {
    const std::uint64_t c = div_magic.load(std::memory_order_acquire);
    return std::uint64_t{offset} * c < c;
  }
};

/// The page's bump index (blocks at or past it were never handed out), whatever its mode.
static_assert(sizeof(page) == 384 && offsetof(page, free_head) == 128 &&
                  offsetof(page, remote) == 256,
              "page descriptor: shape, owner and remote parts each start a pair of lines");

inline std::uint32_t page_bump(const page *pg) noexcept {
  return pg->checked.load(std::memory_order_relaxed)
             ? pg->checked_bump.load(std::memory_order_relaxed)
             : pg->bump.load(std::memory_order_relaxed);
}
inline void set_page_bump(page *pg, std::uint32_t v) noexcept {
  if (pg->checked.load(std::memory_order_relaxed)) {
    pg->checked_bump.store(v, std::memory_order_relaxed);
  } else {
    pg->bump.store(v, std::memory_order_relaxed);
    pg->bump_end.store(v * pg->block_size.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
  }
}

/// ceil(2^64 / block_size), for block sizes from 2 up: page::locate is exact for every
/// 32-bit offset.
constexpr std::uint64_t division_magic(std::uint32_t block_size) {
  return ~std::uint64_t{0} / block_size + 1;
}
/// A large span is one block: c = 1 makes index 0 of every offset and a start of offset 0
/// only.
inline constexpr std::uint64_t large_span_magic = 1;
inline bool is_large_span(const page *pg) noexcept {
  return pg->div_magic.load(std::memory_order_relaxed) == large_span_magic;
}

} // namespace ramalloc::detail
