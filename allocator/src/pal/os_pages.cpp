#include "pal/os_pages.hpp"

#include <cerrno>
#include <cstdint>
#include <sys/mman.h>

#include "common/annotate.hpp"
#include "common/defs.hpp"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace ramalloc::detail {

void *os_pages::reserve_aligned(std::size_t size, std::size_t align) noexcept {
  // Over-reserve by `align` and trim both ends: the kernel gives no alignment guarantee.
  if (size > SIZE_MAX - align)
    return nullptr;
  const int saved = errno;
  const std::size_t span = size + (align > os_page_size ? align : 0);
  void *raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    errno = saved;
    return nullptr;
  }
  auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (base + align - 1) & ~(std::uintptr_t{align} - 1);
  if (aligned > base)
    ::munmap(raw, aligned - base);
  const std::uintptr_t end = base + span;
  if (end > aligned + size)
    ::munmap(reinterpret_cast<void *>(aligned + size), end - aligned - size);
  errno = saved;
  annotate_reserved(reinterpret_cast<void *>(aligned), size); // the program's only as blocks
  return reinterpret_cast<void *>(aligned);
}

void os_pages::release(void *p, std::size_t size) noexcept {
  const int saved = errno;
  ::munmap(p, size);
  errno = saved;
}

bool os_pages::purge(void *p, std::size_t size) noexcept {
  const int saved = errno;
  const bool ok = ::madvise(p, size, MADV_DONTNEED) == 0;
  errno = saved;
  return ok;
}

// Not checked by ASan: the range is free memory, which may be poisoned.
bool os_pages::populate(const void *p, std::size_t size) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p) & ~(os_page_size - 1);
  const std::uintptr_t end = align_up(reinterpret_cast<std::uintptr_t>(p) + size, os_page_size);
  const int saved = errno;
  const bool ok = ::madvise(reinterpret_cast<void *>(a), end - a, MADV_POPULATE_WRITE) == 0;
  errno = saved;
  return ok;
}

RAMALLOC_NO_SANITIZE_ADDRESS void os_pages::prefault(void *p, std::size_t size) noexcept {
  const int saved = errno;
  if (::madvise(p, size, MADV_POPULATE_WRITE) != 0) {
    // Older kernels: touch one byte per OS page (the range is fresh or purged, so
    // writing zero changes nothing the caller can see).
    auto *bytes = static_cast<volatile char *>(p);
    for (std::size_t i = 0; i < size; i += os_page_size)
      bytes[i] = 0;
  }
  errno = saved;
}

} // namespace ramalloc::detail
