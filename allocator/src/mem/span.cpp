// Spans: carving pages out of a heap's regions and giving them back.
//
// Free spans coalesce with free neighbours of the same state (dirty with dirty, clean
// with clean), so a purged range never has to be tracked inside a resident one and the
// committed-bytes count stays exact. Every function here is O(1) except the slice_head
// fill of a new span and its clearing when the span is freed, each bounded by the
// largest span (large_max / 64 KiB).
//
// slice_head is exact, so the free fast path needs no range check: every slice of an
// in-use span maps to its head; a free span's first and last slices map to its head
// (coalescing finds it from a neighbour) and its other slices to 0, a header slice whose
// descriptor is never in use. No entry ever names the head of a span that does not hold
// its slice.
#include "mem/span.hpp"

#include <algorithm>
#include <cerrno>

#include "pal/os_pages.hpp"

namespace ramalloc::detail {

namespace {

span_bins &bins_for(heap_state *h, page_state s) noexcept {
  return s == page_state::free_dirty ? h->dirty_bins : h->clean_bins;
}

void set_span_head(region *r, std::uint32_t first, std::uint32_t n) noexcept {
  page *pg = &r->pages[first];
  pg->home = r;
  pg->start = r->slice_address(first);
  pg->slices.store(n, std::memory_order_relaxed);
  r->slice_head[first].store(static_cast<std::uint16_t>(first), std::memory_order_relaxed);
  r->slice_head[first + n - 1].store(static_cast<std::uint16_t>(first), std::memory_order_relaxed);
}

/// Maps slices [first, first+n) to no span (slice 0's descriptor is never in use).
void clear_heads(region *r, std::uint32_t first, std::uint32_t n) noexcept {
  for (std::uint32_t i = first; i < first + n; ++i) {
    count_step();
    r->slice_head[i].store(0, std::memory_order_relaxed);
  }
}

/// Makes [first, first+n) a free span in state `s` without looking at its neighbours.
void insert_free(heap_state *h, region *r, std::uint32_t first, std::uint32_t n, page_state s,
                 std::uint64_t freed_at) noexcept {
  set_span_head(r, first, n);
  page *pg = &r->pages[first];
  pg->state.store(s, std::memory_order_relaxed);
  pg->freed_at_ms = freed_at;
  bins_for(h, s).insert(pg);
  if (s != page_state::free_dirty)
    return;
  h->dirty_bytes += std::uint64_t{n} * slice_size;
  // The FIFO is kept (nearly) in age order: a span as old as the current front goes in
  // front of it, so merging a fresh page into an old span does not delay its purge.
  page *front = h->dirty_fifo.front();
  if (front != nullptr && freed_at <= front->freed_at_ms)
    h->dirty_fifo.push_front(pg);
  else
    h->dirty_fifo.push_back(pg);
}

void remove_free(heap_state *h, page *pg) noexcept {
  const page_state s = pg->state.load(std::memory_order_relaxed);
  bins_for(h, s).remove(pg);
  if (s == page_state::free_dirty) {
    h->dirty_fifo.remove(pg);
    h->dirty_bytes -= std::uint64_t{pg->slices.load(std::memory_order_relaxed)} * slice_size;
  }
}

/// Reserves a new 1 GiB region from the OS and adds its usable slices as one clean span.
bool grow(heap_state *h) noexcept {
  if (h->static_region != nullptr)
    return false; // static heaps never grow
  void *mem = os_pages::reserve_aligned(region_size, region_size);
  if (mem == nullptr) {
    if (g_options.verbose.load(std::memory_order_relaxed))
      report_error(RAM_ERROR_OUT_OF_MEMORY, nullptr, "mmap refused a 1 GiB region reservation");
    return false;
  }
  auto *base = static_cast<std::byte *>(mem);
  region *r =
      region_init(mem, base, static_cast<std::uint32_t>(slices_per_region), region_kind::os);
  r->map_size = region_size;
  r->owner.store(h, std::memory_order_release);
  RAMALLOC_CHECK(page_map_register(r, base, region_size), "fresh region overlaps the page map");
  RAMALLOC_CHECK(os_region_at(reinterpret_cast<std::uintptr_t>(base)) == r,
                 "an OS region's header is its granule's first byte (the free fast path masks)");
  // The header's unused tail, just below the first page: an underflow of the region's
  // first block lands there (the reservation itself is inaccessible to tools already).
  if (annotations_enabled) {
    std::byte *gap = base + region_header_bytes(slices_per_region);
    annotate_close(gap, static_cast<std::size_t>(r->slice_address(r->first_slice) - gap),
                   slice_size);
  }
  h->regions.push_back(r);
  h->reserved.add(region_size);
  insert_free(h, r, r->first_slice, r->slice_count - r->first_slice, page_state::free_clean, 0);
  return true;
}

} // namespace

std::size_t reserve_step(heap_state *h, std::size_t max_bytes) noexcept {
  const std::uint64_t owed = h->reserve_owed.load(std::memory_order_relaxed);
  if (owed == 0)
    return 0;
  const std::uint64_t want = owed < max_bytes ? owed : max_bytes;
  std::uint32_t n = static_cast<std::uint32_t>((want + slice_size - 1) / slice_size);
  if (n > slices_per_region / 2)
    n = slices_per_region / 2; // the reserve option is at most 512 MiB anyway
  page *pg = span_alloc(h, n, 1, /*zeroed=*/nullptr, /*clean_only=*/true);
  if (pg == nullptr) {
    h->reserve_owed.store(0,
                          std::memory_order_relaxed); // out of memory: the reserve is best effort
    return 0;
  }
  const std::size_t bytes = std::size_t{n} * slice_size;
  os_pages::prefault(pg->start, bytes);
  // The descriptors of its slices too: formatting a page writes its descriptor, and a
  // fresh region's descriptor array is untouched memory (n descriptors: a few OS pages).
  os_pages::populate(pg, std::size_t{n} * sizeof(page));
  span_free(h, pg, /*purged=*/false); // resident now: a dirty span, first in line for use
  h->reserve_owed.store(owed > bytes ? owed - bytes : 0, std::memory_order_relaxed);
  return bytes;
}

page *span_alloc(heap_state *h, std::uint32_t n, std::uint32_t align_slices, bool *zeroed,
                 bool clean_only) noexcept {
  const std::uint32_t need = n + align_slices - 1;
  if (need > slices_per_region)
    return nullptr;
  page *s = clean_only ? nullptr : h->dirty_bins.take(need);
  bool clean = false;
  if (s == nullptr) {
    s = h->clean_bins.take(need);
    if (s == nullptr) {
      if (!grow(h))
        return nullptr;
      s = h->clean_bins.take(need);
      if (s == nullptr)
        return nullptr;
    }
    clean = true;
  } else {
    h->dirty_fifo.remove(s);
    h->dirty_bytes -= std::uint64_t{s->slices.load(std::memory_order_relaxed)} * slice_size;
  }
  region *r = s->home;
  const std::uint32_t first = r->index_of(s);
  const std::uint32_t total = s->slices.load(std::memory_order_relaxed);
  const page_state st = s->state.load(std::memory_order_relaxed);
  // Alignment above one slice: skip the slices before the first aligned one.
  std::uint32_t lead = 0;
  if (align_slices > 1) {
    const auto addr = reinterpret_cast<std::uintptr_t>(r->slice_address(first));
    const std::uintptr_t align = std::uintptr_t{align_slices} * slice_size;
    lead = static_cast<std::uint32_t>((((addr + align - 1) & ~(align - 1)) - addr) / slice_size);
  }
  if (lead > 0)
    insert_free(h, r, first, lead, st, s->freed_at_ms);
  const std::uint32_t head = first + lead;
  const std::uint32_t tail = total - lead - n;
  if (tail > 0)
    insert_free(h, r, head + n, tail, st, s->freed_at_ms);
  set_span_head(r, head, n);
  for (std::uint32_t i = head + 1; i + 1 < head + n; ++i) {
    count_step();
    r->slice_head[i].store(static_cast<std::uint16_t>(head), std::memory_order_relaxed);
  }
  // Not in use yet: the caller publishes `in_use` once the span's new shape is stored
  // (store_shape, format_page, heap_alloc_large). Until then its descriptor still holds
  // its previous life's shape (magic, bump limit), and a free racing from another thread
  // (a stale or wild pointer) that saw `in_use` would check a block against it, find a
  // purged span's zeros instead of the canary, and push the block onto the page that is
  // being formatted (tests/unit/test_bad_input.cpp, ...PreviousLifesShape).
  page *pg = &r->pages[head];
  pg->state.store(page_state::unused, std::memory_order_relaxed);
  if (clean)
    h->committed.add(std::size_t{n} * slice_size);
  if (zeroed != nullptr)
    *zeroed = clean && r->kind == region_kind::os;
  return pg;
}

namespace {

/// Frees slices [first, first+n) of `r`, which map to no span already, coalescing with
/// free neighbours in the same state. Returns the merged span's head.
page *free_cleared(heap_state *h, region *r, std::uint32_t first, std::uint32_t n,
                   bool purged) noexcept {
  // Static buffers are never purged: their free spans are all "clean".
  const page_state s = (purged || r->kind == region_kind::static_buffer) ? page_state::free_clean
                                                                         : page_state::free_dirty;
  // A merged dirty span is as old as its oldest part: coalescing must not restart the
  // purge delay of memory that has been idle all along.
  std::uint64_t freed_at = now_ms();
  const std::uint32_t next = first + n;
  if (next < r->slice_count) {
    page *nx = &r->pages[next];
    if (nx->state.load(std::memory_order_relaxed) == s) {
      remove_free(h, nx);
      n += nx->slices.load(std::memory_order_relaxed);
      freed_at = std::min(freed_at, nx->freed_at_ms);
      nx->state.store(page_state::unused, std::memory_order_relaxed);
      r->slice_head[next].store(0, std::memory_order_relaxed); // now inside the span
    }
  }
  if (first > r->first_slice) {
    const std::uint32_t ph = r->slice_head[first - 1].load(std::memory_order_relaxed);
    page *pv = &r->pages[ph];
    if (ph >= r->first_slice && ph < first && pv->state.load(std::memory_order_relaxed) == s &&
        ph + pv->slices.load(std::memory_order_relaxed) == first) {
      remove_free(h, pv);
      freed_at = std::min(freed_at, pv->freed_at_ms);
      r->slice_head[first - 1].store(0, std::memory_order_relaxed); // now inside the span
      n += first - ph;
      first = ph;
    }
  }
  insert_free(h, r, first, n, s, freed_at); // maps the merged span's two ends
  return &r->pages[first];
}

} // namespace

page *span_free(heap_state *h, page *pg, bool purged) noexcept {
  region *r = pg->home;
  const std::uint32_t first = r->index_of(pg);
  const std::uint32_t n = pg->slices.load(std::memory_order_relaxed);
  pg->state.store(page_state::unused, std::memory_order_relaxed);
  clear_heads(r, first, n); // every slice of an in-use span maps to its head
  return free_cleared(h, r, first, n, purged);
}

std::size_t span_purge_front(heap_state *h, std::size_t max_bytes) noexcept {
  page *d = h->dirty_fifo.front();
  if (d == nullptr)
    return 0;
  const std::uint64_t reserve = g_options.reserve.load(std::memory_order_relaxed);
  const std::uint64_t committed = h->committed.get();
  const std::uint64_t above = committed > reserve ? committed - reserve : 0;
  const std::size_t limit = max_bytes < above ? max_bytes : above;
  const std::uint32_t n = d->slices.load(std::memory_order_relaxed);
  std::uint32_t k = static_cast<std::uint32_t>(limit / slice_size);
  if (k == 0)
    return 0;
  if (k > n)
    k = n;
  region *r = d->home;
  const std::uint32_t first = r->index_of(d);
  const std::size_t bytes = std::size_t{k} * slice_size;
  // Clean spans are known to read as zero (calloc relies on it): a range the kernel did
  // not drop stays dirty. A later step tries again.
  if (!os_pages::purge(d->start, bytes))
    return 0;
  remove_free(h, d);
  d->state.store(page_state::unused, std::memory_order_relaxed);
  if (k < n)
    insert_free(h, r, first + k, n - k, page_state::free_dirty, d->freed_at_ms);
  // Inside a free span only its two ends map anywhere: clear the first (and the last,
  // if all of it was purged), and [first, first+k) maps to no span.
  r->slice_head[first].store(0, std::memory_order_relaxed);
  if (k == n)
    r->slice_head[first + n - 1].store(0, std::memory_order_relaxed);
  h->committed.sub(bytes);
  h->pages_purged.add(k);
  h->bytes_purged.add(bytes);
  const page *merged = free_cleared(h, r, first, k, /*purged=*/true);
  // Descriptors strictly inside a free span are never read: drop their pages too (those
  // near the slices just purged), so a purged gigabyte leaves no megabytes of resident
  // descriptors behind. Zero pages read back as "unused" descriptors.
  const std::uint32_t m_first = r->index_of(merged);
  const std::uint32_t m_last = m_first + merged->slices.load(std::memory_order_relaxed) - 1;
  // The window reaches one whole OS page of descriptors past the purged slices on either
  // side, so the page holding a neighbour's descriptors goes too once that neighbour has
  // merged into this span. A descriptor may straddle two pages (sizeof(page) does not
  // divide 4096): os_page_size / sizeof(page) fell short, and pages at the boundaries of
  // spans purged apart stayed resident for good.
  constexpr std::uint32_t per_page = (os_page_size + sizeof(page) - 1) / sizeof(page) + 1;
  static_assert(per_page * sizeof(page) >= os_page_size + sizeof(page));
  const std::uint32_t lo_i = first > m_first + per_page ? first - per_page : m_first + 1;
  const std::uint32_t hi_i = first + k + per_page < m_last ? first + k + per_page : m_last;
  if (hi_i > lo_i) {
    const auto lo = align_up(reinterpret_cast<std::uintptr_t>(&r->pages[lo_i]), os_page_size);
    const auto hi = reinterpret_cast<std::uintptr_t>(&r->pages[hi_i]) & ~(os_page_size - 1);
    if (hi > lo)
      os_pages::purge(reinterpret_cast<void *>(lo), hi - lo);
  }
  return bytes;
}

std::size_t span_reset_region(heap_state *h, region *r) noexcept {
  // Visit span heads only: a span's head descriptor knows its length, so the walk is
  // O(spans), never O(slices) or O(blocks).
  std::size_t spans = 0;
  std::uint64_t resident = 0;
  const std::uint32_t first = r->first_slice;
  const std::uint32_t n = r->slice_count - first;
  for (std::uint32_t i = first; i < r->slice_count;) {
    count_step();
    page *pg = &r->pages[i];
    const std::uint32_t len = pg->slices.load(std::memory_order_relaxed);
    RAMALLOC_CHECK(len != 0 && len <= r->slice_count - i, "corrupt span table in release_all");
    const page_state st = pg->state.load(std::memory_order_relaxed);
    if (st != page_state::free_clean)
      resident += std::uint64_t{len} * slice_size;
    if (annotations_enabled && st == page_state::in_use)
      annotate_span_released(pg->start, pg->size_class == large_class ? 1 : page_bump(pg),
                             pg->block_size.load(std::memory_order_relaxed),
                             std::size_t{len} * slice_size);
    pg->state.store(page_state::unused, std::memory_order_relaxed);
    pg->set_in_avail(false);
    pg->set_in_idle(false);
    ++spans;
    i += len;
  }
  // One free span: its inner slices map to no span (a pass over the 32 KiB table, not
  // counted as steps: a constant per region, like the one madvise below).
  for (std::uint32_t i = first; i < r->slice_count; ++i)
    r->slice_head[i].store(0, std::memory_order_relaxed);
  page_state st = page_state::free_clean;
  std::uint64_t freed_at = 0;
  if (r->kind == region_kind::os) {
    // One madvise over the whole usable range: the kernel skips what was never touched.
    // "Clean" promises zero bytes (calloc relies on it): if the purge failed, the span
    // stays dirty and committed, and a later purge step retries it.
    if (!os_pages::purge(r->slice_address(first), std::size_t{n} * slice_size)) {
      st = page_state::free_dirty;
      freed_at = now_ms();
      h->committed.add(std::uint64_t{n} * slice_size - resident);
      resident = 0;
    }
    h->committed.sub(resident);
    h->pages_purged.add(resident / slice_size);
    h->bytes_purged.add(resident);
    // Descriptors inside the one free span are never read again until it is split:
    // give their pages back too (zero pages read as "unused").
    const auto lo = align_up(reinterpret_cast<std::uintptr_t>(&r->pages[first + 1]), os_page_size);
    const auto hi =
        reinterpret_cast<std::uintptr_t>(&r->pages[r->slice_count - 1]) & ~(os_page_size - 1);
    if (hi > lo)
      os_pages::purge(reinterpret_cast<void *>(lo), hi - lo);
  }
  insert_free(h, r, first, n, st, freed_at);
  return spans;
}

} // namespace ramalloc::detail

namespace ramalloc::detail {

const char *heap_init_static(heap_state *h, void *buffer, std::size_t size) noexcept {
  if (buffer == nullptr)
    return "the buffer is null";
  const auto start = reinterpret_cast<std::uintptr_t>(buffer);
  if (size > UINTPTR_MAX - start)
    return "the buffer wraps around the address space";
  const std::uintptr_t base = align_up(start, slice_size);
  const std::uintptr_t end = start + size;
  if (base >= end)
    return "the buffer is smaller than 256 KiB";
  std::size_t slices = (end - base) / slice_size;
  if (slices > slices_per_region)
    slices = slices_per_region; // one region's worth at most
  if (size < 256 * 1024 || slices == 0)
    return "the buffer is smaller than 256 KiB";
  // Every check is made before anything is written: the header and its tables live in
  // allocator metadata, and a failed constructor leaves the buffer as it was.
  auto *b = reinterpret_cast<std::byte *>(base);
  region *r = static_region_new(b, static_cast<std::uint32_t>(slices));
  if (r == nullptr)
    return "the allocator's metadata memory is exhausted";
  r->owner.store(h, std::memory_order_release);
  if (!page_map_register(r, b, r->map_size)) {
    r->owner.store(nullptr, std::memory_order_relaxed);
    static_region_recycle(r);
    return "its 1 GiB-aligned address range already belongs to ramalloc (another static-buffer "
           "heap, or a ramalloc region: a buffer allocated from ramalloc itself cannot be used)";
  }
  h->static_region = r;
  // The buffer is the program's memory: the tools learn that it is the heap's now (and
  // that it is the program's again when the heap is retired: drop_static_region).
  if (annotations_enabled)
    annotate_close(b, r->map_size, slice_size);
  h->regions.push_back(r);
  h->reserved.add(r->map_size);
  h->committed.add(r->map_size);
  h->reserve_owed.store(
      0, std::memory_order_relaxed); // a static buffer is the caller's memory: nothing to pre-fault
  insert_free(h, r, r->first_slice, r->slice_count - r->first_slice, page_state::free_clean, 0);
  return nullptr;
}

} // namespace ramalloc::detail
