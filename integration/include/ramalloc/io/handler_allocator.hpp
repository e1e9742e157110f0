// handler_allocator<T>: an Asio associated allocator that draws from the current heap.
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <type_traits>

#include <ramalloc/ramalloc.hpp>

#include "ramalloc/io/config.hpp"

namespace ramalloc::io {

/// A standard Allocator (usable as an Asio associated allocator, with
/// `asio::bind_allocator`, or in std containers) whose `allocate` takes memory from the
/// calling thread's *current* heap — inside a `heap_strand` handler, the strand's heap;
/// on a worker, the worker's heap. `deallocate` may run on any thread (Asio frees
/// operation memory on whichever thread completes the operation): it is
/// `ramalloc::discard`, a remote free when that thread does not own the block.
///
/// All instances are interchangeable (`is_always_equal`): a block allocated through any
/// of them may be freed through any other. Stateless, so it costs nothing to copy.
///
/// Time: allocate/deallocate O(1) (ramalloc::acquire / discard). Thread-safe.
template <typename T>
class handler_allocator {
public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_move_assignment = std::true_type;
  using is_always_equal = std::true_type;

  template <typename U>
  struct rebind {
    using other = handler_allocator<U>;
  };

  constexpr handler_allocator() noexcept = default;
  template <typename U>
  constexpr handler_allocator(const handler_allocator<U> &) noexcept {} // NOLINT: rebinding

  /// `n` objects of T from the current heap, aligned for T. Throws
  /// std::bad_array_new_length when n * sizeof(T) overflows, std::bad_alloc when the
  /// heap has no memory.
  [[nodiscard]] T *allocate(std::size_t n) {
    constexpr std::size_t object_size = sizeof(std::conditional_t<std::is_void_v<T>, char, T>);
    if (n > std::numeric_limits<std::size_t>::max() / object_size)
      throw std::bad_array_new_length();
    // acquire(size) aligns to the largest power of two <= min(size, 16), which is at
    // least alignof(T) whenever alignof(T) <= 16: the plain fast path suffices.
    void *p = alignment() <= 16 ? ramalloc::acquire(n * object_size)
                                : ramalloc::acquire(n * object_size, alignment());
    if (p == nullptr)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }

  /// Frees a block from any thread. O(1).
  void deallocate(T *p, std::size_t) noexcept { ramalloc::discard(p); }

  template <typename U>
  friend constexpr bool operator==(const handler_allocator &,
                                   const handler_allocator<U> &) noexcept {
    return true;
  }

private:
  static constexpr std::size_t alignment() noexcept {
    if constexpr (std::is_void_v<T>)
      return 1;
    else
      return alignof(T);
  }
};

} // namespace ramalloc::io
