// Constants, attributes and assertion levels shared by every layer of the core.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#define RAMALLOC_FAST_PATH inline __attribute__((always_inline))
#define RAMALLOC_SLOW_PATH __attribute__((noinline, cold))
#define RAMALLOC_LIKELY(x) __builtin_expect(!!(x), 1)
#define RAMALLOC_UNLIKELY(x) __builtin_expect(!!(x), 0)

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RAMALLOC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(RAMALLOC_TSAN)
#define RAMALLOC_TSAN 1
#endif
/// Inline asm for the fast paths' memory operands on x86-64: owner_counter's one `add` to
/// memory, the fused compares below, page::release_one_needs_more. Off under TSan, which
/// cannot see inside an asm statement: the race detector then checks the plain C++.
#if defined(__x86_64__) && !defined(RAMALLOC_TSAN)
#define RAMALLOC_X86_ASM 1
#else
#define RAMALLOC_X86_ASM 0
#endif

namespace ramalloc::detail {

/// Asks for the cache line at `p` in a state that can be written (x86-64: PREFETCHW, a
/// no-op on processors without it), so a later load and store of it need not wait for
/// another core to give it up. Never faults, whatever `p` is: the fast paths prefetch
/// addresses they have not validated.
RAMALLOC_FAST_PATH void prefetch_for_write(const void *p) noexcept {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char *>(p)));
#else
  __builtin_prefetch(p, 1);
#endif
}

/// Relaxed atomic loads fused with their compare: `object->*member == v` (a std::atomic of
/// 1, 4 or 8 bytes) and `v >= object->*member` (unsigned, 4 bytes). GCC and Clang never fold
/// an atomic load into the instruction that uses it (a `mov`, then the `cmp`); on x86-64
/// one `cmp` with a memory operand is the same aligned, single-copy-atomic read, and the
/// free fast path compares four such words (a page's state, bump limit and block size,
/// its region's owner). The field is named through its object: given a reference to the
/// field, GCC 12 computes its address into a register first, an `lea` for the `mov` saved. Under
/// ThreadSanitizer (and off x86-64) these are plain relaxed loads (RAMALLOC_X86_ASM), so
/// the race detector sees every read.

template <class S, class T>
RAMALLOC_FAST_PATH bool relaxed_equals(const S *object, std::atomic<T> S::*member, T v) noexcept {
#if RAMALLOC_X86_ASM
  static_assert(std::atomic<T>::is_always_lock_free && sizeof(T) == sizeof(std::atomic<T>) &&
                (sizeof(T) == 1 || sizeof(T) == 4 || sizeof(T) == 8));
  bool eq;
  if constexpr (sizeof(T) == 1)
    asm("cmpb %b2, %1" : "=@cce"(eq) : "m"(object->*member), "qi"(static_cast<std::uint8_t>(v)));
  else if constexpr (sizeof(T) == 4)
    asm("cmpl %k2, %1" : "=@cce"(eq) : "m"(object->*member), "ri"(v));
  else
    asm("cmpq %q2, %1" : "=@cce"(eq) : "m"(object->*member), "r"(v));
  return eq;
#else
  return (object->*member).load(std::memory_order_relaxed) == v;
#endif
}

template <class S>
RAMALLOC_FAST_PATH bool relaxed_at_or_past(std::uint32_t v, const S *object,
                                           std::atomic<std::uint32_t> S::*member) noexcept {
#if RAMALLOC_X86_ASM
  // The free must read the bump limit after the page's magic (an acquire load,
  // page::starts_block; x86-64 keeps loads in the order they are emitted). volatile keeps
  // GCC from hoisting or merging the asm; the emitted order is checked in the fast path's
  // code (docs/benchmarks.md, fast path table) and by BadInput.AFreeRacingAPagesFormat....
  bool ae;
  asm volatile("cmpl %1, %k2" : "=@ccae"(ae) : "m"(object->*member), "r"(v));
  return ae;
#else
  return v >= (object->*member).load(std::memory_order_relaxed);
#endif
}

/// `(word->load(acquire) & Bits) != 0` for `Bits` in the word's low byte, as one `test`
/// with a memory operand on x86-64 (the free fast path's page-map test: the entry is
/// only tested, so a load into a register would be an instruction for nothing). The
/// "memory" clobber is the acquire half at the compiler's level (no later access is
/// hoisted above it; x86-64 keeps loads in order); a plain acquire load under
/// ThreadSanitizer and off x86-64.
template <std::uint8_t Bits>
RAMALLOC_FAST_PATH bool acquire_tests_bits(const std::atomic<std::uintptr_t> *word) noexcept {
#if RAMALLOC_X86_ASM
  static_assert(sizeof(std::atomic<std::uintptr_t>) == sizeof(std::uintptr_t));
  bool nz;
  asm volatile("testb %2, %1" : "=@ccnz"(nz) : "m"(*word), "i"(Bits) : "memory");
  return nz;
#else
  return (word->load(std::memory_order_acquire) & Bits) != 0;
#endif
}

/// A spin-wait hint for the few bounded retries that wait on another thread mid-change
/// (the error handler's sequence lock, an orphan between its two places).
inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Fatal check failure: prints file, line and message with write(2) and aborts.
[[noreturn]] void check_failed(const char *file, int line, const char *what) noexcept;

} // namespace ramalloc::detail

/// Always on: a violated internal invariant or unusable environment is fatal.
#define RAMALLOC_CHECK(cond, msg)                                                                  \
  do {                                                                                             \
    if (RAMALLOC_UNLIKELY(!(cond)))                                                                \
      ::ramalloc::detail::check_failed(__FILE__, __LINE__, msg);                                   \
  } while (0)

#if defined(RAMALLOC_DEBUG)
#define RAMALLOC_ASSERT(cond) RAMALLOC_CHECK(cond, "assertion failed: " #cond)
#define RAMALLOC_ASSERT_EXPENSIVE(cond) RAMALLOC_CHECK(cond, "assertion failed: " #cond)
#else
#define RAMALLOC_ASSERT(cond) ((void)0)
#define RAMALLOC_ASSERT_EXPENSIVE(cond) ((void)0)
#endif

namespace ramalloc::detail {

inline constexpr unsigned slice_shift = 16; // 64 KiB slices
inline constexpr std::size_t slice_size = std::size_t{1} << slice_shift;
inline constexpr unsigned region_shift = 30; // 1 GiB regions / page-map granules
inline constexpr std::size_t region_size = std::size_t{1} << region_shift;
inline constexpr std::size_t slices_per_region = region_size / slice_size; // 16384
inline constexpr unsigned address_bits = 47;
inline constexpr std::size_t granule_count = std::size_t{1} << (address_bits - region_shift);

inline constexpr std::size_t small_max = 8 * 1024;
inline constexpr std::size_t medium_max = 256 * 1024;
inline constexpr std::size_t large_max = 32 * 1024 * 1024;
inline constexpr std::size_t max_request = std::size_t{PTRDIFF_MAX} - 2 * region_size;

inline constexpr std::size_t os_page_size = 4096;

/// How far apart words written by different threads must be. A cache line is 64 bytes,
/// but x86 cores fetch lines in 128-byte aligned pairs (the L2 spatial prefetcher): a
/// core that reads one line of a pair also pulls in its neighbour, so a word the owner
/// writes next to the line another thread reads bounces between the cores as if it
/// shared the line (larson: page descriptors in 64-byte thirds ran 1.03 s, in 128-byte
/// pairs 0.87 s; docs/benchmarks.md, section remote-cost).
inline constexpr std::size_t sharing_span = 128;

constexpr std::size_t align_up(std::size_t n, std::size_t a) {
  return (n + a - 1) & ~(a - 1);
}
constexpr bool is_pow2(std::size_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

} // namespace ramalloc::detail
