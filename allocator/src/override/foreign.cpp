#include "override/foreign.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
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

// Where glibc's chunks can be (glibc 2.26 and later on x86-64/aarch64; checked against the
// 2.36 Debian 12 ships): a main-arena chunk that is not mmapped lies in the program break
// heap, [start_brk, sbrk(0)); a chunk of another arena lies in a heap of 64 MiB aligned
// to 64 MiB whose heap_info {ar_ptr, prev, size, ...} sits at its start, with the arena
// itself just after the first heap's heap_info; an mmapped chunk starts prev_size bytes
// after a page boundary and ends on one. These bounds are facts about glibc's layout,
// not proofs of ownership: see docs/api.md for what is and is not guaranteed.
constexpr std::uintptr_t heap_max = std::uintptr_t{64} << 20; // glibc's HEAP_MAX_SIZE

/// The start of the program break heap (field 47 of /proc/self/stat), read once; 0 when
/// unknown (then only sbrk(0) bounds the main arena).
std::uintptr_t start_brk() noexcept {
  static constinit std::atomic<std::uintptr_t> cached{1}; // 1: not read yet
  std::uintptr_t v = cached.load(std::memory_order_relaxed);
  if (v != 1)
    return v;
  v = 0;
  const int saved = errno;
  const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[1024];
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n > 0) {
      buf[n] = '\0';
      // Fields after the command name (which may hold spaces) start at field 3.
      const char *c = std::strrchr(buf, ')');
      for (int field = 2; c != nullptr && *c != '\0' && field < 47; ++c)
        if (*c == ' ')
          ++field;
      std::uintptr_t parsed = 0;
      for (; c != nullptr && *c >= '0' && *c <= '9'; ++c)
        parsed = parsed * 10 + static_cast<std::uintptr_t>(*c - '0');
      v = parsed;
    }
  }
  errno = saved;
  cached.store(v, std::memory_order_relaxed);
  return v;
}

/// Whether the chunk [c, c + size) (header included) lies where glibc puts chunks of its
/// kind.
bool in_glibc_heap(std::uintptr_t c, std::uint64_t size, std::uint64_t flags) noexcept {
  if ((flags & non_main_arena) == 0) {
    const auto brk = reinterpret_cast<std::uintptr_t>(::sbrk(0));
    // The next chunk's header (read by the caller) must lie below the break too.
    return c >= start_brk() && brk != static_cast<std::uintptr_t>(-1) && c + size + 16 <= brk &&
           c + size > c;
  }
  const std::uintptr_t heap = c & ~(heap_max - 1);
  std::uint64_t info[3]; // ar_ptr, prev, size
  if (!read_words(reinterpret_cast<const void *>(heap), info, 3))
    return false;
  const std::uint64_t arena = info[0];
  return arena != 0 && (arena & 7) == 0 && (arena & (heap_max - 1)) < 256 && info[2] <= heap_max &&
         c >= heap + 32 && c + size + 16 <= heap + info[2];
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
  if (!in_glibc_heap(a - 16, size, hdr[1]))
    return 0;
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
