// The malloc family and every operator new/delete, mapped onto ramalloc. Compiled into
// libramalloc.so (LD_PRELOAD) and into the static ramalloc::override library.
//
// Nothing here needs a constructor: the core initialises itself on first use, which may
// be a call from the dynamic loader, dlsym or pthread internals before main.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <malloc.h>
#include <new>

#include "api/cxx_runtime.hpp"
#include "api/dispatch.hpp"
#include "override/foreign.hpp"

using namespace ramalloc::detail;

#define RAMALLOC_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

/// A free that the core rejected: glibc's own chunks go back to glibc, the rest is
/// reported (RAMALLOC_ON_INVALID decides what follows).
/// Checked pages' blocks (and huge blocks in checked mode) are completed here too.
__attribute__((noinline, cold)) void free_rejected(void *p, free_result r, bool sized = false,
                                                   std::size_t size = 0,
                                                   std::size_t align = 0) noexcept {
  if (p == nullptr) // free(NULL) comes here: the fast path has no test of its own for it
    return;
  if (r == free_result::not_live) {
    // Every free into a checked page comes here (its `bump` stays 0): complete it at
    // once rather than through free_unusual, one call less per checked free.
    free_result c;
    if (checked_free(t_current, p, sized, size, align, &c)) {
      if (c != free_result::freed)
        report_bad_free(p, c);
      return;
    }
  }
  if (r == free_result::other) {
    r = heap_free_other(t_current, p);
    if (r == free_result::freed)
      return;
  }
  if (r == free_result::not_ours && glibc_owns(p)) {
    __libc_free(p);
    return;
  }
  free_unusual(p, r, sized, size, align);
}

RAMALLOC_FAST_PATH void free_any(void *p) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  const free_result r = free_counted(p); // never `freed` for null (heap_free)
  if (RAMALLOC_UNLIKELY(r != free_result::freed))
    free_rejected(p, r);
}

/// A sized free (sized delete, free_sized): the same fast path; the size only travels to
/// the out-of-line path, where checked pages compare it with the block's size class.
RAMALLOC_FAST_PATH void free_any_sized(void *p, std::size_t size, std::size_t align) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  const free_result r = free_counted(p); // never `freed` for null (heap_free)
  if (RAMALLOC_UNLIKELY(r != free_result::freed))
    free_rejected(p, r, true, size, align);
}

bool is_foreign_glibc(const void *p) noexcept {
  return region_of(p) == nullptr && glibc_owns(p);
}

/// memalign's rule (glibc's): an alignment that is not a power of two is rounded up to
/// the next one; if that overflows, the request cannot be met.
void *memalign_impl(std::size_t align, std::size_t size) noexcept {
  if (!is_pow2(align)) {
    if (align > (SIZE_MAX >> 1) + 1) {
      errno = ENOMEM;
      return nullptr;
    }
    std::size_t a = 1;
    while (a < align)
      a <<= 1;
    align = a;
  }
  return aligned_counted(align, size);
}

// operator new: on failure, call the new-handler and retry; without one, throw
// std::bad_alloc (nothrow forms: return null, also when the handler throws). The handler
// and the exception come from the program's C++ runtime (api/cxx_runtime.hpp): this
// library does not link one.
__attribute__((noinline, cold)) void *new_retry(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    std::new_handler handler = cxx_new_handler();
    if (handler == nullptr) {
      if (nothrow)
        return nullptr;
      cxx_throw_bad_alloc();
    }
    if (nothrow) {
      annotate_user_code program; // the program's handler: memcheck checks it
      if (!cxx_call_new_handler_nothrow(handler))
        return nullptr;
    } else {
      annotate_user_code program;
      handler();
    }
    void *p = align == 0 ? malloc_counted(size) : aligned_counted(align, size);
    if (p != nullptr)
      return p;
  }
}

RAMALLOC_FAST_PATH void *new_impl(std::size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  void *p = malloc_counted(size);
  return RAMALLOC_LIKELY(p != nullptr) ? p : new_retry(size, 0, false);
}

void *new_aligned(std::size_t size, std::size_t align) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  void *p = aligned_counted(align, size);
  return p != nullptr ? p : new_retry(size, align, false);
}

/// `align` 0: the plain forms (malloc's rule); otherwise the alignment asked for.
void *new_nothrow(std::size_t size, std::size_t align) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  void *p = align == 0 ? malloc_counted(size) : aligned_counted(align, size);
  return p != nullptr ? p : new_retry(size, align, true);
}

} // namespace

// --- the malloc family -------------------------------------------------------------------

RAMALLOC_EXPORT void *malloc(std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return malloc_counted(size);
}
RAMALLOC_EXPORT void free(void *p) noexcept {
  free_any(p);
}
RAMALLOC_EXPORT void cfree(void *p) noexcept {
  free_any(p);
}
/// C23: free of a block allocated with `size` bytes (checked mode verifies the size).
RAMALLOC_EXPORT void free_sized(void *p, std::size_t size) noexcept {
  free_any_sized(p, size, 0);
}
/// C23: free of a block from aligned_alloc(align, size).
RAMALLOC_EXPORT void free_aligned_sized(void *p, std::size_t align, std::size_t size) noexcept {
  free_any_sized(p, size, align);
}

RAMALLOC_EXPORT void *calloc(std::size_t count, std::size_t size) noexcept {
  return ram_calloc(count, size);
}

RAMALLOC_EXPORT void *realloc(void *p, std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (p != nullptr && RAMALLOC_UNLIKELY(is_foreign_glibc(p)))
    return __libc_realloc(p, size);
  return ram_realloc(p, size);
}

RAMALLOC_EXPORT void *reallocarray(void *p, std::size_t count, std::size_t size) noexcept {
  std::size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, total);
}

RAMALLOC_EXPORT void *aligned_alloc(std::size_t align, std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return aligned_counted(align, size);
}

RAMALLOC_EXPORT int posix_memalign(void **out, std::size_t align, std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (!is_pow2(align) || align % sizeof(void *) != 0)
    return EINVAL; // *out untouched
  const int saved = errno;
  void *p = aligned_counted(align, size);
  if (p == nullptr) {
    const int err = errno == EINVAL ? EINVAL : ENOMEM;
    errno = saved;
    return err;
  }
  *out = p;
  return 0;
}

RAMALLOC_EXPORT void *memalign(std::size_t align, std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return memalign_impl(align, size);
}

RAMALLOC_EXPORT void *valloc(std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return aligned_counted(os_page_size, size);
}

RAMALLOC_EXPORT void *pvalloc(std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (size > SIZE_MAX - os_page_size) {
    errno = ENOMEM;
    return nullptr;
  }
  return aligned_counted(os_page_size, align_up(size == 0 ? 1 : size, os_page_size));
}

RAMALLOC_EXPORT std::size_t malloc_usable_size(void *p) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (p == nullptr)
    return 0;
  if (region_of(p) == nullptr)
    return glibc_owns(p) ? glibc_usable_size(p) : 0;
  return ram_usable_size(p);
}

/// Pays all debt and returns free memory (flush); 1 when memory went back to the OS.
RAMALLOC_EXPORT int malloc_trim(std::size_t) noexcept {
  ram_stats before{}, after{};
  ram_get_stats(&before);
  ram_flush();
  ram_get_stats(&after);
  return after.bytes_purged > before.bytes_purged ? 1 : 0;
}

RAMALLOC_EXPORT struct mallinfo2 mallinfo2() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  ram_stats s{};
  ram_get_stats(&s);
  struct mallinfo2 m {};
  m.arena = s.committed_bytes;
  m.uordblks = s.live_bytes;
  m.fordblks = s.committed_bytes > s.live_bytes ? s.committed_bytes - s.live_bytes : 0;
  m.keepcost = 0;
  return m;
}

RAMALLOC_EXPORT struct mallinfo mallinfo() noexcept {
  const struct mallinfo2 m2 = mallinfo2();
  struct mallinfo m {};
  // The old interface has int fields: saturate instead of wrapping.
  auto clamp = [](std::size_t v) { return v > INT32_MAX ? INT32_MAX : static_cast<int>(v); };
  m.arena = clamp(m2.arena);
  m.uordblks = clamp(m2.uordblks);
  m.fordblks = clamp(m2.fordblks);
  return m;
}

// --- operator new / delete -----------------------------------------------------------------

void *operator new(std::size_t n) {
  return new_impl(n);
}
void *operator new[](std::size_t n) {
  return new_impl(n);
}
void *operator new(std::size_t n, const std::nothrow_t &) noexcept {
  return new_nothrow(n, 0);
}
void *operator new[](std::size_t n, const std::nothrow_t &) noexcept {
  return new_nothrow(n, 0);
}
void *operator new(std::size_t n, std::align_val_t a) {
  return new_aligned(n, static_cast<std::size_t>(a));
}
void *operator new[](std::size_t n, std::align_val_t a) {
  return new_aligned(n, static_cast<std::size_t>(a));
}
void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}
void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {
  return new_nothrow(n, static_cast<std::size_t>(a));
}

void operator delete(void *p) noexcept {
  free_any(p);
}
void operator delete[](void *p) noexcept {
  free_any(p);
}
void operator delete(void *p, std::size_t n) noexcept {
  free_any_sized(p, n, 0);
}
void operator delete[](void *p, std::size_t n) noexcept {
  free_any_sized(p, n, 0);
}
void operator delete(void *p, const std::nothrow_t &) noexcept {
  free_any(p);
}
void operator delete[](void *p, const std::nothrow_t &) noexcept {
  free_any(p);
}
void operator delete(void *p, std::align_val_t) noexcept {
  free_any(p);
}
void operator delete[](void *p, std::align_val_t) noexcept {
  free_any(p);
}
void operator delete(void *p, std::size_t n, std::align_val_t a) noexcept {
  free_any_sized(p, n, static_cast<std::size_t>(a));
}
void operator delete[](void *p, std::size_t n, std::align_val_t a) noexcept {
  free_any_sized(p, n, static_cast<std::size_t>(a));
}
void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept {
  free_any(p);
}
void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept {
  free_any(p);
}
