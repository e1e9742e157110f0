// Huge blocks (above large_max): one mapping of whole 1 GiB granules each, registered in the page
// map so query and free find them in O(1); freed straight back to the OS. Their
// descriptors live in metadata memory, so a racing query never reads an unmapped header.
//
// Bound: acquire and free are O(size / 1 GiB) here — one page-map CAS (register) or
// store (unregister) per granule — plus the kernel's mmap/munmap, whose unmapping cost
// grows with the pages the block made resident. One step up to 1 GiB; see design.md.
#include <cerrno>

#include "ds/tagged_stack.hpp"
#include "mem/heap.hpp"
#include "pal/meta_arena.hpp"
#include "pal/os_pages.hpp"

namespace ramalloc::detail {

namespace {
// Recycled descriptors: a lock-free stack with a 16-bit ABA tag and an atomic link
// (descriptors live in metadata memory and are never unmapped).
constinit tagged_stack<region, &region::free_next> g_free_huge{};
} // namespace

region *huge_region_new() noexcept {
  if (region *r = g_free_huge.pop())
    return r;
  void *mem = meta_alloc(sizeof(region), 64);
  if (mem == nullptr)
    return nullptr;
  // What never changes for a huge descriptor is written once, before any reader can
  // find it; the rest is rewritten (relaxed) at each use.
  auto *r = new (mem) region{};
  r->kind = region_kind::huge;
  r->slice_count = 0;
  r->first_slice = 0;
  return r;
}

void huge_region_recycle(region *r) noexcept {
  g_free_huge.push(r);
}

void *heap_alloc_huge(heap_state *h, std::size_t size, std::size_t align) noexcept {
  if (h->static_region != nullptr || align > region_size || size > max_request) {
    errno = ENOMEM;
    return nullptr;
  }
  // The mapping covers whole 1 GiB granules (address space only; untouched pages cost
  // nothing), so no other mapping — a static buffer's, say — can share a page-map entry.
  const std::size_t usable = align_up(size, os_page_size);
  const std::size_t map = align_up(size, region_size);
  region *r = huge_region_new();
  void *mem = r != nullptr ? os_pages::reserve_aligned(map, region_size) : nullptr;
  if (mem == nullptr) {
    if (r != nullptr)
      huge_region_recycle(r);
    if (g_options.verbose.load(std::memory_order_relaxed))
      report_error(RAM_ERROR_OUT_OF_MEMORY, nullptr, "mmap refused a huge allocation");
    errno = ENOMEM;
    return nullptr;
  }
  r->base = static_cast<std::byte *>(mem);
  r->map_size = map;
  r->huge_start = static_cast<std::byte *>(mem);
  r->huge_usable = usable;
  r->owner.store(h, std::memory_order_release);
  // A new generation: a stale free still holding the previous one can no longer claim.
  const std::uint64_t generation = (r->huge_claim.load(std::memory_order_relaxed) >> 48) + 1;
  r->huge_claim.store((generation << 48) | reinterpret_cast<std::uintptr_t>(h),
                      std::memory_order_release);
  RAMALLOC_CHECK(page_map_register(r, mem, map), "huge mapping overlaps the page map");
  h->huge_live_bytes.fetch_add(usable, std::memory_order_relaxed);
  h->huge_live_blocks.fetch_add(1, std::memory_order_relaxed);
  return mem;
}

} // namespace ramalloc::detail
