// Platform layer: virtual memory from the operating system.
//
// Everything above this file asks for memory only through these functions, so a port
// (or a test double) replaces one file. Failures return false/nullptr: the callers turn
// them into NULL + ENOMEM; nothing here aborts.
#pragma once

#include <concepts>
#include <cstddef>

namespace ramalloc::detail {

/// The operations the memory layer needs from a page source.
template <typename P>
concept page_platform = requires(void *p, std::size_t n) {
  { P::reserve_aligned(n, n) } -> std::same_as<void *>;
  { P::release(p, n) } -> std::same_as<void>;
  { P::purge(p, n) } -> std::same_as<bool>;
  { P::prefault(p, n) } -> std::same_as<void>;
};

struct os_pages {
  /// Reserves `size` bytes aligned to `align` (both multiples of the OS page size) with
  /// MAP_NORESERVE: address space only, memory is faulted in on first touch. nullptr
  /// when the OS refuses.
  static void *reserve_aligned(std::size_t size, std::size_t align) noexcept;
  /// Gives the range back to the OS (munmap).
  static void release(void *p, std::size_t size) noexcept;
  /// Drops the range's physical pages (MADV_DONTNEED): RSS falls at once and the range
  /// reads as zero when touched again.
  static bool purge(void *p, std::size_t size) noexcept;
  /// Faults the range in now (MADV_POPULATE_WRITE, or touching one byte per page) so a
  /// later hot path takes no page fault.
  static void prefault(void *p, std::size_t size) noexcept;
  /// Faults in the OS pages overlapping [p, p+size) without changing a byte of them
  /// (MADV_POPULATE_WRITE: memory in use, such as page descriptors). Best effort: false,
  /// and nothing done, on kernels without it (before Linux 5.14).
  static bool populate(const void *p, std::size_t size) noexcept;
};

static_assert(page_platform<os_pages>);

} // namespace ramalloc::detail
