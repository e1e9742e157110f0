// Checked mode: live bits, encoded links, patterns and the quarantine (see checked.hpp).
#include "mem/checked.hpp"

#include <cstdio>

#include "pal/os_pages.hpp"

namespace ramalloc::detail {

namespace {

constexpr std::uint64_t claim_ptr_mask = (std::uint64_t{1} << 48) - 1;

/// A block's live bit is the XOR of two bits: its *allocated* bit, flipped by the owner
/// each time the block is handed out, and its *freed* bit, flipped by each free that
/// finds the block live. The owner is the only writer of the allocated bits, so handing
/// a block out takes a plain load and store (no atomic read-modify-write); every free,
/// local or remote, decides with one compare-and-swap on the freed word, so of two frees
/// of one block (racing or not, owner or not) exactly one sees it live. (One table with
/// both writers would need a read-modify-write on each side: a plain store by the owner
/// could undo a remote free's clear of another bit in the same word.)
struct live_bits {
  // Word pairs: allocated word i at [2i] (owner-written), freed word i at [2i + 1] (CAS by
  // any free), so a free reads both from one cache line.
  std::atomic<std::uint64_t> *words = nullptr;

  explicit operator bool() const noexcept { return words != nullptr; }
  std::atomic<std::uint64_t> &allocated(std::uint32_t idx) const noexcept {
    return words[idx / 64 * 2];
  }
  std::atomic<std::uint64_t> &freed(std::uint32_t idx) const noexcept {
    return words[idx / 64 * 2 + 1];
  }

  bool is_live(std::uint32_t idx, std::memory_order o) const noexcept {
    const std::uint64_t a = allocated(idx).load(o), f = freed(idx).load(o);
    return ((a ^ f) >> (idx % 64) & 1) != 0;
  }
  /// The owner hands free block `idx` out.
  void set_live(std::uint32_t idx) const noexcept {
    std::atomic<std::uint64_t> &w = allocated(idx);
    w.store(w.load(std::memory_order_relaxed) ^ (std::uint64_t{1} << (idx % 64)),
            std::memory_order_release);
  }
  /// A free of block `idx`: true if it was live (it is free now), false if it was free.
  /// The allocated bit of a live block does not change until it is freed, so it is read
  /// once (a stale free racing the block's next allocation may see either state).
  bool clear_live(std::uint32_t idx) const noexcept {
    const std::uint64_t mask = std::uint64_t{1} << (idx % 64);
    const std::uint64_t a = allocated(idx).load(std::memory_order_acquire) & mask;
    std::atomic<std::uint64_t> &w = freed(idx);
    std::uint64_t f = w.load(std::memory_order_relaxed);
    do {
      if ((f & mask) == a)
        return false;
    } while (!w.compare_exchange_weak(f, f ^ mask, std::memory_order_acq_rel,
                                      std::memory_order_relaxed));
    return true;
  }
};

/// The live bits of the page headed by `pg` (empty: no table yet): 2 * live_words_per_slice
/// words per slice.
live_bits live_bits_of(const region *r, const page *pg) noexcept {
  std::atomic<std::uint64_t> *t = r->live_bits.load(std::memory_order_acquire);
  if (t == nullptr)
    return {};
  return {t + std::size_t{r->index_of(pg)} * 2 * live_words_per_slice};
}

/// The first pattern byte of [from, min(block, checked_fill_bytes)) that changed, or
/// SIZE_MAX. Word-wise; the byte is looked for only when a word differs.
std::size_t pattern_damage(const std::byte *b, std::size_t from, std::uint32_t bs) noexcept {
  if (RAMALLOC_LIKELY(pattern_intact(b, from, bs)))
    return SIZE_MAX;
  const std::size_t n = bs < checked_fill_bytes ? bs : checked_fill_bytes;
  for (std::size_t i = from; i < n; ++i)
    if (static_cast<unsigned char>(b[i]) != checked_fill)
      return i;
  return SIZE_MAX;
}

/// pattern_damage of a free block (tools: bracketed, common/annotate.hpp).
std::size_t pattern_damage_free(std::byte *b, std::size_t from, std::uint32_t bs) noexcept {
  const std::size_t n = bs < checked_fill_bytes ? bs : checked_fill_bytes;
  annotate_touch_begin(b, n, bs);
  const std::size_t at = pattern_damage(b, from, bs);
  annotate_touch_end(b, n, bs);
  return at;
}

void report_damage(const std::byte *b, std::size_t at, const page *pg, const char *when) noexcept {
  char what[200];
  std::snprintf(what, sizeof what,
                "a freed block was written to (byte %zu of it changed; detected %s)", at, when);
  report_page_block(RAM_ERROR_WRITE_AFTER_FREE, b + at, what, pg, b);
}

/// Gives a free block back to its (local, checked) page: the tail of free_in_page.
void release_to_page(heap_state *owner, page *pg, std::byte *p) noexcept {
  const auto off = static_cast<std::uint32_t>(p - pg->start);
  store_link(pg, p, pg->free_head);
  pg->free_head = off;
  pg->sub_used(1);
  if (pg->used() == 0) {
    if (!pg->in_idle())
      page_emptied(owner, pg);
    else if (!pg->in_avail()) // still on the idle list from an earlier emptying
      heap_unfull(owner, pg);
  } else if (!pg->in_avail()) {
    heap_unfull(owner, pg);
  }
}

/// The oldest quarantined block goes back to its page, its pattern verified first.
void quarantine_release_one(heap_state *h) noexcept {
  const heap_state::quarantined q = h->quarantine[h->quarantine_first];
  h->quarantine_first = (h->quarantine_first + 1) % heap_state::quarantine_slots;
  --h->quarantine_count;
  const std::uint32_t bs = q.pg->block_size.load(std::memory_order_relaxed);
  h->quarantine_bytes -= bs;
  const std::size_t at = pattern_damage_free(q.block, 0, bs);
  if (at != SIZE_MAX)
    report_damage(q.block, at, q.pg, "when it left the quarantine");
  release_to_page(h, q.pg, q.block);
}

void quarantine_push(heap_state *h, page *pg, std::byte *p) noexcept {
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  // At most quarantine_slots turns: each releases one block.
  while (h->quarantine_count == heap_state::quarantine_slots ||
         (h->quarantine_count != 0 && h->quarantine_bytes + bs > quarantine_max_bytes)) {
    count_step();
    quarantine_release_one(h);
  }
  const std::uint32_t slot =
      (h->quarantine_first + h->quarantine_count) % heap_state::quarantine_slots;
  h->quarantine[slot] = {p, pg};
  ++h->quarantine_count;
  h->quarantine_bytes += bs;
}

/// heap_free_remote with an encoded link (a checked page's lists are all encoded).
void push_remote(heap_state *owner, page *pg, std::byte *p, std::uint32_t off) noexcept {
  std::uint64_t w = pg->remote.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    count_step();
    store_link(pg, p, remote_word::head(w));
    next = remote_word::make(off, remote_word::count(w) + 1, true);
  } while (!pg->remote.compare_exchange_weak(w, next, std::memory_order_release,
                                             std::memory_order_relaxed));
  if ((w & remote_word::queued) == 0) {
    owner->inbox_count.fetch_add(1, std::memory_order_relaxed);
    owner->inbox.push(pg);
  }
}

/// The block size a sized free of `size` bytes (alignment `align`, 0 for the malloc
/// rule) names: what the allocation of that size got.
std::size_t expected_block_size(std::size_t size, std::size_t align) noexcept {
  if (align <= 16) {
    // The malloc rule (align 0) starts at the 8-byte class, aligned requests at 16
    // (api/dispatch.hpp: alloc_malloc, aligned_counted).
    const std::size_t least = align == 0 ? 8 : 16;
    if (size <= medium_max)
      return class_block_size(class_of(size < least ? least : size));
    if (size <= large_max)
      return align_up(size, slice_size);
    return align_up(size, os_page_size);
  }
  const std::size_t s = size == 0 ? 1 : size;
  if (align <= slice_size && s <= medium_max - align)
    return class_block_size(class_of(align_up(s, align)));
  if (s <= large_max && align <= region_size / 4)
    return align_up(s, slice_size);
  return align_up(s, os_page_size);
}

void check_size(void *p, std::size_t size, std::size_t align, std::size_t block, const void *start,
                const char *kind, const void *owner) noexcept {
  if (expected_block_size(size, align) == block)
    return;
  // Alignment 0 is malloc's rule: 8 bytes for sizes up to 8, 16 above.
  const std::size_t shown = align != 0 ? align : (size <= 8 ? 8 : 16);
  char what[200];
  std::snprintf(what, sizeof what,
                "sized free of %zu bytes (alignment %zu) of a block allocated with a size of "
                "another class",
                size, shown);
  report_block_error(RAM_ERROR_SIZE_MISMATCH, p, what, start, block, kind, owner);
}

free_result huge_free_checked(region *r, void *p, bool sized, std::size_t size,
                              std::size_t align) noexcept {
  if (sized) {
    const std::uint64_t w = r->huge_claim.load(std::memory_order_acquire);
    if ((w & claim_ptr_mask) != 0 && p == static_cast<void *>(r->huge_start))
      check_size(p, size, align, r->huge_usable, p, "huge",
                 reinterpret_cast<const void *>(w & claim_ptr_mask));
  }
  return huge_release(r, p);
}

} // namespace

bool checked_format(region *r, page *pg, std::uint32_t capacity) noexcept {
  std::atomic<std::uint64_t> *t = r->live_bits.load(std::memory_order_acquire);
  if (t == nullptr) {
    // Sized for a whole region whatever its use (a static region's header is recycled
    // for buffers of other sizes): 64 MiB of address space, resident only where used.
    const std::size_t bytes = slices_per_region * 2 * live_words_per_slice * sizeof(std::uint64_t);
    void *m = os_pages::reserve_aligned(bytes, os_page_size);
    if (m == nullptr)
      return false;
    t = static_cast<std::atomic<std::uint64_t> *>(m); // zero pages: every bit clear
    // Only the region's owner formats its pages: no other writer.
    r->live_bits.store(t, std::memory_order_release);
  }
  pg->checked_key.store(make_link_key(pg), std::memory_order_relaxed);
  // Every block free: each freed word equal to its allocated word. (A page is formatted
  // empty, so they are equal already unless release_all freed its blocks wholesale.)
  const live_bits bits = live_bits_of(r, pg);
  for (std::uint32_t i = 0; i < capacity; i += 64) // at most 256 pairs
    bits.freed(i).store(bits.allocated(i).load(std::memory_order_relaxed),
                        std::memory_order_relaxed);
  return true;
}

void checked_set_live(page *pg, std::uint32_t idx) noexcept {
  live_bits_of(pg->home, pg).set_live(idx);
}

void *checked_pop(heap_state *h, page *pg, unsigned cls) noexcept {
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const std::uint32_t off = pg->free_head;
  std::byte *b = pg->start + off;
  const live_bits bits = live_bits_of(pg->home, pg);
  const std::uint32_t next = load_link(pg, b);
  // A valid link names a block that was handed out before (below the bump index), at a
  // block start, whose live bit is clear: anything else was written by the program.
  bool link_ok = next == nil_offset;
  if (!link_ok && next < page_bump(pg) * bs) {
    const page::position at = pg->locate(next);
    link_ok = at.start && !bits.is_live(at.index, std::memory_order_relaxed);
  }
  if (RAMALLOC_UNLIKELY(!link_ok)) {
    report_page_block(RAM_ERROR_WRITE_AFTER_FREE, b,
                      "the free-list link in a freed block was overwritten (a write after "
                      "free; the page's other free blocks are set aside until it empties)",
                      pg, b);
    pg->free_head = nil_offset; // never follow it: the rest of the list is leaked, safely
  } else {
    pg->free_head = next;
  }
  const std::size_t at = pattern_damage_free(b, 4, bs);
  if (RAMALLOC_UNLIKELY(at != SIZE_MAX))
    report_damage(b, at, pg, "when it was handed out again");
  const std::uint32_t idx = pg->block_index(off);
  bits.set_live(idx);
  ++pg->used_word;
  h->class_live[cls].add(1);
  return b;
}

bool checked_free(heap_state *current, void *ptr, bool sized, std::size_t size, std::size_t align,
                  free_result *out) noexcept {
  auto *p = static_cast<std::byte *>(ptr);
  region *r;
  page *pg;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t entry = (a >> region_shift) < granule_count
                                   ? page_map[a >> region_shift].load(std::memory_order_acquire)
                                   : 0;
  if (RAMALLOC_LIKELY((entry & os_region_tag) != 0)) {
    // A standard OS region: the page-map walk of heap_free (the fixed header layout),
    // not region_of's and span_of's general one.
    r = os_region_at(a);
    const auto s = static_cast<std::uint32_t>((a >> slice_shift) & (slices_per_region - 1));
    const std::uint32_t h = os_slice_heads(r)[s].load(std::memory_order_relaxed);
    pg = os_region_pages(r) + h;
    if (pg->state.load(std::memory_order_relaxed) != page_state::in_use ||
        s - h >= pg->slices.load(std::memory_order_relaxed))
      return false;
  } else {
    r = region_of(p);
    if (r == nullptr)
      return false;
    if (r->kind == region_kind::huge) {
      *out = huge_free_checked(r, p, sized, size, align);
      return true;
    }
    pg = span_of(r, p);
    if (pg == nullptr)
      return false;
  }
  if (!pg->checked.load(std::memory_order_relaxed))
    return false;
  const live_bits bits = live_bits_of(r, pg);
  if (!bits)
    return false;
  const auto off = static_cast<std::uint32_t>(p - r->slice_address(r->index_of(pg)));
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const page::position at = pg->locate(off);
  const std::uint32_t idx = at.index;
  if (!at.start) {
    *out = free_result::interior;
    return true;
  }
  if (idx >= pg->checked_bump.load(std::memory_order_relaxed)) {
    *out = free_result::not_live; // never handed out
    return true;
  }
  // One CAS decides: of two frees of one block (racing or not), exactly one sees it live.
  if (!bits.clear_live(idx)) {
    *out = free_result::double_free;
    return true;
  }
  heap_state *owner = r->owner.load(std::memory_order_relaxed);
  if (sized)
    check_size(p, size, align, bs, p, kind_name(pg), owner);
  annotate_freed(p, bs); // before the block can reach another thread
  fill_freed(p, 0, bs);
  *out = free_result::freed;
  if (owner != current) {
    push_remote(owner, pg, p, off);
    return true;
  }
  owner->class_live[pg->size_class].sub(1);
  if (is_large_span(pg))
    release_to_page(owner, pg, p);
  else
    quarantine_push(owner, pg, p);
  return true;
}

bool block_is_live(heap_state *current, const void *ptr, free_result *why) noexcept {
  const auto *p = static_cast<const std::byte *>(ptr);
  region *r = region_of(p);
  *why = free_result::not_ours;
  if (r == nullptr)
    return false;
  if (r->kind == region_kind::huge) {
    *why = free_result::double_free;
    return (r->huge_claim.load(std::memory_order_acquire) & claim_ptr_mask) != 0;
  }
  page *pg = span_of(r, p);
  *why = free_result::not_live;
  if (pg == nullptr)
    return false;
  const auto off = static_cast<std::uint32_t>(p - r->slice_address(r->index_of(pg)));
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const page::position at = pg->locate(off);
  const std::uint32_t idx = at.index;
  *why = free_result::interior;
  if (!at.start)
    return false;
  *why = free_result::not_live;
  if (idx >= page_bump(pg))
    return false;
  *why = free_result::double_free;
  if (pg->checked.load(std::memory_order_relaxed)) {
    const live_bits bits = live_bits_of(r, pg);
    return bits && bits.is_live(idx, std::memory_order_acquire);
  }
  if (bs == 4)
    return true; // no canary: cannot tell
  if (annotate_peek32(p + 4) != canary_of(pg, p))
    return true;
  // The canary is a hint: its owner decides exactly; another thread cannot walk the
  // page's lists, and the free that follows is confirmed by the owner (free_marked).
  if (rcache_holds(pg, p))
    return false; // kept in a remote-free cache (mem/remote_cache.cpp): free
  return r->owner.load(std::memory_order_relaxed) != current || !block_listed(pg, off);
}

void quarantine_drain(heap_state *h) noexcept {
  while (h->quarantine_count != 0)
    quarantine_release_one(h);
}

void quarantine_forget(heap_state *h) noexcept {
  h->quarantine_first = h->quarantine_count = 0;
  h->quarantine_bytes = 0;
}

} // namespace ramalloc::detail
