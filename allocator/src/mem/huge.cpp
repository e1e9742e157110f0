// Huge blocks (above large_max): one mapping of whole 1 GiB granules each, registered in the page
// map so query and free find them in O(1); freed straight back to the OS. Their
// descriptors live in metadata memory, so a racing query never reads an unmapped header.
#include <cerrno>

#include "mem/heap.hpp"
#include "pal/meta_arena.hpp"
#include "pal/os_pages.hpp"

namespace ramalloc::detail {

namespace {
// A lock-free stack of recycled descriptors. The tag in the low bits (descriptors are
// 64-byte aligned) defeats ABA.
constinit std::atomic<std::uintptr_t> g_free_huge{0};
constexpr std::uintptr_t tag_mask = 63;
} // namespace

region *huge_region_new() noexcept {
  std::uintptr_t top = g_free_huge.load(std::memory_order_acquire);
  while ((top & ~tag_mask) != 0) {
    auto *r = reinterpret_cast<region *>(top & ~tag_mask);
    const auto next = reinterpret_cast<std::uintptr_t>(r->links.next);
    if (g_free_huge.compare_exchange_weak(top, next | ((top + 1) & tag_mask),
                                          std::memory_order_acq_rel, std::memory_order_acquire))
      return r;
  }
  void *mem = meta_alloc(sizeof(region), 64);
  return mem == nullptr ? nullptr : new (mem) region{};
}

void huge_region_recycle(region *r) noexcept {
  std::uintptr_t top = g_free_huge.load(std::memory_order_relaxed);
  do {
    r->links.next = reinterpret_cast<region *>(top & ~tag_mask);
  } while (!g_free_huge.compare_exchange_weak(
      top, reinterpret_cast<std::uintptr_t>(r) | ((top + 1) & tag_mask), std::memory_order_acq_rel,
      std::memory_order_relaxed));
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
  r->kind = region_kind::huge;
  r->map_size = map;
  r->huge_start = r->base;
  r->huge_usable = usable;
  r->slice_count = r->first_slice = 0;
  r->owner.store(h, std::memory_order_release);
  RAMALLOC_CHECK(page_map_register(r, mem, map), "huge mapping overlaps the page map");
  h->huge_live_bytes.fetch_add(usable, std::memory_order_relaxed);
  h->huge_live_blocks.fetch_add(1, std::memory_order_relaxed);
  return mem;
}

} // namespace ramalloc::detail
