// Request routing shared by the C++ and C entry points: size -> class, large or huge,
// and the reporting of rejected frees.
#pragma once

#include <cerrno>

#include "global/heaps.hpp"
#include "mem/checked.hpp"

namespace ramalloc::detail {

/// query() without telling the tools anything (for the allocator's own use: realloc,
/// reports). O(1), safe for any value.
std::optional<block_info> query_block(const void *p) noexcept;

/// The program learnt that the block at `start` has `usable` bytes (query,
/// malloc_usable_size) and may use them all: tools are told so, if it is live. Reads no
/// block (query never does): the tool's own state tells a live block (a prefix of it is
/// accessible) from a free one (nothing is). A block of 0 requested bytes stays so.
inline void annotate_usable(const void *start, std::size_t usable) noexcept {
  if (!annotations_enabled)
    return;
  if (const std::size_t requested = annotate_requested(start, usable); requested != 0)
    annotate_resized(const_cast<void *>(start), requested, usable, usable);
}

/// Anything above medium_max: a large span or a huge mapping. `align` is a power of two.
/// `zeroed` (when given) tells whether the block is known to be zero (a huge mapping is
/// always fresh; a large span when it comes from never-touched or purged memory).
RAMALLOC_SLOW_PATH inline void *alloc_big(heap_state *h, std::size_t size, std::size_t align,
                                          bool *zeroed = nullptr) noexcept {
  if (size > max_request) {
    errno = ENOMEM;
    return nullptr;
  }
  if (RAMALLOC_UNLIKELY(h == &g_unbound)) // the thread has no heap yet
    return alloc_binding([=](heap_state *b) { return alloc_big(b, size, align, zeroed); });
  if (size <= large_max && align <= region_size / 4) {
    void *p = heap_alloc_large(h, size, align, zeroed);
    annotate_acquired(p, size, align_up(size, slice_size), zeroed != nullptr && *zeroed);
    return p;
  }
  if (zeroed != nullptr)
    *zeroed = true;
  void *p = heap_alloc_huge(h, size, align);
  annotate_acquired(p, size, align_up(size, os_page_size), zeroed != nullptr);
  return p;
}

/// Native allocation: natural alignment (largest power of two <= min(size, 16)).
/// Sizes up to class_table_max are tested first: their class is one table load, and the
/// common case makes one comparison.
RAMALLOC_FAST_PATH void *alloc_native(heap_state *h, std::size_t size) noexcept {
  std::size_t cls; // size_t, as in alloc_malloc: the index needs no zero-extending copy
  if (RAMALLOC_LIKELY(size <= class_table_max))
    cls = class_of_tabled(size);
  else if (size <= medium_max)
    cls = class_of_computed(size);
  else
    return alloc_big(h, size, slice_size);
  void *p = heap_alloc_class<true>(h, cls);
  annotate_acquired(p, size, class_block_size(cls)); // tools: see common/annotate.hpp
  return p;
}

/// malloc-style allocation: C's rule, alignment for any object of the requested size.
/// Above 8 bytes that is alignof(max_align_t) = 16 (every class from 16 bytes up is a
/// multiple of 16); an object of at most 8 bytes needs at most 8, so sizes 0..8 take the
/// 8-byte class (as in mimalloc, jemalloc, tcmalloc). The 4-byte class is never used.
RAMALLOC_FAST_PATH void *alloc_malloc(heap_state *h, std::size_t size) noexcept {
  std::size_t cls;
  if (RAMALLOC_LIKELY(size <= class_table_max)) // as alloc_native
    cls = class_of_tabled_from_8(size);
  else if (size <= medium_max)
    cls = class_of_computed(size);
  else
    return alloc_big(h, size, slice_size);
  void *p = heap_alloc_class<false>(h, cls);
  annotate_acquired(p, size, class_block_size(cls));
  return p;
}

/// Aligned allocation; `align` must already be a power of two.
inline void *alloc_aligned(heap_state *h, std::size_t size, std::size_t align) noexcept {
  const std::size_t requested = size; // what the tools are told the program may use
  if (size == 0)
    size = 1;
  if (align <= 16) {
    if (size <= medium_max) {
      const unsigned cls = class_of(size < align ? align : size);
      void *p = heap_alloc_class<true>(h, cls);
      annotate_acquired(p, requested, class_block_size(cls));
      return p;
    }
  } else if (align <= slice_size && size <= medium_max - align) {
    // A class whose block size is a multiple of `align` exists for every rounded size
    // (see docs/design.md), and pages start on 64 KiB boundaries.
    const unsigned cls = class_of(align_up(size, align));
    void *p = heap_alloc_class<false>(h, cls);
    annotate_acquired(p, requested, class_block_size(cls));
    return p;
  }
  return alloc_big(h, size, align < slice_size ? slice_size : align);
}

/// Reports a free that was rejected (and counts it): one line saying what happened, the
/// address and, when the address lies in one of ramalloc's blocks, that block's start,
/// size class, kind and owning heap.
RAMALLOC_SLOW_PATH inline void report_bad_free(void *p, free_result r) noexcept {
  count_invalid_free();
  annotate_invalid_free(p); // memcheck's own "Invalid free()" report, as with glibc
  const std::optional<block_info> info = query_block(p);
  ram_error kind = RAM_ERROR_INVALID_FREE;
  const char *what = "free of a pointer that ramalloc did not allocate";
  switch (r) {
  case free_result::not_ours:
  case free_result::checked:
  case free_result::other:
  case free_result::freed:
    break;
  case free_result::not_live:
    what = info ? "free of a block that was never allocated"
                : "free of ramalloc memory that holds no live block (already freed?)";
    break;
  case free_result::interior:
    kind = RAM_ERROR_INTERIOR_FREE;
    what = "free of a pointer inside a block, not at its start";
    break;
  case free_result::double_free:
  case free_result::marked:
    kind = RAM_ERROR_DOUBLE_FREE;
    what = "the block is already free";
    break;
  case free_result::unconfirmed:
    static_assert(heap_state::parked_slots == 16, "the message names the number");
    kind = RAM_ERROR_DOUBLE_FREE;
    what = "the block looks already free (it carries its free canary, and its owning heap "
           "has 16 such frees from other threads to confirm already)";
    break;
  }
  if (!info) {
    report_error(kind, p, what);
    return;
  }
  static constexpr const char *kinds[] = {"small", "medium", "large", "huge"};
  report_block_error(kind, p, what, info->start, info->usable_size,
                     kinds[static_cast<unsigned>(info->kind)], info->owner);
}

/// A free that heap_free did not complete: a block of a checked page (or a huge block in
/// checked mode) is freed or rejected by checked_free; anything else rejected is
/// reported. `sized`: a sized free (operator delete with a size, free_sized) of `size`
/// bytes with alignment `align` (0: the malloc rule). Returns whether the block was freed.
/// A null pointer (which heap_free never frees) is no block: nothing happens.
RAMALLOC_SLOW_PATH inline bool free_unusual(void *p, free_result r, bool sized = false,
                                            std::size_t size = 0, std::size_t align = 0) noexcept {
  if (p == nullptr)
    return false;
  if (r == free_result::other) {
    r = heap_free_other(t_current, p);
    if (r == free_result::freed)
      return true;
  }
  if (r == free_result::marked) {
    r = free_marked(t_current, p);
    if (r == free_result::freed)
      return true;
  }
  if (r == free_result::not_live || r == free_result::interior || r == free_result::checked) {
    free_result c;
    if (checked_free(t_current, p, sized, size, align, &c)) {
      if (c == free_result::freed)
        return true;
      r = c;
    }
  }
  report_bad_free(p, r);
  return false;
}

/// Frees `p` from the calling thread (with the debug step count around it).
RAMALLOC_FAST_PATH free_result free_counted(void *p) noexcept {
  steps_begin();
  const free_result r = heap_free(t_current, p);
  steps_end_discard();
  return r;
}

/// Frees and reports what heap_free rejected. Returns whether the pointer was freed.
RAMALLOC_FAST_PATH bool free_and_report(void *p) noexcept {
  const free_result r = free_counted(p);
  if (RAMALLOC_LIKELY(r == free_result::freed))
    return true;
  return free_unusual(p, r);
}

/// `allocate(h)` on the calling thread's current heap (debug step count around it). No
/// test for a thread without one: its current heap is g_unbound (mem/heap.hpp).
template <typename Allocate>
RAMALLOC_FAST_PATH void *alloc_current(Allocate allocate) noexcept {
  steps_begin();
  // A thread without a heap has g_unbound: its acquires reach heap_alloc_slow (classes)
  // or alloc_big, which bind it one.
  void *p = allocate(t_current);
  steps_end_acquire();
  return p;
}

/// malloc-style allocation for the calling thread.
RAMALLOC_FAST_PATH void *malloc_counted(std::size_t size) noexcept {
  return alloc_current([size](heap_state *h) { return alloc_malloc(h, size); });
}

/// calloc's allocation of `size` (already checked for overflow) bytes, zeroed. Memory the
/// kernel hands out as zero pages (a huge mapping, a large span never touched or purged)
/// is not written: a 32 MiB calloc then costs no page fault until it is used.
inline void *calloc_counted(std::size_t size) noexcept {
  bool zeroed = false;
  void *p = alloc_current([size, &zeroed](heap_state *h) {
    return size <= medium_max ? alloc_malloc(h, size) : alloc_big(h, size, slice_size, &zeroed);
  });
  if (p != nullptr && !zeroed)
    __builtin_memset(p, 0, size);
  return p;
}

/// Aligned malloc-style allocation (at least 16-byte alignment, whatever the size:
/// aligned_alloc, posix_memalign, memalign and aligned new are not given less than
/// plain malloc of 16 bytes); EINVAL unless `align` is a power of two.
inline void *aligned_counted(std::size_t align, std::size_t size) noexcept {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  const std::size_t a = align < 16 ? 16 : align;
  return alloc_current([=](heap_state *h) { return alloc_aligned(h, size, a); });
}

} // namespace ramalloc::detail
