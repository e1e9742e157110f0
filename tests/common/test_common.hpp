// Helpers shared by every test suite under tests/: resident-memory measurement,
// sanitizer detection, deterministic random numbers and fill patterns. Header-only,
// allocation-free.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define RAMALLOC_TEST_COMMON_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define RAMALLOC_TEST_COMMON_ASAN 1
#endif
#endif

namespace ramalloc_test_common {

constexpr bool under_tsan() {
#if defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

constexpr bool under_asan() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

/// Makes [p, p+n) accessible to AddressSanitizer, which ramalloc tells to poison free
/// blocks and a static heap's buffer (docs/hardening.md): for a test that plays a buggy
/// program on purpose (a write after free, so that ramalloc's own checked mode is what
/// catches it) or inspects a heap's memory from outside. A no-op without ASan.
inline void asan_unpoison(const void *p, std::size_t n) {
#if defined(RAMALLOC_TEST_COMMON_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n;
#endif
}

/// True when the build runs under a sanitizer whose shadow memory makes resident-memory
/// measurements meaningless (the RSS assertions are skipped; correctness checks run).
constexpr bool under_sanitizer() {
  return under_tsan() || under_asan();
}

/// Resident set size in bytes: the "resident" field of /proc/self/statm times the page
/// size. Reads with open/read so measuring allocates nothing.
inline std::size_t resident_bytes() {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    std::abort();
  char buf[256];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0)
    std::abort();
  buf[n] = '\0';
  unsigned long long size_pages = 0, resident_pages = 0;
  if (std::sscanf(buf, "%llu %llu", &size_pages, &resident_pages) != 2)
    std::abort();
  return static_cast<std::size_t>(resident_pages) *
         static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

inline std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

/// splitmix64: deterministic, seedable, allocation-free.
class rng {
public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi].
  std::size_t uniform(std::size_t lo, std::size_t hi) { return lo + next() % (hi - lo + 1); }
  /// Log-uniform in [lo, hi]: every doubling equally likely.
  std::size_t log_uniform(std::size_t lo, std::size_t hi) {
    const double u = static_cast<double>(next() >> 11) / static_cast<double>(1ull << 53);
    const double v =
        static_cast<double>(lo) * std::pow(static_cast<double>(hi) / static_cast<double>(lo), u);
    return std::clamp(static_cast<std::size_t>(v), lo, hi);
  }

private:
  std::uint64_t state_;
};

/// Word `w` (bytes 8w..8w+7) of the fill pattern of block number `tag`. Neighbouring
/// tags give different bytes at every offset (with overwhelming probability), so a write
/// that strays into a neighbour is seen when the neighbour is verified.
inline std::uint64_t pattern_word(std::uint64_t tag, std::size_t w) {
  return mix(tag * 0x9E3779B97F4A7C15ull + w + 1);
}

inline void fill_pattern(void *p, std::size_t n, std::uint64_t tag) {
  auto *b = static_cast<unsigned char *>(p);
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const std::uint64_t h = pattern_word(tag, j / 8);
    std::memcpy(b + j, &h, 8);
  }
  if (j < n) {
    const std::uint64_t h = pattern_word(tag, j / 8);
    std::memcpy(b + j, &h, n - j);
  }
}

/// Offset of the first byte that differs from the pattern, or n when all match.
inline std::size_t first_pattern_mismatch(const void *p, std::size_t n, std::uint64_t tag) {
  const auto *b = static_cast<const unsigned char *>(p);
  for (std::size_t j = 0; j < n; j += 8) {
    const std::uint64_t h = pattern_word(tag, j / 8);
    const std::size_t len = std::min<std::size_t>(8, n - j);
    if (std::memcmp(b + j, &h, len) != 0) {
      const auto *e = reinterpret_cast<const unsigned char *>(&h);
      for (std::size_t k = 0; k < len; ++k)
        if (b[j + k] != e[k])
          return j + k;
    }
  }
  return n;
}

/// True when all `n` bytes match the pattern of `tag`.
inline bool pattern_intact(const void *p, std::size_t n, std::uint64_t tag) {
  return first_pattern_mismatch(p, n, tag) == n;
}

} // namespace ramalloc_test_common
