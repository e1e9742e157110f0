#include "override/foreign.hpp"

#include <cerrno>
#include <cstdint>
#include <sys/uio.h>
#include <unistd.h>

namespace ramalloc::detail {

namespace {

// glibc's chunk header, just before the user pointer: prev_size, then size | flags.
constexpr std::uint64_t prev_inuse = 1, is_mmapped = 2, non_main_arena = 4;
constexpr std::uint64_t flag_bits = 7;

bool read_words(const void *at, std::uint64_t *out, std::size_t n) noexcept {
  const int saved = errno;
  iovec local{out, n * sizeof(std::uint64_t)};
  iovec remote{const_cast<void *>(at), n * sizeof(std::uint64_t)};
  const bool ok = ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) ==
                  static_cast<ssize_t>(n * sizeof(std::uint64_t));
  errno = saved;
  return ok;
}

/// The chunk size, or 0 when the header does not look like a glibc chunk in use.
std::uint64_t chunk_size(const void *p) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (a < 4096 || (a & 15) != 0)
    return 0;
  std::uint64_t hdr[2];
  if (!read_words(reinterpret_cast<const void *>(a - 16), hdr, 2))
    return 0;
  const std::uint64_t size = hdr[1] & ~flag_bits;
  if (size < 32 || (size & 15) != 0 || size > (std::uint64_t{1} << 46))
    return 0;
  if (hdr[1] & is_mmapped) {
    // An mmapped chunk starts prev_size bytes after a page boundary and ends on one.
    const std::uint64_t start = a - 16 - hdr[0];
    return (start & 4095) == 0 && ((hdr[0] + size) & 4095) == 0 ? size : 0;
  }
  (void)non_main_arena;
  // A chunk in use has the PREV_INUSE bit set in the next chunk's header.
  std::uint64_t next[2];
  if (!read_words(reinterpret_cast<const void *>(a - 16 + size), next, 2))
    return 0;
  return (next[1] & prev_inuse) != 0 ? size : 0;
}

} // namespace

bool glibc_owns(const void *p) noexcept {
  return chunk_size(p) != 0;
}

std::size_t glibc_usable_size(const void *p) noexcept {
  std::uint64_t hdr[2];
  const std::uint64_t size = chunk_size(p);
  if (size == 0 || !read_words(static_cast<const char *>(p) - 16, hdr, 2))
    return 0;
  return static_cast<std::size_t>(size - ((hdr[1] & is_mmapped) ? 16 : 8));
}

} // namespace ramalloc::detail
