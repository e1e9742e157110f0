// The C API (ramalloc.h): the native operations and the malloc family with C's rules.
#include <cstring>

#include "api/dispatch.hpp"
#include "global/heaps.hpp"

namespace ramalloc::detail {
bool apply_option(const char *name, const char *value) noexcept;
void set_error_handler(ram_error_fn fn, void *context) noexcept;
} // namespace ramalloc::detail

using namespace ramalloc;
using namespace ramalloc::detail;

namespace {
void *malloc_impl(std::size_t size) noexcept {
  return malloc_counted(size);
}
void *aligned_impl(std::size_t align, std::size_t size) noexcept {
  return aligned_counted(align, size);
}
} // namespace

extern "C" {

void *ram_acquire(size_t size) {
  return ramalloc::acquire(size);
}
void *ram_acquire_aligned(size_t size, size_t align) {
  return ramalloc::acquire(size, align);
}
void ram_discard(void *p) {
  ramalloc::discard(p);
}
size_t ram_reclaim(size_t budget) {
  return ramalloc::reclaim(budget);
}
void ram_flush(void) {
  ramalloc::flush();
}

int ram_query(const void *p, ram_block_info *info) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  const auto q = ramalloc::query(p);
  if (!q)
    return 0;
  if (info != nullptr) {
    info->start = q->start;
    info->usable_size = q->usable_size;
    info->is_start = q->is_start ? 1 : 0;
    info->owner = const_cast<void *>(q->owner);
    info->kind = static_cast<int>(q->kind);
  }
  return 1;
}

ram_heap *ram_heap_create(void) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  heap_state *h = heap_create();
  if (h == nullptr)
    errno = ENOMEM;
  return reinterpret_cast<ram_heap *>(h);
}
void ram_heap_destroy(ram_heap *heap) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (heap == nullptr)
    return;
  auto *h = reinterpret_cast<heap_state *>(heap);
  RAMALLOC_CHECK(t_current != h, "ram_heap_destroy of a heap that is current on this thread");
  heap_release(h, /*drain=*/true);
}
void *ram_heap_acquire(ram_heap *heap, size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return alloc_native(reinterpret_cast<heap_state *>(heap), size);
}
size_t ram_heap_reclaim(ram_heap *heap, size_t budget) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return heap_reclaim(reinterpret_cast<heap_state *>(heap), budget);
}
size_t ram_heap_release_all(ram_heap *heap) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return heap_release_all(reinterpret_cast<heap_state *>(heap));
}
void ram_heap_get_stats(const ram_heap *heap, ram_stats *out) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  *out = ram_stats{};
  heap_stats(reinterpret_cast<const heap_state *>(heap), out);
}

void *ram_malloc(size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return malloc_impl(size);
}

void *ram_calloc(size_t count, size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return calloc_counted(total);
}

void *ram_realloc(void *p, size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (p == nullptr)
    return malloc_impl(size);
  if (size == 0) { // documented: frees p, returns a fresh minimum-size block
    ram_free(p);
    return malloc_impl(0);
  }
  if (size > max_request) {
    errno = ENOMEM;
    return nullptr;
  }
  const auto q = query_block(p);
  if (!q || !q->is_start) {
    free_and_report(p); // reports the bad pointer (and frees nothing)
    errno = EINVAL;
    return nullptr;
  }
  // A block already freed (exactly on a checked page; by its canary, confirmed by the
  // owner, otherwise) is reported before anything is copied or allocated.
  if (free_result why; RAMALLOC_UNLIKELY(!block_is_live(t_current, p, &why))) {
    report_bad_free(p, why);
    errno = EINVAL;
    return nullptr;
  }
  // What the program was given (tools: its last requested size; otherwise the block).
  const std::size_t old_size = annotate_requested(p, q->usable_size);
  // Shrinking by less than half keeps the block: no copy, and the waste stays bounded.
  if (size <= q->usable_size && size >= q->usable_size / 2) {
    annotate_resized(p, old_size, size, q->usable_size);
    return p;
  }
  void *fresh = malloc_impl(size);
  if (fresh == nullptr)
    return nullptr; // p stays valid
  std::memcpy(fresh, p, size < old_size ? size : old_size);
  ram_free(p);
  return fresh;
}

void ram_free(void *p) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  free_and_report(p); // null: nothing (free_unusual)
}

void ram_free_sized(void *p, size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  const free_result r = free_counted(p);
  if (r != free_result::freed) // null included: nothing (free_unusual)
    free_unusual(p, r, /*sized=*/true, size, 0);
}

void *ram_aligned_alloc(size_t align, size_t size) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return aligned_impl(align, size);
}

size_t ram_usable_size(const void *p) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (p == nullptr)
    return 0;
  const auto q = query_block(p);
  if (annotations_enabled && q && q->is_start)
    annotate_usable(p, q->usable_size); // the program may use every usable byte now
  return q && q->is_start ? q->usable_size : 0;
}

void ram_get_stats(ram_stats *out) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (out != nullptr)
    global_stats(out);
}

void ram_get_heap_stats(ram_stats *out) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (out == nullptr)
    return;
  *out = ram_stats{};
  if (heap_state *h = current_state())
    heap_stats(h, out);
}

int ram_set_option(const char *name, const char *value) {
  if (ramalloc::set_option(name, value))
    return 0;
  errno = EINVAL;
  return -1;
}

void ram_set_error_handler(ram_error_fn fn, void *context) {
  set_error_handler(fn, context);
}

} // extern "C"
