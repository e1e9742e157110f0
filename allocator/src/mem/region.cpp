#include "mem/region.hpp"

#include <new>

#include "ds/tagged_stack.hpp"
#include "pal/meta_arena.hpp"
#include "pal/os_pages.hpp"

namespace ramalloc::detail {

constinit std::atomic<std::uintptr_t> page_map[granule_count] = {};

namespace {

// A static region's header: the struct alone on the first OS page (it is never purged,
// so its link and fixed fields survive recycling), then slice_head[] and the
// descriptors for a full region, whatever the buffer's size (address space only: the
// tables of a small buffer's slices are the only pages touched).
constexpr std::size_t static_tables_offset = os_page_size;
constexpr std::size_t static_pages_offset =
    static_tables_offset + align_up(slices_per_region * sizeof(std::uint16_t), 64);
constexpr std::size_t static_header_bytes =
    align_up(static_pages_offset + slices_per_region * sizeof(page), os_page_size);
static_assert(sizeof(region) <= static_tables_offset);

constinit tagged_stack<region, &region::free_next> g_free_static{};

} // namespace

region *static_region_new(std::byte *base, std::uint32_t slices) noexcept {
  region *r = g_free_static.pop();
  if (r == nullptr) {
    auto *at = static_cast<std::byte *>(meta_alloc(static_header_bytes, os_page_size));
    if (at == nullptr)
      return nullptr;
    r = new (at) region{};
    r->kind = region_kind::static_buffer;
    r->first_slice = 0; // the header is out of band: every slice holds blocks
    r->slice_head = reinterpret_cast<std::atomic<std::uint16_t> *>(at + static_tables_offset);
    r->pages = reinterpret_cast<page *>(at + static_pages_offset);
  }
  // A recycled header's tables were purged: zero descriptors read as "unused".
  r->base = base;
  r->slice_count = slices;
  r->map_size = std::size_t{slices} * slice_size;
  return r;
}

void static_region_recycle(region *r) noexcept {
  auto *at = reinterpret_cast<std::byte *>(r);
  // Dropping the tables' pages zeroes them without a store that could race with a
  // query still reading them. If the kernel refuses, the header is not reused.
  if (!os_pages::purge(at + static_tables_offset, static_header_bytes - static_tables_offset))
    return;
  g_free_static.push(r);
}

region *region_init(void *at, std::byte *base, std::uint32_t slices, region_kind kind) noexcept {
  auto *bytes = static_cast<std::byte *>(at);
  auto *r = new (bytes) region{};
  r->base = base;
  r->slice_count = slices;
  r->kind = kind;
  bytes += align_up(sizeof(region), 64);
  // Fresh OS memory and static buffers alike: the tables are constructed in place, but
  // their descriptors are touched only when a span head is created, so a 1 GiB region
  // costs a few pages of resident metadata until used.
  r->slice_head = reinterpret_cast<std::atomic<std::uint16_t> *>(bytes);
  bytes += align_up(slices * sizeof(std::uint16_t), 64);
  bytes += align_up(slices * sizeof(std::uint8_t), 64); // os_slice_classes
  r->pages = reinterpret_cast<page *>(bytes);
  if (kind == region_kind::os) {
    RAMALLOC_CHECK(slices == slices_per_region && base == at, "OS region layout");
    RAMALLOC_ASSERT(reinterpret_cast<std::byte *>(r->slice_head) == base + slice_head_offset);
    RAMALLOC_ASSERT(reinterpret_cast<std::byte *>(r->pages) == base + os_pages_offset);
  }
  const std::size_t header = region_header_bytes(slices);
  r->first_slice = static_cast<std::uint32_t>(
      (reinterpret_cast<std::byte *>(at) + header - base + slice_size - 1) / slice_size);
  return r;
}

bool page_map_register(region *r, const void *base, std::size_t size) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(base);
  const std::uintptr_t first = a >> region_shift;
  const std::uintptr_t last = (a + size - 1) >> region_shift;
  if (last >= granule_count)
    return false;
  const std::uintptr_t entry = page_map_entry(r);
  for (std::uintptr_t g = first; g <= last; ++g) {
    std::uintptr_t expected = 0;
    if (!page_map[g].compare_exchange_strong(expected, entry, std::memory_order_acq_rel)) {
      for (std::uintptr_t u = first; u < g; ++u)
        page_map[u].store(0, std::memory_order_release);
      return false;
    }
  }
  return true;
}

void page_map_unregister(const void *base, std::size_t size) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(base);
  for (std::uintptr_t g = a >> region_shift; g <= (a + size - 1) >> region_shift; ++g)
    page_map[g].store(0, std::memory_order_release);
}

} // namespace ramalloc::detail
