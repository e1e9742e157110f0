// The heap: one owner at a time allocates from it without atomics.
//
// A heap owns regions; their spans become pages of one size class (small, medium), large
// spans (one block) or stay free in the heap's span bins. Frees by other threads land on
// a page's remote word and queue the page in the heap's inbox: that queue is the heap's
// debt, paid by its owner in reclaim(budget) steps or, a fixed slice at a time, on the
// allocation slow path.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <new>

#include "common/annotate.hpp"
#include "common/defs.hpp"
#include "common/runtime.hpp"
#include "ds/list.hpp"
#include "ds/mpsc_queue.hpp"
#include "mem/page.hpp"
#include "mem/region.hpp"
#include "mem/size_class.hpp"
#include "mem/span_bins.hpp"
#include "ramalloc/ramalloc.hpp"

namespace ramalloc::detail {

/// A statistic written by one thread (the owner) and read by any (relaxed loads), so
/// readers never see a torn value. On x86-64 the owner's update is one `add` to memory
/// (not locked: it is the only writer, and an aligned 8-byte store is atomic there); a
/// relaxed load+store elsewhere, and under TSan so that it checks the accesses.
struct owner_counter {
  std::atomic<std::uint64_t> v{0};
  void add(std::uint64_t n) noexcept {
#if RAMALLOC_X86_ASM
    asm("addq %1, %0" : "+m"(*reinterpret_cast<std::uint64_t *>(&v)) : "er"(n));
#else
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
#endif
  }
  void sub(std::uint64_t n) noexcept {
#if RAMALLOC_X86_ASM
    asm("subq %1, %0" : "+m"(*reinterpret_cast<std::uint64_t *>(&v)) : "er"(n));
#else
    v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
#endif
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};
static_assert(sizeof(std::atomic<std::uint64_t>) == sizeof(std::uint64_t));

enum class heap_status : std::uint8_t { pooled, owned, orphaned };

static_assert(large_class == class_count, "large spans count in class_live[class_count]");

/// The remote-free cache (mem/remote_cache.cpp): a thread heap keeps blocks of 16 B to
/// 1 KiB that it frees for another thread heap, at most RAMALLOC_REMOTE_CACHE per class
/// (up to rcache_slots), and hands them out again itself.
inline constexpr unsigned rcache_first = 2;   // class_of(16)
inline constexpr unsigned rcache_classes = 20; // up to class_of(1024)
inline constexpr unsigned rcache_slots = 16;
/// Whether the remote-free cache keeps blocks of class `cls` (one unsigned compare).
constexpr bool rcache_class(unsigned cls) noexcept {
  return cls - rcache_first < rcache_classes;
}

/// Blocks of one class kept by the remote-free cache: a stack. Only the owner pushes and
/// pops; a double-free check from any thread may read a slot (relaxed atomics), which
/// holds its block exactly while the block is kept (a popped slot is cleared).
struct rcache_bin {
  std::uint16_t count = 0;
  std::uint16_t low = 0; // the fewest kept since the last trim (rcache_trim)
  std::atomic<std::byte *> slot[rcache_slots]{};
};

/// The empty page every class starts with: no free block, so the first acquire of a class
/// takes the slow path. Never written.
extern page g_empty_page;
constexpr std::array<page *, class_count> all_empty_pages() noexcept {
  std::array<page *, class_count> pages{};
  for (page *&pg : pages)
    pg = &g_empty_page;
  return pages;
}

struct heap_state {
  // --- owner-only; the fast path reads `current` ---
  std::array<page *, class_count> current = all_empty_pages();
  intrusive_list<page, &page::links> avail[class_count];
  intrusive_list<page, &page::links> cache;            // empty one-slice pages, oldest at front
  span_bins dirty_bins;                                // free spans still resident
  span_bins clean_bins;                                // free spans already purged
  intrusive_list<page, &page::dirty_links> dirty_fifo; // dirty spans, oldest first
  intrusive_list<page, &page::dirty_links> idle;       // empty current pages, oldest first
  intrusive_list<region, &region::links> regions;
  region *static_region = nullptr; // set for static-buffer heaps

  // --- the remote-free cache (owner only, but for the double-free check's reads) ---
  rcache_bin rcache[rcache_classes];
  std::uint64_t rcache_trimmed_ms = 0; // when rcache_trim last ran

  // --- the inbox: pages with remote frees (debt) ---
  mpsc_queue<page, &page::inbox_next> inbox;
  page inbox_stub;
  std::atomic<std::uint64_t> inbox_count{0};
  // Frees from other threads of blocks that carried their canary: a live block may hold
  // that value by chance, and only the owner may walk the page's lists to tell. They
  // wait here (debt, like the inbox) for the owner's next slow path or reclaim step.
  static constexpr unsigned parked_slots = 16;
  std::atomic<std::byte *> parked[parked_slots]{};
  std::atomic<std::uint32_t> parked_count{0}; // >= the slots filled

  // --- statistics ---
  // On a line of their own: the owner writes a class's counter on every acquire and
  // discard, and the words above are written by other threads (remote frees bump
  // inbox_count, parked frees parked_count).
  alignas(sharing_span) owner_counter class_live[class_count + 1]; // live blocks per class; [class_count]: large
  owner_counter large_live_bytes;
  std::atomic<std::uint64_t> huge_live_bytes{0}, huge_live_blocks{0}; // freed from any thread
  owner_counter committed, reserved, remote_frees, pages_purged, bytes_purged;
  owner_counter orphans_serviced;

  // --- identity and life cycle (global/heaps.cpp) ---
  // Read by other threads' remote frees (rcache_keep), so on a line the owner's steps do
  // not write: the owner-written words start the next line.
  alignas(sharing_span) std::atomic<heap_status> status{heap_status::pooled};
  bool thread_heap = false; // bound to a thread (adoptable when orphaned)
  heap_state *all_next = nullptr;                // every heap ever made (stats walk)
  std::atomic<heap_state *> stack_next{nullptr}; // pool or orphan stack link
  // Bytes of RAMALLOC_RESERVE still to pre-fault: debt, paid a purge_budget at a time by
  // reclaim steps (all at once by flush and by the heap constructor), never by acquire.
  // Owner-written, read by stats from any thread.
  std::atomic<std::uint64_t> reserve_owed{0};
  alignas(sharing_span) std::uint64_t last_reclaim_ms = 0; // when the owner last called reclaim (auto purge)
  // Acquire slow paths since the last back-pressure slice (owner only; debt_interval).
  std::uint32_t slow_paths_since_debt = 0;
  // Inbox entries the owner put back itself to collect their remote frees later (watch,
  // mem/heap.cpp): counted in inbox_count, but not payable for watch_delay_ms. One of
  // them may wait out of the queue, in inbox_held, at its front. Owner-written; read
  // by stats from any thread.
  owner_counter inbox_watched;
  page *inbox_held = nullptr;
  // Bytes in dirty free spans (owner only; kept by span.cpp): auto purge keeps them under
  // a cap without waiting for purge_delay.
  std::uint64_t dirty_bytes = 0;
  // Checked mode: blocks freed locally wait here (FIFO) before going back to their page,
  // so a stale pointer's second free finds them free and a write after free is caught
  // when they leave. Owner only; they count as used in their page (not as live blocks).
  struct quarantined {
    std::byte *block;
    page *pg;
  };
  static constexpr unsigned quarantine_slots = 64;
  quarantined quarantine[quarantine_slots];
  std::uint32_t quarantine_first = 0, quarantine_count = 0;
  std::size_t quarantine_bytes = 0;
  alignas(heap) unsigned char handle_storage[sizeof(heap)]; // borrowed `heap` for current_heap()
};

/// The bridge between the public `heap` handle and its descriptor.
struct heap_access {
  static heap borrowed(heap_state *s) noexcept { return heap(heap::borrowed_tag{}, s); }
  static heap_state *state(const heap &h) noexcept { return h.state_; }
  static heap &handle(heap_state *s) noexcept {
    return *std::launder(reinterpret_cast<heap *>(s->handle_storage));
  }
};

/// Block size of `pg` for a tool hook (common/annotate.hpp): no load when they are off.
RAMALLOC_FAST_PATH std::uint32_t annotate_block_size(const page *pg) noexcept {
  return annotations_enabled ? pg->block_size.load(std::memory_order_relaxed) : 0;
}

/// heap_alloc_slow for g_unbound: binds the calling thread a heap (or adopts one for this
/// allocation, past its exit hook) and allocates a block of class `cls` from it; NULL
/// with ENOMEM. Defined by global/heaps.cpp (the memory layer cannot name the binding).
RAMALLOC_SLOW_PATH void *unbound_alloc_class(unsigned cls) noexcept;

/// The current heap of a thread that has none (t_current's initial value, and its value
/// again after the thread's exit hook): every class's current page is g_empty_page, so
/// the allocation fast path needs no test for "no heap yet": its first acquire of any
/// class takes heap_alloc_slow, which hands it to unbound_alloc_class. Never written:
/// it owns no region, so no free is ever local to it, and nothing else may be given it
/// (the api layer's big allocations, reclaim and stats test for it first).
extern heap_state g_unbound;

/// Makes a fresh heap usable (after placement-new).
void heap_init(heap_state *h) noexcept;
/// Sets up a static-buffer heap; returns a reason on failure, nullptr on success.
const char *heap_init_static(heap_state *h, void *buffer, std::size_t size) noexcept;

/// An allocation of class `cls` whose current page has no free block. Out of line but
/// not cold: its first part, the extension of the current page, runs once per OS page of
/// never-used blocks (once per block above 2 KiB); the rest (the next page, debt and
/// auto purge) is a cold function of its own.
__attribute__((noinline)) void *heap_alloc_slow(heap_state *h, unsigned cls) noexcept;

/// Hands out block `b` of page `pg` (class `cls`), whose first 8 bytes the caller has
/// opened to the tools (annotate_touch_begin): clears its canary word, closes them again
/// and counts the block.
template <bool MayBeTiny>
RAMALLOC_FAST_PATH void *hand_out(heap_state *h, page *pg, std::size_t cls, std::byte *b) noexcept {
  // Bytes 4..7 hold the double-free canary while a block is free; clear it so a block
  // the user never writes is not mistaken for a freed one. The 4-byte class has no room.
  if (!MayBeTiny || RAMALLOC_LIKELY(cls != 0))
    __builtin_memset(b + 4, 0, 4);
  annotate_touch_end(b, 8, class_block_size(cls));
  ++pg->used_word;
  h->class_live[cls].add(1);
  return b;
}

/// Allocation of class `cls` (the fast path): pops the current page's free list.
template <bool MayBeTiny>
RAMALLOC_FAST_PATH void *heap_alloc_class(heap_state *h, std::size_t cls) noexcept {
  page *pg = h->current[cls];
  const std::uint32_t off = pg->free_head;
  if (RAMALLOC_UNLIKELY(off == nil_offset))
    return heap_alloc_slow(h, cls);
  std::byte *b = pg->start + off;
  annotate_touch_begin(b, 8, class_block_size(cls)); // tools: see common/annotate.hpp
  std::uint32_t next;
  __builtin_memcpy(&next, b, sizeof next);
  pg->free_head = next;
  prefetch_for_write(pg->start + next);
  return hand_out<MayBeTiny>(h, pg, cls, b);
}

/// Large spans (one block) and huge mappings; `align` is a power of two. `zeroed`: see
/// span_alloc (calloc skips its memset when the span is known to be zero).
void *heap_alloc_large(heap_state *h, std::size_t size, std::size_t align,
                       bool *zeroed = nullptr) noexcept;
void *heap_alloc_huge(heap_state *h, std::size_t size, std::size_t align) noexcept;

enum class free_result : std::uint8_t {
  freed,       // the block is free (locally, or queued on its owner's inbox)
  not_ours,    // no ramalloc region holds the pointer
  not_live,    // inside a region but not inside a live page or block
  interior,    // inside a live block but not its start
  double_free, // the block is already free
  marked,      // the block carries its canary: free_marked decides (out of line)
  unconfirmed, // it carries its canary, and its owner has parked_slots frees to confirm
  checked,     // a huge block in checked mode: the caller completes it with checked_free
  other,       // not a standard OS region: the caller's out-of-line path calls heap_free_other
};

/// Random key for the double-free canary (set once at start-up).
extern std::atomic<std::uint64_t> g_canary_key;

/// The value bytes 4..7 of a free block hold: keyed by address and a per-process random
/// key, so user data equal to it by chance is a 1-in-2^32 event. A hint only (free_marked
/// confirms it), so any value will do, 0 included: the one address in 2^32 whose canary
/// is 0 only makes a never-written block's free take the confirmation walk.
/// `key` is the page's canary_key (copied from g_canary_key when the page is formatted,
/// so every block of a page has the key its frees check, even across the one change of
/// g_canary_key at start-up).
RAMALLOC_FAST_PATH std::uint32_t canary_of(const void *p, std::uint32_t key) noexcept {
  return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(p)) ^ key;
}
/// The canary of block `p` of page `pg`.
RAMALLOC_FAST_PATH std::uint32_t canary_of(const page *pg, const void *p) noexcept {
  return canary_of(p, pg->canary_key.load(std::memory_order_relaxed));
}

// Out-of-line parts of a free. Not marked cold: GCC would then treat the whole local
// path that may lead to them as cold and move it out of line.
__attribute__((noinline)) void page_emptied(heap_state *h, page *pg) noexcept;
__attribute__((noinline)) void heap_unfull(heap_state *h, page *pg) noexcept;
/// Completes a free that found the block's canary (free_result::marked): a hint, not a
/// verdict. Decided exactly by the owner (a walk of the page's free lists, at most its
/// capacity in links): at once when `current` owns the block; otherwise the block is
/// parked for the owner (heap_state::parked) unless it heads the page's remote list (an
/// immediate repeat of a remote free). Returns freed, double_free or unconfirmed.
RAMALLOC_SLOW_PATH free_result free_marked(heap_state *current, void *p) noexcept;
/// A free of block `p` (byte `off` of `pg`, in region `r`) for another heap, the region's
/// owner, by the thread whose current heap is `current` (g_unbound if none): kept in `current`'s
/// remote-free cache when it takes it (rcache_keep), otherwise pushed on the page's
/// remote word (remote_push). The owner is read again here (the fast path compared it
/// without keeping it): one that changed in between is the page's owner all the same.
void heap_free_remote(heap_state *current, const region *r, page *pg, std::byte *p,
                      std::uint32_t off) noexcept;
/// One CAS: block `p` onto `pg`'s remote list, and the page on `owner`'s inbox if it was
/// not queued.
void remote_push(heap_state *owner, page *pg, std::byte *p, std::uint32_t off) noexcept;

// --- the remote-free cache (mem/remote_cache.cpp) ---
/// Keeps block `p` of `pg` (freed by `current`'s owner for heap `owner`) in `current`'s
/// cache, if both are thread heaps, `owner` is not an orphan, the class is cached and the
/// bin has room (its own words are read first: a full bin reads none of the owner's).
bool rcache_keep(heap_state *current, const heap_state *owner, const page *pg,
                 std::byte *p) noexcept;
/// A kept block of class `cls` handed out (its canary cleared); the class's bin is not
/// empty. Called by the acquire slow path before it turns to the class's next page.
void *rcache_pop(heap_state *h, unsigned cls) noexcept;
/// Whether block `p` of fast page `pg` (a block start holding its canary) is kept in
/// some heap's remote-free cache: exact, O(1), from any thread.
bool rcache_holds(const page *pg, const void *p) noexcept;
/// Gives every kept block back to its owner (a remote free each). O(rcache_classes *
/// rcache_slots). Owner only.
void rcache_drain(heap_state *h) noexcept;
/// A reclaim step's part: once per purge delay, gives back the blocks of each bin that
/// no acquire needed since the last trim. Returns the blocks given back.
std::size_t rcache_trim(heap_state *h, std::uint64_t now) noexcept;

RAMALLOC_SLOW_PATH free_result heap_free_huge(region *r, void *p) noexcept;
/// Frees huge block `p` of descriptor `r` (claiming it with one CAS on its generation and
/// owner word, so a stale free can never unmap the block a recycled descriptor now
/// holds). O(size / 1 GiB).
free_result huge_release(region *r, void *p) noexcept;
#if defined(RAMALLOC_DEBUG)
/// Tests only: called by huge_release between its checks and its claim.
extern void (*g_huge_release_test_hook)(void *p) noexcept;
/// Tests only: called by format_page once the new shape (block size, magic) is stored.
extern void (*g_format_test_hook)(const std::byte *span_start) noexcept;
/// Tests only: called when a span is about to be formatted (a page or a large span),
/// before any of its new shape is stored: the span is out of the bins, its descriptor
/// still holds its previous life's shape.
extern void (*g_shape_begin_test_hook)(const std::byte *span_start) noexcept;
#endif
/// Frees from a region that is not a standard OS region (static buffer, huge, none).
RAMALLOC_SLOW_PATH free_result heap_free_other(heap_state *current, void *p) noexcept;

/// Gives live block `p` (byte `off` of `pg`, whose size class is `cls`) back to its page;
/// the caller owns the page and has told the tools (annotate_freed, then
/// annotate_touch_begin of its first 8 bytes).
RAMALLOC_FAST_PATH void free_local(heap_state *owner, page *pg, std::byte *p, std::uint32_t off,
                                   std::size_t cls) noexcept {
  RAMALLOC_ASSERT(cls == pg->size_class);
  // LIFO onto the list the fast path pops: the block just freed is the next handed out,
  // while it is still in cache, and a malloc/free loop never leaves the fast paths.
  __builtin_memcpy(p, &pg->free_head, sizeof(std::uint32_t));
  annotate_touch_end(p, 8, annotate_block_size(pg));
  pg->free_head = off;
  owner->class_live[cls].sub(1);
  // One decrement tells the two exceptions from the common case (page::used_word): the
  // page emptied (an idle current page emptying again does not count), or it was full.
  if (RAMALLOC_UNLIKELY(pg->release_one_needs_more())) {
    if (pg->used() != 0)
      heap_unfull(owner, pg);
    else if (!pg->in_idle()) // out of the available list and idle: nothing to do
      page_emptied(owner, pg);
  }
}

/// Frees block `ptr` at byte `off` of in-use page `pg` of region `r`, validating that it
/// is a block start and not already free. `class_of()` gives the page's size class; it is
/// called only once the free is known to be local (the owner's own read). O(1).
template <class ClassOf>
RAMALLOC_FAST_PATH free_result free_in_page(heap_state *current, region *r, page *pg, void *ptr,
                                            std::uint32_t off, ClassOf class_of) noexcept {
  auto *p = static_cast<std::byte *>(ptr);
  // Only atomics are read before the block is known to be live (relaxed, but the magic:
  // acquire, so a free that sees a new format's shape sees its bump index of 0): a wild
  // pointer may race with the owner reformatting the page (format_page). A large span's magic makes any offset
  // but 0 fail the start check below (page::locate). A block at or past the bump index was
  // never handed out: a block start below bump * block_size was (bump <= capacity, so the
  // product stays inside the span, below 2^32).
  if (RAMALLOC_UNLIKELY(!pg->starts_block(off)))
    return free_result::interior;
  if (RAMALLOC_UNLIKELY(relaxed_at_or_past(off, pg, &page::bump_end)))
    return free_result::not_live;
  const std::uint32_t bs = annotate_block_size(pg); // for the tools only (0 without them)
  if (RAMALLOC_LIKELY(!relaxed_equals(pg, &page::block_size, 4u))) { // 4 bytes: no canary
    const std::uint32_t seen = annotate_peek32(p + 4);
    const std::uint32_t mark = canary_of(pg, p);
    if (RAMALLOC_UNLIKELY(seen == mark))
      return free_result::marked;
    // Tools learn of the free before the block can reach another thread.
    annotate_freed(p, bs);
    annotate_touch_begin(p, 8, bs);
    __builtin_memcpy(p + 4, &mark, sizeof mark);
  } else {
    // The 4-byte class has no room for a canary; what can be told for nothing is an
    // immediate double free: the block heads the list this free would push it on (the
    // page's own list for a local free, its remote list for a remote one). Inline: a call
    // here would make the whole fast path save registers.
    const std::uint32_t head = r->owner.load(std::memory_order_relaxed) == current
                                   ? pg->free_head
                                   : remote_word::head(pg->remote.load(std::memory_order_relaxed));
    if (RAMALLOC_UNLIKELY(head == off))
      return free_result::double_free;
    annotate_freed(p, bs);
  }
  if (RAMALLOC_UNLIKELY(!relaxed_equals(r, &region::owner, current))) {
    annotate_touch_end(p, 8, bs); // heap_free_remote touches the link itself
    heap_free_remote(current, r, pg, p, off);
    return free_result::freed;
  }
  free_local(current, pg, p, off, class_of());
  return free_result::freed;
}

/// Frees `p` after validating it. `current` is the caller's current heap (g_unbound if
/// it has none):
/// pages it owns are freed locally, others through their owner's remote word. O(1).
/// Null is never freed (the callers' out-of-line paths turn it into a no-op, so the fast
/// path needs no test of its own): no standard OS region lies in granule 0 (one would
/// have to start at address 0), so null is `other`, whether granule 0 maps nothing or a
/// static-buffer region.
RAMALLOC_FAST_PATH free_result heap_free(heap_state *current, void *ptr) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uintptr_t g = a >> region_shift;
  if (RAMALLOC_UNLIKELY(g >= granule_count))
    return free_result::not_ours;
  // Static-buffer and huge regions (and no region) are left to the caller's out-of-line
  // path (free_unusual), so no call is made here and the fast path saves no register.
  if (RAMALLOC_UNLIKELY(!acquire_tests_bits<os_region_tag>(&page_map[g])))
    return free_result::other;
  // A standard OS region: its header is at the granule's start, in the fixed layout.
  // slice_head is exact (span.cpp): a slice of an in-use span maps to its head, any other
  // slice to a span that is not in use or to slice 0, a header slice whose descriptor
  // is zero (state unused). So the state test is the whole check: no range test.
  region *r = os_region_at(a);
  const auto s = static_cast<std::uint32_t>((a >> slice_shift) & (slices_per_region - 1));
  const std::uint32_t h = os_slice_heads(r)[s].load(std::memory_order_relaxed);
  page *pg = os_region_pages(r) + h;
  if (RAMALLOC_UNLIKELY(!relaxed_equals(pg, &page::state, page_state::in_use)))
    return free_result::not_live;
  // The offset from the span's start, which is its head slice's address (a descriptor's
  // `start` holds the same, span.cpp): computed from the slice head, not loaded from the
  // descriptor, so the offset the free stores (free_head) waits for one load, not two.
  return free_in_page(current, r, pg, ptr,
                      static_cast<std::uint32_t>((a & (region_size - 1)) -
                                                 (std::uintptr_t{h} << slice_shift)),
                      [r, s] { return os_slice_classes(r)[s].load(std::memory_order_relaxed); });
}

/// "small", "medium" or "large": the kind of block `pg` holds (for reports).
const char *kind_name(const page *pg) noexcept;
/// Reports bad input about block `start` of `pg` (its size class, kind and owning heap).
void report_page_block(ram_error kind, const void *p, const char *what, const page *pg,
                       const void *start) noexcept;

/// Pays one unit of `h`'s parked frees (owner only): confirms the first one exactly and
/// frees it, or reports it as the double free it was. False if none was waiting.
/// O(parked_slots + the page's capacity).
bool settle_parked(heap_state *h) noexcept;
/// Whether block `p` (at byte `off` of fast page `pg`) is on one of its page's free lists,
/// for its owner: exact, O(the page's capacity). A list that leads out of the page (a
/// write after free damaged a link) counts as holding it.
bool block_listed(const page *pg, std::uint32_t off) noexcept;

/// Orphaned heaps waiting to be drained (kept by global/heaps.cpp), and the function that
/// services them, installed by that layer (the memory layer cannot name the orphan pool).
/// Slow paths pay a `debt_slice` of orphans' debt through it, so a program that never
/// calls reclaim still gets an exited thread's memory back.
extern std::atomic<std::uint64_t> g_orphans_waiting;
using orphan_service_fn = std::size_t (*)(std::size_t budget) noexcept;
extern std::atomic<orphan_service_fn> g_orphan_service;

/// Huge region descriptors come from a pool in metadata memory (never unmapped).
region *huge_region_new() noexcept;
void huge_region_recycle(region *r) noexcept;

/// Pays at most `budget` units of `h`'s debt; returns units still pending (a lower bound:
/// 0 means nothing is payable now) and, in `spent`, the units paid.
std::size_t heap_reclaim(heap_state *h, std::size_t budget, std::size_t *spent = nullptr) noexcept;
/// Pays everything and returns every free span policy allows. Unbounded.
void heap_flush(heap_state *h) noexcept;
/// Sets the reserve the heap owes from the options (minus what it already holds
/// resident), for a heap that starts a new life (created, pooled again, released), and
/// forgets when its owner last reclaimed (a new owner has not: auto purge applies).
void heap_owe_reserve(heap_state *h) noexcept;
/// Pre-faults all of the reserve the heap owes now. O(reserve): for explicit set-up only.
void heap_pay_reserve(heap_state *h) noexcept;
/// Debt units payable now.
std::size_t heap_pending(heap_state *h) noexcept;
/// Live blocks according to the heap's counters (remote frees not yet taken count as live).
std::uint64_t heap_live_blocks(const heap_state *h) noexcept;
void heap_stats(const heap_state *h, ram_stats *out) noexcept;
/// Frees every small, medium and large block of `h` at once by making all of its spans
/// free again (purged, for OS regions) and forgetting its inbox: O(spans), no block is
/// visited. Huge blocks are not touched. Owner only. Returns the spans visited.
std::size_t heap_release_all(heap_state *h) noexcept;

} // namespace ramalloc::detail
