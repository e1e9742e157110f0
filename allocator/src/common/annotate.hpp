// Debugging-tool annotations: tell Valgrind's memcheck or AddressSanitizer which bytes of
// ramalloc's memory the program may touch, so they see through the pool as they see
// through glibc's malloc (docs/hardening.md, "Valgrind" and "AddressSanitizer").
//
//   default build        every hook is an empty inline function: no code, the fast paths
//                        compile to the same instructions as without this file
//   RAMALLOC_VALGRIND=1  (CMake option RAMALLOC_VALGRIND) memcheck client requests:
//                        blocks are MALLOCLIKE/FREELIKE/RESIZEINPLACE blocks (no
//                        redzone), everything else the allocator reserved is NOACCESS,
//                        and memcheck's error reporting is off while ramalloc's own code
//                        runs (annotate_scope), so its reads and writes of free blocks and
//                        descriptors are not the program's errors
//   -fsanitize=address   (the asan preset) ASan poisoning: a block is unpoisoned for
//                        exactly the bytes requested; free blocks, the rest of each
//                        block, never-used page memory and the gap after each region
//                        header are poisoned; ramalloc's own accesses to poisoned memory
//                        are bracketed by annotate_touch_begin / annotate_touch_end
//
// ASan tracks memory in 8-byte granules, so blocks smaller than 8 bytes (the 4-byte class
// of the native API, two blocks per granule) are never poisoned: annotate_tracks().
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/defs.hpp"

#if defined(RAMALLOC_VALGRIND) && RAMALLOC_VALGRIND
#include <valgrind/memcheck.h>
#define RAMALLOC_ANNOTATE_VALGRIND 1
#elif defined(__SANITIZE_ADDRESS__)
#define RAMALLOC_ANNOTATE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RAMALLOC_ANNOTATE_ASAN 1
#endif
#endif

#if defined(RAMALLOC_ANNOTATE_ASAN)
#include <sanitizer/asan_interface.h>
/// A function whose memory accesses ASan does not check (the allocator's own reads of
/// words in blocks whose state it does not know).
#define RAMALLOC_NO_SANITIZE_ADDRESS __attribute__((no_sanitize_address, noinline))
#else
#define RAMALLOC_NO_SANITIZE_ADDRESS
#endif

namespace ramalloc::detail {

#if defined(RAMALLOC_ANNOTATE_VALGRIND) || defined(RAMALLOC_ANNOTATE_ASAN)
inline constexpr bool annotations_enabled = true;
#else
inline constexpr bool annotations_enabled = false;
#endif

/// Whether the tool tracks blocks of `block_size` bytes (ASan: at least one 8-byte
/// granule each; memcheck: every block).
constexpr bool annotate_tracks(std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  return block_size >= 8;
#else
  (void)block_size;
  return annotations_enabled;
#endif
}

#if defined(RAMALLOC_ANNOTATE_VALGRIND)
/// annotate_scope nesting on this thread (initial-exec: no call into the dynamic linker).
constinit inline thread_local unsigned t_annotate_depth __attribute__((tls_model("initial-exec"))) =
    0;
#endif

/// While one lives, the thread runs ramalloc's own code: memcheck reports nothing (the
/// allocator reads and writes free blocks and NOACCESS descriptors). Every public entry
/// point opens one; user code called from inside (the error handler, a new_handler) is
/// bracketed by annotate_user_code. Nests: only the outermost one switches reporting.
/// Empty outside Valgrind builds.
struct __attribute__((unused)) annotate_scope {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  annotate_scope() noexcept {
    if (t_annotate_depth++ == 0)
      VALGRIND_DISABLE_ERROR_REPORTING;
  }
  ~annotate_scope() {
    if (--t_annotate_depth == 0)
      VALGRIND_ENABLE_ERROR_REPORTING;
  }
  annotate_scope(const annotate_scope &) = delete;
  annotate_scope &operator=(const annotate_scope &) = delete;
#endif
};

/// The program's own code runs (a callback): memcheck reports as usual, inside an
/// annotate_scope or not.
struct __attribute__((unused)) annotate_user_code {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  annotate_user_code() noexcept : saved_(t_annotate_depth) {
    if (saved_ != 0)
      VALGRIND_ENABLE_ERROR_REPORTING;
    t_annotate_depth = 0; // an allocation inside the callback opens its own scope
  }
  ~annotate_user_code() {
    t_annotate_depth = saved_;
    if (saved_ != 0)
      VALGRIND_DISABLE_ERROR_REPORTING;
  }
  annotate_user_code(const annotate_user_code &) = delete;
  annotate_user_code &operator=(const annotate_user_code &) = delete;

private:
  unsigned saved_;
#endif
};

/// Memory the allocator reserved from the OS (regions, huge mappings, metadata): the
/// program may touch none of it until a block in it is handed out. memcheck: NOACCESS
/// (which also keeps descriptors out of its leak scan, so a leaked block is "definitely
/// lost", not reachable through its page's descriptor). ASan: nothing (the shadow of a
/// 1 GiB reservation would be 128 MiB); pages are poisoned when formatted instead.
inline void annotate_reserved(void *p, std::size_t n) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
#else
  (void)p, (void)n;
#endif
}

/// Memory inside the allocator that the program must not touch: free blocks, the unused
/// tail of a page, a region header's gap, a static buffer's slices. `block_size`: the
/// block size of the page it belongs to (any value >= 8 for memory that is no block).
RAMALLOC_FAST_PATH void annotate_close(void *p, std::size_t n, std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  if (annotate_tracks(block_size))
    ASAN_POISON_MEMORY_REGION(p, n);
#elif defined(RAMALLOC_ANNOTATE_VALGRIND)
  (void)block_size;
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
#else
  (void)p, (void)n, (void)block_size;
#endif
}

/// The allocator is about to read or write bytes [p, p+n) of memory the program may not
/// touch (a free block's link and canary, a checked page's fill pattern), and
/// annotate_touch_end says it is done, before anyone else can reach them. ASan:
/// unpoison, then poison again. memcheck: nothing (its reports are off inside an
/// annotate_scope, and the allocator's stores leave NOACCESS bytes NOACCESS).
RAMALLOC_FAST_PATH void annotate_touch_begin(void *p, std::size_t n,
                                             std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  if (annotate_tracks(block_size))
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n, (void)block_size;
#endif
}
RAMALLOC_FAST_PATH void annotate_touch_end(void *p, std::size_t n,
                                           std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  if (annotate_tracks(block_size))
    ASAN_POISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n, (void)block_size;
#endif
}

/// A fresh page of `block_size` blocks: all of it inaccessible until handed out. For ASan
/// a page of blocks it does not track is unpoisoned instead (it may have been poisoned in
/// an earlier life).
inline void annotate_page_formatted(void *p, std::size_t n, std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  if (annotate_tracks(block_size))
    ASAN_POISON_MEMORY_REGION(p, n);
  else
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p, (void)n, (void)block_size; // memcheck: free memory is NOACCESS already
#endif
}

/// A region of the program's own memory (a static buffer) given back to it when its heap
/// is retired. memcheck: DEFINED (it cannot know which bytes the program wrote before);
/// ASan: unpoisoned.
inline void annotate_returned(void *p, std::size_t n) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#elif defined(RAMALLOC_ANNOTATE_VALGRIND)
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
  (void)p, (void)n;
#endif
}

/// Block `p` (of `block_size` usable bytes) handed out for a request of `size` bytes: the
/// program may use exactly those. `zeroed`: its bytes are known to be zero (calloc).
RAMALLOC_FAST_PATH void annotate_acquired(void *p, std::size_t size, std::size_t block_size,
                                          bool zeroed = false) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  (void)block_size;
  if (p != nullptr)
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zeroed);
#elif defined(RAMALLOC_ANNOTATE_ASAN)
  (void)zeroed;
  if (p == nullptr || !annotate_tracks(block_size))
    return;
  // A huge block is a fresh mapping, never poisoned (its shadow may be gigabytes): only
  // its tail is. Anything else may hold poison from an earlier life.
  if (block_size <= large_max)
    ASAN_UNPOISON_MEMORY_REGION(p, size);
  ASAN_POISON_MEMORY_REGION(static_cast<char *>(p) + size, block_size - size);
#else
  (void)p, (void)size, (void)block_size, (void)zeroed;
#endif
}

/// Block `p` of `block_size` bytes freed (the free was valid). Called before the block
/// can reach another thread (before a remote free publishes it).
RAMALLOC_FAST_PATH void annotate_freed(void *p, std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  (void)block_size;
  VALGRIND_FREELIKE_BLOCK(p, 0);
#elif defined(RAMALLOC_ANNOTATE_ASAN)
  // A huge block is unmapped next (annotate_unmapping): any access faults.
  if (annotate_tracks(block_size) && block_size <= large_max)
    ASAN_POISON_MEMORY_REGION(p, block_size);
#else
  (void)p, (void)block_size;
#endif
}

/// heap::release_all frees every block of a span at once, without visiting them: the
/// `count` blocks of `block_size` bytes from `start` that were ever handed out.
/// memcheck must hear of each live one, so every one gets a FREELIKE (those already free
/// are rejected silently: reports are off inside the annotate_scope) — O(blocks), in
/// Valgrind builds only. Then the span is inaccessible (memcheck: already; ASan: poisoned).
inline void annotate_span_released(void *start, std::size_t count, std::size_t block_size,
                                   std::size_t span_bytes) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  (void)span_bytes;
  if (!RUNNING_ON_VALGRIND)
    return;
  for (std::size_t i = 0; i < count; ++i)
    VALGRIND_FREELIKE_BLOCK(static_cast<char *>(start) + i * block_size, 0);
#elif defined(RAMALLOC_ANNOTATE_ASAN)
  (void)count;
  if (annotate_tracks(block_size))
    ASAN_POISON_MEMORY_REGION(start, span_bytes);
#else
  (void)start, (void)count, (void)block_size, (void)span_bytes;
#endif
}

/// A huge block's mapping is about to be unmapped: ASan forgets the poison of its tail,
/// so a later mapping at that address starts clean.
inline void annotate_unmapping(void *p, std::size_t size, std::size_t usable) noexcept {
#if defined(RAMALLOC_ANNOTATE_ASAN)
  const std::size_t tail = usable < os_page_size ? usable : os_page_size;
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char *>(p) + usable - tail, tail);
  (void)size;
#else
  (void)p, (void)size, (void)usable;
#endif
}

/// A free the allocator rejected (double, interior, foreign...): memcheck reports it as
/// it reports a bad free() with glibc ("Invalid free()", with the block's history).
/// ramalloc reports it too, through its error callback.
inline void annotate_invalid_free(void *p) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  annotate_user_code program;
  VALGRIND_FREELIKE_BLOCK(p, 0);
#else
  (void)p;
#endif
}

/// The size the program was given for live block `p` (of `block_size` usable bytes):
/// what annotate_acquired or annotate_resized last recorded. Read back from the tool's
/// own state: the accessible prefix of the block (binary search, O(log block_size)
/// requests). Without a tool: `block_size`.
inline std::size_t annotate_requested(const void *p, std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  if (!RUNNING_ON_VALGRIND)
    return block_size;
  const auto *b = static_cast<const char *>(p);
  std::size_t lo = 0, hi = block_size; // [0, lo) accessible, [hi, block_size) not
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    unsigned char vbits;
    if (VALGRIND_GET_VBITS(b + mid, &vbits, 1) == 1)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
#elif defined(RAMALLOC_ANNOTATE_ASAN)
  if (!annotate_tracks(block_size))
    return block_size;
  void *first = __asan_region_is_poisoned(const_cast<void *>(p), block_size);
  return first == nullptr ? block_size
                          : static_cast<std::size_t>(static_cast<const char *>(first) -
                                                     static_cast<const char *>(p));
#else
  (void)p;
  return block_size;
#endif
}

/// Live block `p` keeps its place but the program may now use `new_size` bytes of it
/// instead of `old_size` (realloc in place, malloc_usable_size).
inline void annotate_resized(void *p, std::size_t old_size, std::size_t new_size,
                             std::size_t block_size) noexcept {
#if defined(RAMALLOC_ANNOTATE_VALGRIND)
  (void)block_size;
  if (old_size != new_size && new_size != 0)
    VALGRIND_RESIZEINPLACE_BLOCK(p, old_size, new_size, 0);
#elif defined(RAMALLOC_ANNOTATE_ASAN)
  if (!annotate_tracks(block_size))
    return;
  auto *b = static_cast<char *>(p);
  if (new_size > old_size)
    ASAN_UNPOISON_MEMORY_REGION(b + old_size, new_size - old_size);
  else
    ASAN_POISON_MEMORY_REGION(b + new_size, old_size - new_size);
#else
  (void)p, (void)old_size, (void)new_size, (void)block_size;
#endif
}

#if defined(RAMALLOC_ANNOTATE_ASAN)
/// One of the allocator's own words in a block whose state it does not know yet (the
/// canary of a block being freed, which may be free already), read without ASan's check
/// and without changing what is poisoned.
RAMALLOC_NO_SANITIZE_ADDRESS inline std::uint32_t annotate_peek32(const void *p) noexcept {
  const auto *b = static_cast<const volatile unsigned char *>(p);
  return static_cast<std::uint32_t>(b[0]) | static_cast<std::uint32_t>(b[1]) << 8 |
         static_cast<std::uint32_t>(b[2]) << 16 | static_cast<std::uint32_t>(b[3]) << 24;
}
#else
RAMALLOC_FAST_PATH std::uint32_t annotate_peek32(const void *p) noexcept {
  std::uint32_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
#endif

/// Two of the allocator's words read the same way (a kept block's slot address:
/// mem/remote_cache.cpp).
RAMALLOC_FAST_PATH std::uint64_t annotate_peek64(const void *p) noexcept {
  const auto *b = static_cast<const unsigned char *>(p);
  return static_cast<std::uint64_t>(annotate_peek32(b)) |
         static_cast<std::uint64_t>(annotate_peek32(b + 4)) << 32;
}

} // namespace ramalloc::detail
