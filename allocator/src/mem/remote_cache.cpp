// The remote-free cache: blocks a thread's heap frees for another thread's heap, kept to
// be handed out again by the thread that freed them.
//
// A remote free costs a CAS on the page's remote word, the block's line travels back to
// its owner's core when the owner reuses it, and the owner pays a settle for it. When a
// thread frees a small block of another thread heap, it keeps it instead (up to
// RAMALLOC_REMOTE_CACHE blocks per class) and hands it out when an acquire of the class
// finds its current page out of free blocks, before it turns to its next page: the
// block's line is already in this core's cache, and no atomic is taken. A thread thus
// prefers its own pages, and the blocks it keeps are reused where those run out (in
// larson, all the time); handing them out first instead spread a thread's long-lived
// objects over other heaps' pages, which then could not empty (thread churn: 10.7 MiB
// peak against 9.0). The block
// never leaves its page: it stays counted as used there (and live in its owner's
// statistics) until it comes back through an ordinary free, so the owner's pages,
// counters and debt need no change, and a page with a kept block is never retired.
//
// Only thread heaps keep and only blocks of thread heaps are kept: a `heap` (a zone)
// frees all of its blocks at once in release_all, so none of its blocks may sit in
// another heap's cache, and a block a zone handed out must be one of its own. Blocks of
// an orphan (its thread has exited) go straight back, so that it drains.
//
// A kept block carries its canary like any free block, and its bytes 8..15 hold the
// address of the slot that keeps it; the slot holds the block's address exactly while
// the block is kept. So a free that finds the canary (free_marked, the owner's verdict on
// a parked free, realloc's liveness check) tells a kept block from a live one in O(1),
// from any thread: the slot address must lie in the metadata arena (always mapped) and
// hold the block.
#include "mem/heap.hpp"

#include "pal/meta_arena.hpp"

namespace ramalloc::detail {

static_assert(class_block_size(rcache_first) == 16 &&
                  class_block_size(rcache_first + rcache_classes - 1) == 1024,
              "the remote-free cache keeps blocks of 16 B to 1 KiB: room for the slot address");

namespace {

rcache_bin &bin_of(heap_state *h, unsigned cls) noexcept {
  return h->rcache[cls - rcache_first];
}

/// The block on top of `b`, taken off (its slot cleared).
std::byte *take_top(rcache_bin &b) noexcept {
  --b.count;
  std::byte *p = b.slot[b.count].load(std::memory_order_relaxed);
  b.slot[b.count].store(nullptr, std::memory_order_relaxed);
  return p;
}

/// Kept block `p` goes to its owner as the free would have without the cache.
void give_back(std::byte *p) noexcept {
  region *r = region_of(p);
  page *pg = span_of(r, p);
  remote_push(r->owner.load(std::memory_order_relaxed), pg, p,
              static_cast<std::uint32_t>(p - pg->start));
}

} // namespace

bool rcache_keep(heap_state *current, const heap_state *owner, const page *pg,
                 std::byte *p) noexcept {
  // The caller's own words first: a thread that only frees (a consumer) finds its bins
  // full and reads no line of the owner's.
  const unsigned cls = pg->size_class;
  if (!rcache_class(cls) || !current->thread_heap) // g_unbound is no thread heap
    return false;
  rcache_bin &b = bin_of(current, cls);
  if (b.count >= g_options.remote_cache.load(std::memory_order_relaxed) ||
      !owner->thread_heap || owner->status.load(std::memory_order_relaxed) != heap_status::owned)
    return false;
  std::atomic<std::byte *> *slot = &b.slot[b.count];
  const std::uint32_t bs = annotate_block_size(pg);
  annotate_touch_begin(p, 16, bs);
  __builtin_memcpy(p + 8, &slot, sizeof slot);
  annotate_touch_end(p, 16, bs);
  slot->store(p, std::memory_order_relaxed);
  ++b.count;
  return true;
}

void *rcache_pop(heap_state *h, unsigned cls) noexcept {
  rcache_bin &b = bin_of(h, cls);
  std::byte *p = take_top(b);
  if (b.count < b.low)
    b.low = b.count;
  // Its page's `used` and its owner's live count already count it: nothing to count.
  const std::size_t bs = class_block_size(cls);
  annotate_touch_begin(p, 8, bs);
  __builtin_memset(p + 4, 0, 4);
  annotate_touch_end(p, 8, bs);
  return p;
}

bool rcache_holds(const page *pg, const void *p) noexcept {
  if (!rcache_class(pg->size_class))
    return false;
  const std::uint64_t at = annotate_peek64(static_cast<const std::byte *>(p) + 8);
  const auto *slot = reinterpret_cast<const std::atomic<std::byte *> *>(at);
  return at % alignof(std::atomic<std::byte *>) == 0 && meta_holds(slot, sizeof *slot) &&
         slot->load(std::memory_order_relaxed) == p;
}

void rcache_drain(heap_state *h) noexcept {
  for (rcache_bin &b : h->rcache) {
    while (b.count != 0) {
      count_step();
      give_back(take_top(b));
    }
    b.low = 0;
  }
}

std::size_t rcache_trim(heap_state *h, std::uint64_t now) noexcept {
  if (now - h->rcache_trimmed_ms < g_options.purge_delay_ms.load(std::memory_order_relaxed))
    return 0;
  h->rcache_trimmed_ms = now;
  std::size_t given = 0;
  for (rcache_bin &b : h->rcache) {
    // `low` blocks stayed in the bin since the last trim: no acquire needed them.
    for (; b.low != 0 && b.count != 0; --b.low, ++given) {
      count_step();
      give_back(take_top(b));
    }
    b.low = b.count;
  }
  return given;
}

} // namespace ramalloc::detail
