// Pages of a size class: formatting, the allocation slow path, local and remote frees,
// and paying debt.
#include "mem/heap.hpp"

#include <algorithm>
#include <cerrno>
#include <new>

#include "mem/checked.hpp"
#include "mem/span.hpp"
#include "pal/os_pages.hpp"

namespace ramalloc::detail {

constinit page g_empty_page{};
constinit heap_state g_unbound{};
constinit std::atomic<std::uint64_t> g_canary_key{0x5bd1e9955bd1e995ull};
constinit std::atomic<std::uint64_t> g_orphans_waiting{0};
constinit std::atomic<orphan_service_fn> g_orphan_service{nullptr};

namespace {

/// Blocks added to a page's free list per extension: about one OS page worth, so a fresh
/// page is never threaded whole and the cost per extension is a small constant.
constexpr std::uint32_t extend_count(std::uint32_t bs) {
  const std::uint32_t n = static_cast<std::uint32_t>(os_page_size) / bs;
  return n < 1 ? 1 : (n > 128 ? 128 : n);
}

/// The fast path's page for `cls`: the front of its available list, unless that is a
/// checked page, which only the slow path pops (checked_pop).
void sync_current(heap_state *h, unsigned cls) noexcept {
  page *f = h->avail[cls].front();
  h->current[cls] = f != nullptr && !f->checked.load(std::memory_order_relaxed) ? f : &g_empty_page;
}

void avail_push_back(heap_state *h, page *pg) noexcept {
  const unsigned cls = pg->size_class;
  h->avail[cls].push_back(pg);
  pg->set_in_avail(true);
  if (h->current[cls] == &g_empty_page)
    sync_current(h, cls);
}

void avail_remove(heap_state *h, page *pg) noexcept {
  const unsigned cls = pg->size_class;
  h->avail[cls].remove(pg);
  pg->set_in_avail(false);
  sync_current(h, cls);
}

/// Stores the shape of a span formatted again (a page of class `cls`, or a large span):
/// its bump index goes to 0 before the rest. A free racing the format (a stale or wild
/// pointer from another thread) reads the magic, then the block size, then the bump
/// index, so one that sees any of the new shape sees bump 0 and is rejected, never
/// accepted against the previous life's bump (release stores here, the free's magic load
/// is acquire: page::starts_block). The caller publishes the span's state last.
void store_shape(page *pg, std::uint8_t cls, std::uint32_t bs, std::uint32_t capacity,
                 std::uint64_t magic) noexcept {
#if defined(RAMALLOC_DEBUG)
  if (g_shape_begin_test_hook != nullptr)
    g_shape_begin_test_hook(pg->start);
#endif
  pg->bump.store(0, std::memory_order_relaxed);
  pg->bump_end.store(0, std::memory_order_relaxed);
  pg->checked_bump.store(0, std::memory_order_relaxed);
  pg->size_class = cls;
  pg->canary_key.store(static_cast<std::uint32_t>(g_canary_key.load(std::memory_order_relaxed)),
                       std::memory_order_relaxed);
  pg->block_size.store(bs, std::memory_order_release);
  pg->capacity.store(capacity, std::memory_order_relaxed);
  pg->div_magic.store(magic, std::memory_order_release);
  // The slice classes the local free indexes its counter with: every slice of a page (a
  // block may start in any), the head alone of a large span (its one block starts
  // there). At most a medium page's slices (32).
  static_assert(class_page_slices(class_count - 1) == 32);
  if (region *r = pg->home; r->kind == region_kind::os) {
    const auto first = static_cast<std::uint32_t>(pg - os_region_pages(r));
    const std::uint32_t n = cls == large_class ? 1 : pg->slices.load(std::memory_order_relaxed);
    for (std::uint32_t i = first; i < first + n; ++i)
      os_slice_classes(r)[i].store(cls, std::memory_order_relaxed);
  }
#if defined(RAMALLOC_DEBUG)
  if (g_format_test_hook != nullptr)
    g_format_test_hook(pg->start);
#endif
}

void format_page(page *pg, unsigned cls) noexcept {
  const auto bs = static_cast<std::uint32_t>(class_block_size(cls));
  const std::uint32_t slices = pg->slices.load(std::memory_order_relaxed);
  store_shape(pg, static_cast<std::uint8_t>(cls), bs,
              static_cast<std::uint32_t>(std::size_t{slices} * slice_size / bs),
              division_magic(bs));
  pg->free_head = nil_offset;
  pg->local_free_head = nil_offset;
  pg->set_used(0);
  pg->checked.store(checked_mode() &&
                        checked_format(pg->home, pg, pg->capacity.load(std::memory_order_relaxed)),
                    std::memory_order_relaxed);
  pg->set_in_avail(false);
  pg->remote.store(remote_word::empty, std::memory_order_relaxed);
  pg->state.store(page_state::in_use, std::memory_order_release);
  annotate_page_formatted(pg->start, std::size_t{slices} * slice_size, bs);
}

/// An empty page goes to the cache (one-slice pages) or back to the span bins.
void retire_page(heap_state *h, page *pg) noexcept {
  if (pg->in_idle()) {
    h->idle.remove(pg);
    pg->set_in_idle(false);
  }
  if (pg->in_avail())
    avail_remove(h, pg);
  if (pg->slices.load(std::memory_order_relaxed) != 1 || h->static_region != nullptr) {
    span_free(h, pg, false);
    return;
  }
  pg->state.store(page_state::cached, std::memory_order_relaxed);
  pg->freed_at_ms = now_ms();
  h->cache.push_back(pg);
  if (h->cache.size() > g_options.page_cache.load(std::memory_order_relaxed)) {
    page *old = h->cache.pop_front();
    old->state.store(page_state::in_use, std::memory_order_relaxed);
    span_free(h, old, false);
  }
}

/// A page with no free block, or nullptr when memory is exhausted.
page *fresh_page(heap_state *h, unsigned cls) noexcept {
  const std::uint32_t slices = class_page_slices(cls);
  page *pg = nullptr;
  if (slices == 1 && !h->cache.empty()) {
    pg = h->cache.pop_back(); // the most recently used page is the warmest
  } else {
    pg = span_alloc(h, slices, 1);
    if (pg == nullptr)
      return nullptr;
  }
  format_page(pg, cls);
  h->avail[cls].push_front(pg);
  pg->set_in_avail(true);
  h->current[cls] = pg->checked.load(std::memory_order_relaxed) ? &g_empty_page : pg;
  return pg;
}

/// Calls `mark(block, link)` for the blocks at byte offsets first, first + bs, ..., last
/// of the span at `start`, each linked to the next and the last to nil_offset. The
/// pointer and the link advance together, and the last block (there is at least one) is
/// out of the loop, so a loop turn is its stores and two adds.
template <typename Mark>
RAMALLOC_FAST_PATH void thread_blocks(std::byte *start, std::uint32_t first, std::uint32_t last,
                                      std::uint32_t bs, Mark mark) noexcept {
  std::byte *b = start + first;
  std::byte *const end = start + last;
  if (b != end) {
    std::uint32_t next = first + bs;
    do {
      count_step();
      mark(b, next);
      b += bs;
      next += bs;
    } while (b != end);
  }
  count_step();
  mark(end, nil_offset);
}

/// Threads up to extend_count() never-used blocks onto the free list (links encoded and
/// blocks pattern-filled on a checked page, as if each had been freed). Out of line: its
/// loops get the registers to themselves.
__attribute__((noinline)) void extend_page(page *pg) noexcept {
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const std::uint32_t cap = pg->capacity.load(std::memory_order_relaxed);
  const std::uint32_t bump = page_bump(pg);
  const bool checked = pg->checked.load(std::memory_order_relaxed);
  std::uint32_t n = cap - bump;
  if (n > extend_count(bs))
    n = extend_count(bs);
  const std::uint32_t first = bump * bs;
  const std::uint32_t last = first + (n - 1) * bs;
  std::byte *const start = pg->start;
  annotate_touch_begin(start + first, std::size_t{n} * bs, bs);
  if (checked) {
    const std::uint32_t key = link_key(pg);
    thread_blocks(start, first, last, bs, [key, bs](std::byte *b, std::uint32_t link) {
      link ^= key;
      __builtin_memcpy(b, &link, sizeof link);
      fill_freed(b, 4, bs);
    });
  } else if (bs == 4) { // no room for a canary
    thread_blocks(start, first, last, bs, [](std::byte *b, std::uint32_t link) {
      __builtin_memcpy(b, &link, sizeof link);
    });
  } else {
    // A threaded block is free: it carries the canary (the key loaded once), so a free of
    // it (a pointer to a block never handed out) is caught as a double free instead of
    // listing it twice.
    const std::uint32_t key = pg->canary_key.load(std::memory_order_relaxed);
    thread_blocks(start, first, last, bs, [key](std::byte *b, std::uint32_t link) {
      const std::uint32_t mark = canary_of(b, key);
      __builtin_memcpy(b, &link, sizeof link);
      __builtin_memcpy(b + 4, &mark, sizeof mark);
    });
  }
  annotate_touch_end(start + first, std::size_t{n} * bs, bs);
  pg->free_head = first;
  set_page_bump(pg, bump + n);
}

/// Takes the page's remote list (keeping its "queued" bit): O(1) whatever its length.
std::uint32_t take_remote(heap_state *h, page *pg) noexcept {
  if (remote_word::count(pg->remote.load(std::memory_order_relaxed)) == 0)
    return nil_offset;
  const std::uint64_t w = pg->remote.fetch_and(remote_word::queued, std::memory_order_acq_rel);
  const std::uint32_t n = remote_word::count(w);
  pg->sub_used(n);
  h->class_live[pg->size_class].sub(n);
  h->remote_frees.add(n);
  return n == 0 ? nil_offset : remote_word::head(w);
}

/// Whether a page holds freed blocks on one of its lists (its own, the parked remote one,
/// or the remote word), as opposed to only never-used room past its bump index.
bool has_listed_block(const page *pg) noexcept {
  return pg->free_head != nil_offset || pg->local_free_head != nil_offset ||
         remote_word::count(pg->remote.load(std::memory_order_relaxed)) != 0;
}

/// rotate_for_reuse's turn for front page `pg`, which has room and no freed block: +1 when
/// the page behind it has freed blocks (`pg` goes to the back), -1 when the last page has
/// (it comes to the front), 0 when neither has.
int reuse_turn(const heap_state *h, const page *pg) noexcept {
  const auto reusable = [](const page *p) {
    return p != nullptr && !p->checked.load(std::memory_order_relaxed) && has_listed_block(p);
  };
  if (reusable(pg->links.next))
    return 1;
  const page *last = h->avail[pg->size_class].back();
  return last != pg && reusable(last) ? -1 : 0;
}

/// Before the front page of a class extends by bump (touching memory never used), the
/// freed blocks of another page go first: the front page moves to the back of the list
/// (it keeps its room for later) when it has no freed block and the page behind it, or
/// the last one (where pages settled from the inbox arrive), has some. Without this, a
/// heap adopted with many partly freed pages grew its current pages to their capacity
/// while the others' free blocks waited (thread-churn: about half the pages' bumped
/// bytes were free). O(1): two pages are looked at.
bool rotate_for_reuse(heap_state *h, page *pg) noexcept {
  // An exhausted page (no room either) is not rotated: refill fails and drops it.
  if (has_listed_block(pg) || pg->checked.load(std::memory_order_relaxed) ||
      page_bump(pg) >= pg->capacity.load(std::memory_order_relaxed))
    return false;
  const unsigned cls = pg->size_class;
  const int turn = reuse_turn(h, pg);
  if (turn > 0) {
    h->avail[cls].remove(pg);
    h->avail[cls].push_back(pg);
  } else if (turn < 0) {
    page *last = h->avail[cls].back();
    h->avail[cls].remove(last);
    h->avail[cls].push_front(last);
  } else {
    return false;
  }
  sync_current(h, cls);
  return true;
}

/// Gives the page a non-empty free list if it can without leaving the page.
bool refill(heap_state *h, page *pg) noexcept {
  if (pg->free_head != nil_offset)
    return true;
  if (pg->local_free_head != nil_offset) {
    pg->free_head = pg->local_free_head;
    pg->local_free_head = nil_offset;
    return true;
  }
  const std::uint32_t r = take_remote(h, pg);
  if (r != nil_offset) {
    pg->free_head = r;
    return true;
  }
  if (page_bump(pg) < pg->capacity.load(std::memory_order_relaxed)) {
    extend_page(pg);
    return true;
  }
  return false;
}

} // namespace

void heap_unfull(heap_state *h, page *pg) noexcept {
  avail_push_back(h, pg);
}

namespace {

bool is_queued(const page *pg) noexcept {
  return (pg->remote.load(std::memory_order_acquire) & remote_word::queued) != 0;
}

/// An empty small/medium page: the class's current page stays (a class that bounces at
/// a page boundary must not thrash) but joins the idle list, from which reclaim retires
/// it after purge_delay; any other page is retired now. A checked page (never current)
/// also waits on the idle list, so a late double free of one of its blocks still finds
/// the block's live bit and is named as such for purge_delay — and it waits in its
/// class's available list too, so the class allocates from it again rather than from a
/// fresh page (a page that filled up, left the list and emptied through remote frees
/// would otherwise sit unused for purge_delay: prodcons held 84 MiB for 4).
void page_now_empty(heap_state *h, page *pg) noexcept {
  if (h->current[pg->size_class] != pg && !pg->checked.load(std::memory_order_relaxed)) {
    retire_page(h, pg);
    return;
  }
  if (!pg->in_idle()) {
    pg->freed_at_ms = now_ms();
    h->idle.push_back(pg);
    pg->set_in_idle(true);
  }
  if (!pg->in_avail()) // a checked page (a current page is always in the list)
    avail_push_back(h, pg);
}

void large_release(heap_state *h, page *pg) noexcept {
  h->large_live_bytes.sub(pg->block_size.load(std::memory_order_relaxed));
  span_free(h, pg, false);
}

/// Whether a page has a block to hand out without taking its remote list.
bool has_free_block(const page *pg) noexcept {
  return pg->free_head != nil_offset || pg->local_free_head != nil_offset ||
         page_bump(pg) < pg->capacity.load(std::memory_order_relaxed);
}

/// How long an inbox entry the owner put back (watch) waits before a reclaim step or a
/// back-pressure slice visits it again; growth and flush do not wait.
constexpr std::uint64_t watch_delay_ms = 1;

/// Puts page `pg`, just popped from its owner's inbox and settled with the blocks of its
/// remote list, back on the inbox with its queued bit set again, so that the remote frees
/// that keep arriving into it are one CAS each instead of a push of the page (an exchange
/// and an add on lines every freeing thread writes): without it, an owner that reclaims
/// on every turn of its loop settled each page as soon as it was pushed, and the next
/// remote free pushed it again (19-25% of native prodcons' remote frees). The entry is
/// not debt and not payable for watch_delay_ms (reclaim and back-pressure leave it),
/// unless its frees would empty the page (watch_due), so the page collects a millisecond
/// of frees per visit; a visit that finds none lets it go. False when a remote free
/// queued the page again in between (it is on the inbox already).
bool watch(heap_state *h, page *pg) noexcept {
  if (pg->remote.fetch_or(remote_word::queued, std::memory_order_acq_rel) & remote_word::queued)
    return false;
  pg->watched = true;
  pg->watched_at_ms = now_ms();
  h->inbox_watched.add(1);
  h->inbox.push(pg); // still counted in inbox_count
  return true;
}

/// Whether watched entry `pg` is payable: its delay has passed, or its remote list now
/// holds every block still out (the page would empty: its memory does not wait).
bool watch_due(const page *pg) noexcept {
  return now_ms() - pg->watched_at_ms >= watch_delay_ms ||
         remote_word::count(pg->remote.load(std::memory_order_relaxed)) >= pg->used();
}

/// The next inbox entry to pay, or nullptr: none, or the front one is a watched entry
/// younger than watch_delay_ms and `any_age` is false (it then waits in inbox_held, still
/// the front).
page *inbox_next(heap_state *h, bool any_age) noexcept {
  page *pg = h->inbox_held;
  if (pg == nullptr)
    pg = h->inbox.pop();
  else
    h->inbox_held = nullptr;
  if (pg != nullptr && pg->watched && !any_age && !watch_due(pg)) {
    h->inbox_held = pg;
    return nullptr;
  }
  return pg;
}

/// Pays one unit: a page taken from the inbox (inbox_next). `may_watch`: the page may go
/// back on the inbox (watch) when its remote list gave blocks and it still has blocks out.
void settle_inbox_page(heap_state *h, page *pg, bool may_watch = true) noexcept {
  if (pg->watched) {
    pg->watched = false;
    h->inbox_watched.sub(1);
  }
  if (pg->size_class == large_class) {
    h->inbox_count.fetch_sub(1, std::memory_order_relaxed);
    const std::uint64_t w = pg->remote.exchange(remote_word::empty, std::memory_order_acq_rel);
    h->remote_frees.add(remote_word::count(w));
    if (remote_word::count(w) != 0) {
      pg->set_used(0);
      h->class_live[large_class].sub(1);
      large_release(h, pg);
    }
    return;
  }
  bool watched = false;
  if (pg->free_head == nil_offset || pg->local_free_head == nil_offset) {
    // Somewhere to put the list: take it whole and clear "queued".
    const std::uint64_t w = pg->remote.exchange(remote_word::empty, std::memory_order_acq_rel);
    const std::uint32_t n = remote_word::count(w);
    if (n != 0) {
      pg->sub_used(n);
      h->class_live[pg->size_class].sub(n);
      h->remote_frees.add(n);
      if (pg->free_head == nil_offset)
        pg->free_head = remote_word::head(w);
      else
        pg->local_free_head = remote_word::head(w);
      // Blocks are still out, so more remote frees may follow: watch the page. Only its
      // owner does (an orphan's servicer pays the orphan down instead).
      watched = may_watch && pg->used() != 0 && !pg->checked.load(std::memory_order_relaxed) &&
                h->status.load(std::memory_order_relaxed) == heap_status::owned && watch(h, pg);
    }
  } else {
    // Both lists busy: leave the remote list in place (a later refill takes it) but learn
    // in O(1) whether every block of the page is now free.
    const std::uint64_t w = pg->remote.fetch_and(~remote_word::queued, std::memory_order_acq_rel);
    const std::uint32_t n = remote_word::count(w);
    if (n == pg->used()) {
      // Nothing live, so no further free can arrive: every block is free, wherever its
      // link is. Rather than splice three lists (a walk), start the page over: lazy
      // extension hands its blocks out again from the first. O(1).
      pg->remote.store(remote_word::empty, std::memory_order_relaxed);
      pg->free_head = nil_offset;
      pg->local_free_head = nil_offset;
      set_page_bump(pg, 0);
      pg->set_used(0);
      h->class_live[pg->size_class].sub(n);
      h->remote_frees.add(n);
    }
  }
  if (!watched)
    h->inbox_count.fetch_sub(1, std::memory_order_relaxed);
  if (pg->used() == 0) {
    page_now_empty(h, pg);
  } else if (!pg->in_avail() && has_free_block(pg)) {
    // Only a page with a block to give goes back: a page whose remote list an earlier
    // refill took (its entry was still queued) may have run out since, and an empty
    // entry in the available list would cost the slow path a turn. A page left out
    // comes back with its next local free (heap_unfull) or remote free (queued again:
    // the exchange above cleared "queued", or its watched entry is visited again).
    avail_push_back(h, pg);
  }
}

/// Dirty bytes a heap keeps resident whatever their age: 4 purge budgets (4 MiB by
/// default) or twice its other committed memory (pages in use, cached or idle),
/// whichever is larger, so a heap that shrinks a little reuses its own resident spans
/// and one that drops most of its data (a burst of frees) gives it back at the rate it
/// frees it. Reclaim steps and auto purge pay the same cap.
std::uint64_t dirty_cap(const heap_state *h, std::uint64_t budget) noexcept {
  const std::uint64_t held = h->committed.get() - h->dirty_bytes;
  const std::uint64_t floor = 4 * budget;
  return 2 * held > floor ? 2 * held : floor;
}

/// Whether `h` keeps more dirty memory than its cap allows by a budget or more: then a
/// purge step may purge at once, without waiting for purge_delay.
bool over_dirty_cap(const heap_state *h, std::uint64_t budget) noexcept {
  return h->dirty_bytes >= dirty_cap(h, budget) + budget;
}
bool over_dirty_cap(const heap_state *h) noexcept {
  return over_dirty_cap(h, g_options.purge_budget.load(std::memory_order_relaxed));
}

/// The idle list's front entry, if it is stale: its page was used again after it joined
/// (the fast path cannot unlink it). Dropping one stale entry is one unit of work, like
/// any other purge step, so a long run of them never lengthens one step.
page *stale_idle_front(heap_state *h) noexcept {
  page *i = h->idle.front();
  return i != nullptr && i->used() != 0 ? i : nullptr;
}

/// One unit of purge work if any is due; `bytes_left` is this step's purge budget. The
/// oldest dirty span is due after purge_delay, or at once while the heap is over its
/// dirty cap: an owner that reclaims from its loop gets no auto purge, and without the
/// cap its steps held everything freed within the last purge_delay (frag under --native:
/// 160 MiB resident at the end of its churn against 105 for the same heap under
/// LD_PRELOAD, whose acquires pay the cap).
bool purge_step(heap_state *h, std::uint64_t now, std::size_t &bytes_left) noexcept {
  if (page *stale = stale_idle_front(h)) {
    h->idle.pop_front();
    stale->set_in_idle(false);
    return true;
  }
  const std::uint64_t delay = g_options.purge_delay_ms.load(std::memory_order_relaxed);
  page *i = h->idle.front();
  if (i != nullptr && now - i->freed_at_ms >= delay) {
    // A current page that stayed empty for purge_delay: its class is idle, retire it.
    h->idle.pop_front();
    i->set_in_idle(false);
    if (!is_queued(i))
      retire_page(h, i);
    return true;
  }
  page *c = h->cache.front();
  if (c != nullptr && now - c->freed_at_ms >= delay) {
    // An idle cached page: hand it to the bins as dirty; the dirty FIFO purges it.
    h->cache.pop_front();
    c->state.store(page_state::in_use, std::memory_order_relaxed);
    span_free(h, c, false);
    return true;
  }
  page *d = h->dirty_fifo.front();
  if (d == nullptr || bytes_left < slice_size)
    return false;
  if (now - d->freed_at_ms < delay && !over_dirty_cap(h))
    return false;
  const std::size_t done = span_purge_front(h, bytes_left);
  bytes_left -= done;
  return done != 0;
}

/// Reclaim units the reserve still owes: one per purge_budget bytes.
std::size_t reserve_units(const heap_state *h) noexcept {
  const std::uint64_t owed = h->reserve_owed.load(std::memory_order_relaxed);
  const std::uint64_t unit = g_options.purge_budget.load(std::memory_order_relaxed);
  return owed == 0 ? 0 : static_cast<std::size_t>((owed + unit - 1) / unit);
}

bool purge_due(heap_state *h, std::uint64_t now) noexcept {
  if (stale_idle_front(h) != nullptr)
    return true;
  const std::uint64_t delay = g_options.purge_delay_ms.load(std::memory_order_relaxed);
  const page *i = h->idle.front();
  if (i != nullptr && now - i->freed_at_ms >= delay)
    return true;
  const page *c = h->cache.front();
  if (c != nullptr && now - c->freed_at_ms >= delay)
    return true;
  const page *d = h->dirty_fifo.front();
  // A step can purge only a whole slice above the reserve (span_purge_front).
  return d != nullptr && (now - d->freed_at_ms >= delay || over_dirty_cap(h)) &&
         h->committed.get() >= g_options.reserve.load(std::memory_order_relaxed) + slice_size;
}

/// Back-pressure for orphans: a slow path that finds orphaned heaps waiting pays at most
/// `debt_slice` units of their debt (one orphan, popped exclusively). Bounded like the
/// heap's own slice; an owner that reclaims from its loop pays orphans there instead.
void pay_orphan_slice() noexcept {
  if (g_orphans_waiting.load(std::memory_order_relaxed) == 0)
    return;
  if (orphan_service_fn service = g_orphan_service.load(std::memory_order_acquire))
    service(g_options.debt_slice.load(std::memory_order_relaxed));
}

/// Settles up to debt_slice inbox pages, oldest first (each at most once: a page put back
/// waits), stopping early after a page for which `enough` is true. `any_age`: watched
/// entries are due whatever their age (inbox_next).
template <class Enough>
void settle_inbox_slice(heap_state *h, Enough enough, bool any_age) noexcept {
  std::uint64_t slice = g_options.debt_slice.load(std::memory_order_relaxed);
  slice = std::min(slice, h->inbox_count.load(std::memory_order_relaxed));
  while (slice-- != 0) {
    count_step();
    page *pg = inbox_next(h, any_age);
    if (pg == nullptr)
      return;
    settle_inbox_page(h, pg);
    if (enough(pg))
      return;
  }
}

/// Before a class touches memory it never used (its front page would extend by bump, or
/// a fresh page would be made), pages waiting in the inbox may hold the blocks it needs:
/// blocks freed remotely into full pages are out of reach until their page is settled.
/// Settles up to another debt_slice of them (so a slow path pays at most two slices),
/// stopping at the first that gives this class a page with freed blocks. This slice is
/// paid on every slow path that would grow, the back-pressure one only on its turn
/// (debt_interval). Under thread
/// churn an adopted heap's pages all receive the previous owner's frees at once; the
/// back-pressure slice alone (2 pages a slow path) let the heap grow past them.
void settle_before_growth(heap_state *h, unsigned cls) noexcept {
  if (h->inbox_count.load(std::memory_order_relaxed) == 0)
    return;
  const page *f = h->avail[cls].front();
  if (f != nullptr && (has_listed_block(f) || f->checked.load(std::memory_order_relaxed)))
    return;
  // An exhausted front page (the current page that just ran out, usually) gives way to
  // the page behind it: no growth either when that one holds freed blocks.
  if (f != nullptr && page_bump(f) >= f->capacity.load(std::memory_order_relaxed) &&
      f->links.next != nullptr && has_listed_block(f->links.next))
    return;
  settle_inbox_slice(
      h, [cls](const page *pg) { return pg->size_class == cls && pg->in_avail() && has_listed_block(pg); },
      true); // growth does not wait for a watched page's delay
}

/// Whether auto purge applies to `h`: its owner has never called reclaim, or not for
/// purge_delay, and it holds something a purge step could work on.
bool auto_purging(const heap_state *h, std::uint64_t now) noexcept {
  if (h->dirty_fifo.empty() && h->cache.empty() && h->idle.empty())
    return false;
  if (!g_options.auto_purge.load(std::memory_order_relaxed))
    return false;
  return h->last_reclaim_ms == 0 ||
         now - h->last_reclaim_ms >= g_options.purge_delay_ms.load(std::memory_order_relaxed);
}

/// Whether an auto-purge step would call madvise: dirty spans beyond dirty_cap() by a
/// budget or more, or a dirty span idle for purge_delay (in both cases only if the heap
/// holds a slice above its reserve, so the step can purge something).
bool madvise_owed(const heap_state *h, std::uint64_t now, std::uint64_t budget) noexcept {
  const page *d = h->dirty_fifo.front();
  if (d == nullptr ||
      h->committed.get() < g_options.reserve.load(std::memory_order_relaxed) + slice_size)
    return false;
  return over_dirty_cap(h, budget) ||
         now - d->freed_at_ms >= g_options.purge_delay_ms.load(std::memory_order_relaxed);
}

/// Auto purge on an acquire slow path: a heap whose owner has never called reclaim, or
/// not for purge_delay, pays one purge step here (at most purge_budget bytes, one
/// madvise). Dirty spans beyond dirty_cap() by a budget or more are purged at once, oldest
/// first, without waiting for purge_delay: a program that frees a gigabyte and then serves
/// from pages it already holds takes too few slow paths for the delayed steps to catch up
/// (burst: 1117 MiB stayed resident). Otherwise the step is the delayed one reclaim pays.
/// Owners that reclaim from their event loop never get here; programs that never reclaim
/// (the malloc override) still give memory back. Returns whether madvise work is still
/// owed after this step (the caller keeps its class's next acquire on the slow path).
bool maybe_auto_purge(heap_state *h) noexcept {
  const std::uint64_t now = now_ms();
  if (!auto_purging(h, now))
    return false;
  std::size_t bytes = g_options.purge_budget.load(std::memory_order_relaxed);
  const std::size_t budget = bytes;
  if (over_dirty_cap(h, bytes))
    span_purge_front(h, bytes);
  else
    purge_step(h, now, bytes);
  return madvise_owed(h, now, budget);
}

/// Sends the next acquire of every class to the slow path, where auto purge pays what is
/// owed: the fast path takes the slow path whenever its current page has no free block,
/// so unsetting the current pages costs the fast path nothing. O(class_count).
void owe_acquires(heap_state *h) noexcept {
  for (auto &c : h->current) {
    count_step();
    c = &g_empty_page;
  }
}

/// Auto purge on a discard slow path (a free that empties a page): the steps that need no
/// OS call are paid here, but a free never calls madvise. Purge work it finds owed is
/// left to the heap's next acquires (owe_acquires): a burst of frees stays as fast as the
/// frees themselves (burst under LD_PRELOAD: one free in 500 used to madvise a budget,
/// p99.99 ~150 us), and the memory goes back as the program allocates again.
void auto_purge_on_discard(heap_state *h) noexcept {
  const std::uint64_t now = now_ms();
  if (!auto_purging(h, now))
    return;
  std::size_t no_bytes = 0;
  purge_step(h, now, no_bytes); // never purges a dirty span without bytes
  if (madvise_owed(h, now, g_options.purge_budget.load(std::memory_order_relaxed)))
    owe_acquires(h);
}

/// The in-use span holding `p` (small, medium or large), or nullptr. O(1).
page *span_holding(const void *p) noexcept {
  const region *r = region_of(p);
  return r != nullptr && r->kind != region_kind::huge ? span_of(r, p) : nullptr;
}

} // namespace

std::uint32_t free_block_mark(const void *p) noexcept {
  const page *pg = span_holding(p);
  return pg != nullptr ? canary_of(pg, p) : 0;
}

const char *kind_name(const page *pg) noexcept {
  if (is_large_span(pg))
    return "large";
  return pg->slices.load(std::memory_order_relaxed) == 1 ? "small" : "medium";
}

void report_page_block(ram_error kind, const void *p, const char *what, const page *pg,
                       const void *start) noexcept {
  report_block_error(kind, p, what, start, pg->block_size.load(std::memory_order_relaxed),
                     kind_name(pg), pg->home->owner.load(std::memory_order_relaxed));
}

// --- the canary's confirmation --------------------------------------------------------

namespace {

/// Whether the list from `head` holds block `off`: links are followed at most `limit`
/// times, and one that is not a block handed out by the page ends the walk with "yes"
/// (a damaged list cannot prove the block live; reporting it changes nothing).
bool list_holds(const page *pg, std::uint32_t head, std::uint32_t off,
                std::uint32_t limit) noexcept {
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const std::uint32_t end = page_bump(pg) * bs;
  std::uint32_t at = head;
  for (std::uint32_t i = 0; at != nil_offset; ++i) {
    count_step();
    if (at == off || i == limit || at >= end || at % bs != 0)
      return true;
    at = load_link(pg, pg->start + at);
  }
  return false;
}

/// Parks a remote free of a block that carried its canary in its owner's slots. False if
/// every slot is taken (a storm of double frees: the caller reports this one).
bool park(heap_state *owner, std::byte *p) noexcept {
  owner->parked_count.fetch_add(1, std::memory_order_relaxed);
  for (auto &slot : owner->parked) {
    count_step();
    std::byte *empty = nullptr;
    if (slot.load(std::memory_order_relaxed) == nullptr &&
        slot.compare_exchange_strong(empty, p, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      if (owner->status.load(std::memory_order_relaxed) == heap_status::orphaned)
        pay_orphan_slice(); // nobody owns it: the freeing thread helps, as for the inbox
      return true;
    }
  }
  owner->parked_count.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

/// The owner's verdict on parked free `p`: a live block holding its canary by chance is
/// freed; a block on a free list, or one whose canary is gone (handed out again since:
/// the first free put it back), or one whose page has gone, was already free.
void confirm_parked(heap_state *h, std::byte *p) noexcept {
  page *pg = span_holding(p);
  if (pg != nullptr && !pg->checked.load(std::memory_order_relaxed) &&
      pg->home->owner.load(std::memory_order_relaxed) == h) {
    const auto off = static_cast<std::uint32_t>(p - pg->start);
    const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
    const page::position at = pg->locate(off);
    if (at.start && at.index < page_bump(pg) &&
        annotate_peek32(p + 4) == canary_of(pg, p) && !block_listed(pg, off) &&
        !rcache_holds(pg, p)) {
      annotate_freed(p, bs);
      annotate_touch_begin(p, 8, bs);
      free_local(h, pg, p, off, pg->size_class);
      return;
    }
  }
  count_invalid_free();
  static constexpr const char *what =
      "the block is already free (freed from another thread; confirmed by its owning heap)";
  if (pg != nullptr)
    report_page_block(RAM_ERROR_DOUBLE_FREE, p, what, pg, p);
  else
    report_error(RAM_ERROR_DOUBLE_FREE, p, what);
}

} // namespace

bool block_listed(const page *pg, std::uint32_t off) noexcept {
  const std::uint32_t limit = page_bump(pg);
  if (list_holds(pg, pg->free_head, off, limit) || list_holds(pg, pg->local_free_head, off, limit))
    return true;
  // The remote list's links were written before the CAS that published them (acquire
  // here); pushes after this load only prepend, so the chain read is stable.
  const std::uint64_t w = pg->remote.load(std::memory_order_acquire);
  return list_holds(pg, remote_word::head(w), off, remote_word::count(w));
}

free_result free_marked(heap_state *current, void *ptr) noexcept {
  // heap_free found a block start of an in-use fast page here, holding its canary.
  auto *p = static_cast<std::byte *>(ptr);
  region *r = region_of(p);
  page *pg = r != nullptr ? span_of(r, p) : nullptr;
  if (pg == nullptr || pg->checked.load(std::memory_order_relaxed))
    return free_result::double_free; // its page went back meanwhile (a racing free)
  if (rcache_holds(pg, p))
    return free_result::double_free; // kept in a remote-free cache: free
  const auto off = static_cast<std::uint32_t>(p - pg->start);
  heap_state *owner = r->owner.load(std::memory_order_relaxed);
  if (owner == current) {
    if (block_listed(pg, off))
      return free_result::double_free;
    // Live, holding its canary value by chance: freed like any other.
    const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
    annotate_freed(p, bs);
    annotate_touch_begin(p, 8, bs);
    free_local(owner, pg, p, off, pg->size_class);
    return free_result::freed;
  }
  if (remote_word::head(pg->remote.load(std::memory_order_acquire)) == off)
    return free_result::double_free; // it heads the remote list: freed remotely just now
  return park(owner, p) ? free_result::freed : free_result::unconfirmed;
}

bool settle_parked(heap_state *h) noexcept {
  if (h->parked_count.load(std::memory_order_relaxed) == 0)
    return false;
  for (auto &slot : h->parked) {
    count_step();
    if (slot.load(std::memory_order_relaxed) == nullptr)
      continue;
    if (std::byte *p = slot.exchange(nullptr, std::memory_order_acquire)) {
      h->parked_count.fetch_sub(1, std::memory_order_relaxed);
      confirm_parked(h, p);
      return true;
    }
  }
  return false;
}

void heap_init(heap_state *h) noexcept {
  for (auto &c : h->current)
    c = &g_empty_page;
  h->inbox.init(&h->inbox_stub);
}

namespace {

/// Whether the class's current page `pg` can simply extend on this acquire slow path:
/// it has room past its bump index and no freed block, and nothing the full slow path
/// does first applies (no inbox page or parked free to settle, no orphan to service, no
/// page behind it with freed blocks to turn to: reuse_turn). A fresh page then costs the
/// per-page bookkeeping (settling, orphans, auto purge and its clock read) once, when it
/// runs out, instead of once per extension: a 4 KiB class extends one block at a time
/// (a malloc/free batch of 1000 blocks of 4 KiB took ~300 instructions a block on this
/// path). The page is the avail front and never a checked page (sync_current); unset
/// (g_empty_page, e.g. after owe_acquires) it has no room.
bool extends_at_once(const heap_state *h, const page *pg) noexcept {
  if (pg->bump.load(std::memory_order_relaxed) >= pg->capacity.load(std::memory_order_relaxed) ||
      has_listed_block(pg))
    return false;
  if (h->inbox_count.load(std::memory_order_relaxed) != 0 ||
      h->parked_count.load(std::memory_order_relaxed) != 0 ||
      g_orphans_waiting.load(std::memory_order_relaxed) != 0)
    return false;
  return reuse_turn(h, pg) == 0;
}

/// Hands out the block at `pg`'s bump index without threading it (a class whose
/// extension is one block: threading would write its link only for the pop to read it),
/// as a pop of a threaded block would (hand_out).
void *bump_one(heap_state *h, page *pg, unsigned cls) noexcept {
  const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
  const std::uint32_t bump = pg->bump.load(std::memory_order_relaxed);
  std::byte *b = pg->start + std::size_t{bump} * bs;
  set_page_bump(pg, bump + 1);
  annotate_touch_begin(b, 8, bs);
  return hand_out<false>(h, pg, cls, b); // no 4-byte class: its blocks are threaded
}

/// Whether this acquire slow path, which found inbox pages waiting, pays the
/// back-pressure slice: one in debt_interval does. Settling a page clears its queued bit,
/// so the next remote free into it pushes it on the inbox again (an exchange on the
/// inbox tail and an add on inbox_count, lines that every freeing thread and the owner
/// write); a page left queued longer collects more remote frees per trip through the
/// inbox, each of them one CAS on its remote word alone. Growth still settles at once
/// (settle_before_growth), so memory does not wait for the turn.
bool back_pressure_turn(heap_state *h) noexcept {
  if (++h->slow_paths_since_debt < g_options.debt_interval.load(std::memory_order_relaxed))
    return false;
  h->slow_paths_since_debt = 0;
  return true;
}

/// heap_alloc_slow's cold part: the class's next page, after the debt and auto purge its
/// slow paths pay.
RAMALLOC_SLOW_PATH void *alloc_from_next_page(heap_state *h, unsigned cls) noexcept {
  // A checked page with a free block: every acquire from it comes here (it is never the
  // fast path's current page), so skip the debt and purge checks as the fast path does.
  if (page *f = h->avail[cls].front();
      f != nullptr && f->free_head != nil_offset && f->checked.load(std::memory_order_relaxed))
    return checked_pop(h, f, cls);
  // Back-pressure: a heap whose owner never calls reclaim still converges.
  if (h->inbox_count.load(std::memory_order_relaxed) != 0 && back_pressure_turn(h))
    settle_inbox_slice(h, [](const page *) { return false; }, false);
  settle_parked(h);
  pay_orphan_slice();
  const bool purge_owed = maybe_auto_purge(h);
  settle_before_growth(h, cls);
  // At most four turns: the front page may give way to another page with freed blocks
  // (rotate_for_reuse; that page then refills), or be exhausted; every other page in the
  // available list has a free block by construction (pages join it only with one: see
  // settle_inbox_page), and a fresh page always has one.
  for (;;) {
    count_step();
    page *pg = h->avail[cls].front();
    if (pg == nullptr && (pg = fresh_page(h, cls)) == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    if (rotate_for_reuse(h, pg))
      continue;
    if (refill(h, pg)) {
      if (pg->checked.load(std::memory_order_relaxed))
        return checked_pop(h, pg, cls);
      h->current[cls] = pg;
      void *b = heap_alloc_class<true>(h, cls);
      if (purge_owed) // the class's next acquire pays the next step
        h->current[cls] = &g_empty_page;
      return b;
    }
    avail_remove(h, pg); // full: a local free or the inbox brings it back
  }
}

} // namespace

void *heap_alloc_slow(heap_state *h, unsigned cls) noexcept {
  if (RAMALLOC_UNLIKELY(h == &g_unbound)) // the thread's first acquire of the class
    return unbound_alloc_class(cls);
  // The current page is out of free blocks: blocks this heap freed for other thread
  // heaps come before its next page (their lines are in this core's cache).
  if (rcache_class(cls) && h->rcache[cls - rcache_first].count != 0)
    return rcache_pop(h, cls);
  if (page *pg = h->current[cls]; extends_at_once(h, pg)) {
    // extend_count is 1 from here up: no threading, the block is handed out as it is.
    static_assert(extend_count(os_page_size / 2) == 2 && extend_count(os_page_size / 2 + 1) == 1);
    if (pg->block_size.load(std::memory_order_relaxed) > os_page_size / 2)
      return bump_one(h, pg, cls);
    extend_page(pg);
    return heap_alloc_class<true>(h, cls);
  }
  return alloc_from_next_page(h, cls);
}

void *heap_alloc_large(heap_state *h, std::size_t size, std::size_t align, bool *zeroed) noexcept {
  const auto n = static_cast<std::uint32_t>((size + slice_size - 1) / slice_size);
  const auto align_slices = static_cast<std::uint32_t>(align > slice_size ? align / slice_size : 1);
  page *pg = span_alloc(h, n, align_slices, zeroed);
  if (pg == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::uint32_t bytes = n * static_cast<std::uint32_t>(slice_size);
  store_shape(pg, large_class, bytes, 1, large_span_magic);
  pg->free_head = pg->local_free_head = nil_offset;
  pg->set_used(1);
  // A checked large span keeps bump at 0 so its free comes to checked_free.
  const bool checked = checked_mode() && checked_format(pg->home, pg, 1);
  pg->checked.store(checked, std::memory_order_relaxed);
  pg->checked_bump.store(1, std::memory_order_relaxed);
  set_page_bump(pg, 1); // the unchecked bump index and limit stay 0 on a checked span
  if (checked)
    checked_set_live(pg, 0);
  pg->set_in_avail(false);
  pg->remote.store(remote_word::empty, std::memory_order_relaxed);
  pg->state.store(page_state::in_use, std::memory_order_release);
  h->large_live_bytes.add(bytes);
  h->class_live[large_class].add(1);
  // What frees left owed (auto_purge_on_discard), once this block has taken the resident
  // memory it can reuse.
  maybe_auto_purge(h);
  // A dirty span may hold an old block's double-free canary at this address.
  annotate_touch_begin(pg->start, 8, bytes);
  __builtin_memset(pg->start + 4, 0, 4);
  annotate_touch_end(pg->start, 8, bytes);
  return pg->start;
}

// --- frees (the fast path is heap_free in heap.hpp) -----------------------------------

void page_emptied(heap_state *h, page *pg) noexcept {
  auto_purge_on_discard(h);
  if (is_queued(pg)) { // still in the inbox: settling it there will retire it
    if (pg->size_class != large_class && !pg->in_avail())
      avail_push_back(h, pg);
    return;
  }
  if (pg->size_class == large_class) {
    large_release(h, pg);
    return;
  }
  page_now_empty(h, pg);
}

void heap_free_remote(heap_state *current, const region *r, page *pg, std::byte *p,
                      std::uint32_t off) noexcept {
  heap_state *owner = r->owner.load(std::memory_order_relaxed);
  if (!rcache_keep(current, owner, pg, p))
    remote_push(owner, pg, p, off);
}

void remote_push(heap_state *owner, page *pg, std::byte *p, std::uint32_t off) noexcept {
  std::uint64_t w = pg->remote.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    count_step();
    const std::uint32_t head = remote_word::head(w);
    // Published by the CAS: the owner may hand the block out at once, so it is closed
    // again before.
    annotate_touch_begin(p, 8, annotate_block_size(pg));
    __builtin_memcpy(p, &head, sizeof head);
    annotate_touch_end(p, 8, annotate_block_size(pg));
    next = remote_word::make(off, remote_word::count(w) + 1, true);
  } while (!pg->remote.compare_exchange_weak(w, next, std::memory_order_release,
                                             std::memory_order_relaxed));
  if ((w & remote_word::queued) == 0) { // first free since the owner last looked
    owner->inbox_count.fetch_add(1, std::memory_order_relaxed);
    owner->inbox.push(pg);
    // Nobody owns an orphan: the thread that made it new debt pays a slice of orphans'
    // debt, so a program that only frees an exited thread's blocks still converges.
    if (owner->status.load(std::memory_order_relaxed) == heap_status::orphaned)
      pay_orphan_slice();
  }
}

#if defined(RAMALLOC_DEBUG)
void (*g_huge_release_test_hook)(void *p) noexcept = nullptr;
void (*g_format_test_hook)(const std::byte *span_start) noexcept = nullptr;
void (*g_shape_begin_test_hook)(const std::byte *span_start) noexcept = nullptr;
#endif

free_result heap_free_huge(region *r, void *p) noexcept {
  if (checked_mode())
    return free_result::checked; // so a sized free's size reaches checked_free
  return huge_release(r, p);
}

free_result huge_release(region *r, void *p) noexcept {
  constexpr std::uint64_t ptr_mask = (std::uint64_t{1} << 48) - 1;
  std::uint64_t w = r->huge_claim.load(std::memory_order_acquire);
  auto *owner = reinterpret_cast<heap_state *>(w & ptr_mask);
  if (owner == nullptr)
    return free_result::double_free; // the descriptor holds no block now
  // Read after the claim word (acquire): the start of that generation's block or later.
  if (p != r->huge_start)
    return free_result::interior;
#if defined(RAMALLOC_DEBUG)
  if (g_huge_release_test_hook != nullptr)
    g_huge_release_test_hook(p);
#endif
  // Fails if another free claimed the block, or if the descriptor was recycled for
  // another block since `w` was read (its generation changed): never unmap that one.
  if (!r->huge_claim.compare_exchange_strong(w, w & ~ptr_mask, std::memory_order_acq_rel,
                                             std::memory_order_relaxed))
    return free_result::double_free;
  if (annotations_enabled) { // claimed: this free is the one
    annotate_freed(p, r->huge_usable);
    annotate_unmapping(p, 0, r->huge_usable);
  }
  r->owner.store(nullptr, std::memory_order_relaxed);
  owner->huge_live_bytes.fetch_sub(r->huge_usable, std::memory_order_relaxed);
  owner->huge_live_blocks.fetch_sub(1, std::memory_order_relaxed);
  page_map_unregister(r->base, r->map_size);
  os_pages::release(r->base, r->map_size);
  huge_region_recycle(r);
  return free_result::freed;
}

free_result heap_free_other(heap_state *current, void *ptr) noexcept {
  region *r = region_of(ptr);
  if (r == nullptr)
    return free_result::not_ours;
  if (r->kind == region_kind::huge)
    return heap_free_huge(r, ptr);
  page *pg = span_of(r, ptr);
  if (pg == nullptr)
    return free_result::not_live;
  const auto off =
      static_cast<std::uint32_t>(static_cast<std::byte *>(ptr) - r->slice_address(r->index_of(pg)));
  return free_in_page(current, r, pg, ptr, off, [pg] { return std::size_t{pg->size_class}; });
}

// --- debt ------------------------------------------------------------------------------

std::size_t heap_reclaim(heap_state *h, std::size_t budget, std::size_t *spent) noexcept {
  const std::uint64_t now = now_ms();
  h->last_reclaim_ms = now;
  std::size_t bytes_left = g_options.purge_budget.load(std::memory_order_relaxed);
  std::size_t units = 0;
  // The entries queued now, each paid at most once per call: one it puts back (watch)
  // waits for a later call.
  std::uint64_t visits = h->inbox_count.load(std::memory_order_relaxed);
  for (; units < budget; ++units) {
    if (visits != 0) {
      if (page *pg = inbox_next(h, false)) {
        --visits;
        settle_inbox_page(h, pg);
        continue;
      }
      visits = 0;
    }
    if (settle_parked(h))
      continue;
    if (h->reserve_owed.load(std::memory_order_relaxed) != 0 && reserve_step(h, bytes_left) != 0)
      continue;
    if (rcache_trim(h, now) != 0)
      continue;
    if (!purge_step(h, now, bytes_left))
      break;
  }
  if (spent != nullptr)
    *spent = units;
  return heap_pending(h);
}

namespace {

/// Inbox entries that are debt: all but the watched ones, which are not payable before
/// their delay and are queued only so that the frees still arriving need no push. Read
/// from any thread by the statistics, whose two loads may straddle a change: never
/// below 0.
std::uint64_t inbox_debt(const heap_state *h) noexcept {
  const std::uint64_t watched = h->inbox_watched.get();
  const std::uint64_t queued = h->inbox_count.load(std::memory_order_relaxed);
  return queued > watched ? queued - watched : 0;
}

} // namespace

std::size_t heap_pending(heap_state *h) noexcept {
  return inbox_debt(h) +
         h->parked_count.load(std::memory_order_relaxed) + reserve_units(h) +
         (purge_due(h, now_ms()) ? 1 : 0);
}

void heap_owe_reserve(heap_state *h) noexcept {
  h->last_reclaim_ms = 0; // a new owner has not reclaimed yet: auto purge applies
  const std::uint64_t want = g_options.reserve.load(std::memory_order_relaxed);
  const std::uint64_t held = h->committed.get();
  h->reserve_owed.store(h->static_region != nullptr || held >= want ? 0 : want - held,
                        std::memory_order_relaxed);
}

void heap_pay_reserve(heap_state *h) noexcept {
  while (reserve_step(h, h->reserve_owed.load(std::memory_order_relaxed)) != 0) {
  }
}

void heap_flush(heap_state *h) noexcept {
  quarantine_drain(h);
  rcache_drain(h);
  while (page *pg = inbox_next(h, true))
    settle_inbox_page(h, pg, false);
  while (settle_parked(h)) {
  }
  heap_pay_reserve(h);
  // Pages the owner still holds: take their remote lists and retire the empty ones.
  for (unsigned cls = 0; cls < class_count; ++cls) {
    page *pg = h->avail[cls].front();
    while (pg != nullptr) {
      page *next = intrusive_list<page, &page::links>::next(pg);
      const std::uint32_t r = take_remote(h, pg);
      if (r != nil_offset) {
        // Splice in front of the local list by walking it: flush may take its time.
        if (pg->free_head == nil_offset) {
          pg->free_head = r;
        } else {
          std::uint32_t tail = r, link;
          for (;;) {
            link = load_link(pg, pg->start + tail);
            if (link == nil_offset)
              break;
            tail = link;
          }
          store_link(pg, pg->start + tail, pg->free_head);
          pg->free_head = r;
        }
      }
      if (pg->used() == 0 && !is_queued(pg))
        retire_page(h, pg);
      pg = next;
    }
  }
  while (page *i = h->idle.pop_front()) // pages emptied are retired above; these are in use
    i->set_in_idle(false);
  while (page *c = h->cache.pop_front()) {
    c->state.store(page_state::in_use, std::memory_order_relaxed);
    span_free(h, c, false);
  }
  while (span_purge_front(h, SIZE_MAX) != 0) {
  }
}

std::size_t heap_release_all(heap_state *h) noexcept {
  // Blocks kept from other heaps go back to them: they are not this heap's to forget.
  rcache_drain(h);
  // Remote frees already made are forgotten with their pages: drop the inbox entries
  // (bounded by the heap's pages: a page is queued at most once).
  if (page *held = h->inbox_held)
    held->watched = false;
  h->inbox_held = nullptr;
  while (page *pg = h->inbox.pop()) {
    count_step();
    pg->watched = false;
  }
  h->inbox_watched.sub(h->inbox_watched.get());
  quarantine_forget(h);
  h->inbox_count.store(0, std::memory_order_relaxed);
  for (auto &slot : h->parked) // forgotten with their pages, like the inbox
    slot.store(nullptr, std::memory_order_relaxed);
  h->parked_count.store(0, std::memory_order_relaxed);
  for (auto &l : h->avail)
    l = {};
  for (auto &c : h->current)
    c = &g_empty_page;
  h->cache = {};
  h->idle = {};
  h->dirty_fifo = {};
  h->dirty_bins = {};
  h->dirty_bytes = 0;
  h->clean_bins = {};
  std::size_t spans = 0;
  for (region *r = h->regions.front(); r != nullptr;
       r = intrusive_list<region, &region::links>::next(r))
    spans += span_reset_region(h, r);
  for (auto &c : h->class_live)
    c.v.store(0, std::memory_order_relaxed);
  h->large_live_bytes.v.store(0, std::memory_order_relaxed);
  // The reserve was purged with the rest; the owner is the same (it keeps its last
  // reclaim time).
  const std::uint64_t last_reclaim = h->last_reclaim_ms;
  heap_owe_reserve(h);
  h->last_reclaim_ms = last_reclaim;
  return spans;
}

std::uint64_t heap_live_blocks(const heap_state *h) noexcept {
  std::uint64_t n = h->huge_live_blocks.load(std::memory_order_relaxed);
  for (const auto &c : h->class_live)
    n += c.get(); // large spans included
  return n;
}

void heap_stats(const heap_state *h, ram_stats *out) noexcept {
  std::uint64_t bytes =
      h->large_live_bytes.get() + h->huge_live_bytes.load(std::memory_order_relaxed);
  for (unsigned cls = 0; cls < class_count; ++cls)
    bytes += h->class_live[cls].get() * class_block_size(cls);
  out->live_bytes += bytes;
  out->live_blocks += heap_live_blocks(h);
  out->committed_bytes += h->committed.get() + h->huge_live_bytes.load(std::memory_order_relaxed);
  out->reserved_bytes += h->reserved.get() + h->huge_live_bytes.load(std::memory_order_relaxed);
  out->pending_debt += inbox_debt(h) +
                       h->parked_count.load(std::memory_order_relaxed) + reserve_units(h);
  out->remote_frees += h->remote_frees.get();
  out->pages_purged += h->pages_purged.get();
  out->bytes_purged += h->bytes_purged.get();
  out->orphans_serviced += h->orphans_serviced.get();
}

} // namespace ramalloc::detail
