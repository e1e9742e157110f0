// Heap life cycle and thread binding.
//
// Heap descriptors come from metadata memory and are never unmapped: pooled when free,
// orphaned when their owner thread exits with blocks still live, adopted by the next
// thread that needs a heap. A remote free can therefore always reach its owner's inbox.
#pragma once

#include <cerrno>

#include "mem/heap.hpp"

namespace ramalloc::detail {

/// The calling thread's current heap (its own, one installed by heap_scope, or g_unbound
/// while it has none).
extern constinit thread_local heap_state *t_current __attribute__((tls_model("initial-exec")));

/// Binds a heap to the calling thread (adopting an orphan first: the newest one only when
/// no other waits); nullptr when out of memory, or when the thread's exit hook already
/// handed its heap off (thread_exited)
/// unless `even_after_exit` (current_heap(), which must return a heap that lasts).
/// Called when t_current is g_unbound.
RAMALLOC_SLOW_PATH heap_state *bind_thread(bool even_after_exit = false) noexcept;

/// The calling thread is exiting and its exit hook has handed its heap off: a heap bound
/// now might never be handed off, so allocations adopt one for a single allocation.
bool thread_exited() noexcept;
/// A thread heap owned by the caller for one allocation (an orphan adopted, else a new
/// one); the caller hands it back with heap_release. nullptr when out of memory. O(1).
heap_state *adopt_for_one_allocation() noexcept;

/// The calling thread's current heap, bound first if it has none (nullptr if none can
/// be bound: see bind_thread).
RAMALLOC_FAST_PATH heap_state *current_state() noexcept {
  heap_state *h = t_current;
  if (RAMALLOC_UNLIKELY(h == &g_unbound))
    h = bind_thread();
  return h;
}

/// A fresh (or pooled) heap owned by the caller; nullptr when out of memory. With
/// `without_memory`, a heap that owns no region yet (for static-buffer heaps, which must
/// not inherit OS memory from a pooled descriptor).
heap_state *heap_create(bool without_memory = false) noexcept;
/// Ends the caller's ownership: retires the heap to the pool when it holds no live block
/// and no debt, otherwise orphans it for other threads to drain. O(1) unless `drain`
/// (then the heap is flushed first).
void heap_release(heap_state *h, bool drain) noexcept;
/// Spends at most `budget` units on one orphaned heap (a thread's orphan only once no
/// thread has exited for purge_delay); returns the units spent.
std::size_t service_orphans(std::size_t budget) noexcept;
/// Flushes every orphan (unbounded; flush only).
void flush_orphans() noexcept;
/// Process-wide statistics.
void global_stats(ram_stats *out) noexcept;

/// An allocation for a thread that has no heap and cannot be given one: out of memory
/// (NULL, ENOMEM), or past its exit hook (a later pthread-key destructor allocates),
/// where a heap bound now might never be handed off. Then the block comes from a thread
/// heap adopted for this one allocation and handed straight back (O(1): two stack
/// operations), so nothing outlives the thread unseen and heaps are reused, not
/// multiplied; the block is freed like any other.
template <typename Allocate>
RAMALLOC_SLOW_PATH void *alloc_unbound(Allocate allocate) noexcept {
  heap_state *h = thread_exited() ? adopt_for_one_allocation() : nullptr;
  if (h == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  void *p = allocate(h);
  heap_release(h, /*drain=*/false);
  return p;
}

/// `allocate` for a thread whose current heap is g_unbound (its first acquire of a class,
/// or its first big one): on the heap bound to it now, or as alloc_unbound (past its exit
/// hook, or out of memory).
template <typename Allocate>
RAMALLOC_SLOW_PATH void *alloc_binding(Allocate allocate) noexcept {
  heap_state *h = bind_thread();
  return h != nullptr ? allocate(h) : alloc_unbound(allocate);
}

} // namespace ramalloc::detail
