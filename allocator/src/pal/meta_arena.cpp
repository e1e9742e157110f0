#include "pal/meta_arena.hpp"

#include <atomic>
#include <cstdint>

#include "common/defs.hpp"
#include "pal/os_pages.hpp"

namespace ramalloc::detail {

namespace {
constexpr std::size_t meta_reservation = std::size_t{16} << 30; // address space only
constinit std::atomic<std::byte *> g_meta_base{nullptr};
constinit std::atomic<std::size_t> g_meta_cursor{0};

std::byte *meta_base() noexcept {
  std::byte *b = g_meta_base.load(std::memory_order_acquire);
  if (RAMALLOC_LIKELY(b != nullptr))
    return b;
  auto *fresh = static_cast<std::byte *>(os_pages::reserve_aligned(meta_reservation, os_page_size));
  RAMALLOC_CHECK(fresh != nullptr, "cannot reserve address space for allocator metadata");
  std::byte *expected = nullptr;
  if (!g_meta_base.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    os_pages::release(fresh, meta_reservation); // another thread won the race
    return expected;
  }
  return fresh;
}
} // namespace

void *meta_alloc(std::size_t size, std::size_t align) noexcept {
  std::byte *base = meta_base();
  const std::size_t need = align_up(size, align);
  // Every request is a multiple of its alignment and all alignments divide 4096, so
  // rounding the cursor up by `align` keeps each block aligned without a CAS loop.
  std::size_t at = g_meta_cursor.fetch_add(need + align, std::memory_order_relaxed);
  at = align_up(at, align);
  if (at + need > meta_reservation)
    return nullptr;
  return base + at;
}

bool meta_holds(const void *p, std::size_t n) noexcept {
  const std::byte *base = g_meta_base.load(std::memory_order_acquire);
  const auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(base);
  return base != nullptr && a >= b && a - b <= meta_reservation && n <= meta_reservation - (a - b);
}

} // namespace ramalloc::detail
