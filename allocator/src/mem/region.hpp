// Regions and the two-level page map.
//
// A region is a 1 GiB-aligned reservation (or a caller's static buffer, or one huge
// allocation) whose header holds a `slice_head` index and a page descriptor per 64 KiB
// slice. The page map's first level is a static array indexed by `address >> 30`; the
// second level is the region's own tables. Every step is range-checked, so mapping any
// pointer value costs three dependent loads (entry, slice head, descriptor; one more, the
// region struct, outside standard OS regions) and never reads memory we did not map.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/defs.hpp"
#include "ds/list.hpp"
#include "ds/relaxed.hpp"
#include "mem/page.hpp"

namespace ramalloc::detail {

enum class region_kind : std::uint8_t { os, static_buffer, huge };

/// A region descriptor. Descriptors of huge blocks are recycled, so a query or a stale
/// free that loaded the page-map entry before the block was unregistered may read the
/// fields that change from one use to the next while they are rewritten: those are
/// `relaxed` (defined behaviour; the answer to such a query is stale by nature). `kind`,
/// `first_slice` and the table pointers are set once, before the descriptor is first
/// published, and never change.
struct region {
  relaxed<std::byte *> base{nullptr};    // address of slice 0 (the region's first byte)
  relaxed<std::uint32_t> slice_count{0}; // slices covered, header included
  std::uint32_t first_slice = 0;         // first slice after the header
  region_kind kind = region_kind::os;
  std::atomic<heap_state *> owner{nullptr}; // the heap whose pages these are
  relaxed<std::size_t> map_size{0};         // bytes mapped (huge and os) or buffer size
  // huge regions: the one block
  relaxed<std::byte *> huge_start{nullptr};
  relaxed<std::size_t> huge_usable{0};
  // Huge regions: the block's generation (bits 48..63, bumped at each use of the
  // descriptor) and owner heap (bits 0..47). A free claims the block with one CAS on it,
  // so a stale free that read the descriptor of an earlier block can never claim (and
  // unmap) the block the recycled descriptor describes now.
  std::atomic<std::uint64_t> huge_claim{0};
  // Checked mode: per slice, 4 KiB of live bits (an allocated and a freed bit per block
  // of a checked page headed at that slice), reserved when the region's first checked
  // page is formatted (address space only), never released. Read by checked frees from
  // any thread.
  std::atomic<std::atomic<std::uint64_t> *> live_bits{nullptr};
  std::atomic<region *> free_next{nullptr};         // descriptor pool link (huge.cpp)
  list_links<region> links;                         // owner heap's region list
  std::atomic<std::uint16_t> *slice_head = nullptr; // per slice: index of its span's head
  page *pages = nullptr; // per slice: descriptor (meaningful at span heads)

  std::uint32_t slice_of(const void *p) const noexcept {
    return static_cast<std::uint32_t>((static_cast<const std::byte *>(p) - base) >> slice_shift);
  }
  std::uint32_t index_of(const page *pg) const noexcept {
    return static_cast<std::uint32_t>(pg - pages);
  }
  std::byte *slice_address(std::uint32_t i) const noexcept {
    return base + std::size_t{i} * slice_size;
  }
};

/// Header bytes for a region of `slices` slices (struct + slice_head + slice classes +
/// descriptors).
constexpr std::size_t region_header_bytes(std::size_t slices) {
  return align_up(sizeof(region), 64) + align_up(slices * sizeof(std::uint16_t), 64) +
         align_up(slices * sizeof(std::uint8_t), 64) + slices * sizeof(page);
}

/// Lays out a region header at `at` covering `slices` slices starting at `base`.
region *region_init(void *at, std::byte *base, std::uint32_t slices, region_kind kind) noexcept;

/// A static-buffer region over `slices` slices at `base` (64 KiB-aligned), its header in
/// allocator-owned metadata (a recycled one or a new one), tables zeroed, not yet
/// registered; nullptr when metadata is exhausted. The caller's buffer is never written:
/// every one of its whole slices can hold blocks, and query never reads it.
region *static_region_new(std::byte *base, std::uint32_t slices) noexcept;
/// Gives a static region's header back once it is unregistered: its tables are purged
/// (zero, not resident) and it waits for the next static heap. Metadata is never
/// unmapped, so a query that looked the region up just before still reads mapped memory.
void static_region_recycle(region *r) noexcept;

/// The first level of the page map: one entry per 1 GiB granule of the 47-bit space,
/// holding a region pointer whose low bit says "a standard OS region": its header sits
/// at the granule's start with the fixed layout below, so the free fast path reaches the
/// slice tables without reading the region struct.
extern std::atomic<std::uintptr_t> page_map[granule_count];
inline constexpr std::uintptr_t os_region_tag = 1;

inline constexpr std::size_t slice_head_offset = align_up(sizeof(region), 64);
inline constexpr std::size_t slice_class_offset =
    slice_head_offset + align_up(slices_per_region * sizeof(std::uint16_t), 64);
inline constexpr std::size_t os_pages_offset =
    slice_class_offset + align_up(slices_per_region * sizeof(std::uint8_t), 64);
static_assert(os_pages_offset % alignof(page) == 0, "descriptors start on their alignment");

static_assert(region_size == std::size_t{1} << region_shift, "an OS region is one granule");
/// The header of the standard OS region that holds address `a`, for an `a` whose page-map
/// entry carries os_region_tag: such a region is its granule, 1 GiB-aligned, with its
/// header at the start (span.cpp, grow), so the header's address is `a` masked, not the
/// entry's value. The fast paths' slice-head load then waits for no other load (the
/// page-map entry is only tested): a malloc+free loop runs about 1.4 ns faster
/// (docs/benchmarks.md, "The pair's time is the free's dependent loads").
RAMALLOC_FAST_PATH region *os_region_at(std::uintptr_t a) noexcept {
  return reinterpret_cast<region *>(a & ~(region_size - 1));
}

RAMALLOC_FAST_PATH std::atomic<std::uint16_t> *os_slice_heads(region *r) noexcept {
  return reinterpret_cast<std::atomic<std::uint16_t> *>(reinterpret_cast<std::byte *>(r) +
                                                        slice_head_offset);
}
/// An OS region's slice classes: the size class (or large_class) of the span each slice
/// belongs to, for every slice of an in-use page and the head slice of a large span
/// (store_shape writes them with the shape; any other entry is stale and never used).
/// The local free's class-live counter is indexed from here, a load that needs only the
/// pointer, where the descriptor's `size_class` waits for the slice head: a malloc+free
/// loop's chain loses one dependent load (docs/benchmarks.md, "The pair's time is the
/// free's dependent loads"). Owner-written; atomic only because the fast path reads the
/// entry before it knows the free is local.
RAMALLOC_FAST_PATH std::atomic<std::uint8_t> *os_slice_classes(region *r) noexcept {
  return reinterpret_cast<std::atomic<std::uint8_t> *>(reinterpret_cast<std::byte *>(r) +
                                                       slice_class_offset);
}
RAMALLOC_FAST_PATH page *os_region_pages(region *r) noexcept {
  return reinterpret_cast<page *>(reinterpret_cast<std::byte *>(r) + os_pages_offset);
}

/// Claims every granule in [base, base+size) for `r`. Fails (claiming nothing) when any
/// granule already belongs to another region. O(size / 1 GiB): one CAS per granule (one
/// for a region or a static buffer, size / 1 GiB for a huge block).
bool page_map_register(region *r, const void *base, std::size_t size) noexcept;
/// The tagged page-map word for `r`.
inline std::uintptr_t page_map_entry(region *r) noexcept {
  return reinterpret_cast<std::uintptr_t>(r) | (r->kind == region_kind::os ? os_region_tag : 0);
}
/// Forgets every granule in [base, base+size). O(size / 1 GiB) stores.
void page_map_unregister(const void *base, std::size_t size) noexcept;

/// The region whose address range holds `p`, or nullptr. O(1), safe for any value.
RAMALLOC_FAST_PATH region *region_of(const void *p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t g = a >> region_shift;
  if (RAMALLOC_UNLIKELY(g >= granule_count))
    return nullptr;
  auto *r =
      reinterpret_cast<region *>(page_map[g].load(std::memory_order_acquire) & ~os_region_tag);
  if (r == nullptr)
    return nullptr;
  const auto b = reinterpret_cast<std::uintptr_t>(static_cast<std::byte *>(r->base));
  if (RAMALLOC_UNLIKELY(a < b || a - b >= r->map_size))
    return nullptr;
  return r;
}

/// The in-use span head covering `p` within an os/static region, or nullptr. Reads only
/// the region header.
RAMALLOC_FAST_PATH page *span_of(const region *r, const void *p) noexcept {
  const std::uint32_t s = r->slice_of(p);
  if (RAMALLOC_UNLIKELY(s < r->first_slice || s >= r->slice_count))
    return nullptr;
  const std::uint32_t h = r->slice_head[s].load(std::memory_order_relaxed);
  if (RAMALLOC_UNLIKELY(h > s || h < r->first_slice))
    return nullptr;
  page *pg = &r->pages[h];
  if (RAMALLOC_UNLIKELY(pg->state.load(std::memory_order_relaxed) != page_state::in_use))
    return nullptr;
  if (RAMALLOC_UNLIKELY(s - h >= pg->slices.load(std::memory_order_relaxed)))
    return nullptr;
  return pg;
}

} // namespace ramalloc::detail
