// STL allocator adapter: std::vector<T, ramalloc::allocator<T>> and friends.
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <type_traits>

#include "ramalloc/ramalloc.hpp"

namespace ramalloc {

/// A stateless standard allocator over the calling thread's *current* heap (inside a
/// heap_scope, that heap). Memory it returns may be freed by any thread and through any
/// instance (`is_always_equal`): deallocate is ramalloc::discard, a remote free when the
/// calling thread does not own the block. `allocator<void>` is valid too (Asio and other
/// libraries rebind it). Allocation throws std::bad_alloc on failure
/// (std::bad_array_new_length when n * sizeof(T) overflows). O(1); thread-safe.
template <typename T>
class allocator {
public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using is_always_equal = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;

  template <typename U>
  struct rebind {
    using other = allocator<U>;
  };

  constexpr allocator() noexcept = default;
  template <typename U>
  constexpr allocator(const allocator<U> &) noexcept {} // NOLINT: rebinding converts

  /// `n` objects of T, aligned for T.
  [[nodiscard]] T *allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / object_size)
      throw std::bad_array_new_length();
    // acquire(size) aligns to the largest power of two <= min(size, 16), which is at
    // least alignof(T) whenever alignof(T) <= 16: the plain fast path suffices.
    void *p = alignment > 16 ? ramalloc::acquire(n * object_size, alignment)
                             : ramalloc::acquire(n * object_size);
    if (p == nullptr)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  /// Frees a block from any thread. O(1).
  void deallocate(T *p, std::size_t) noexcept { ramalloc::discard(p); }

  template <typename U>
  friend constexpr bool operator==(const allocator &, const allocator<U> &) noexcept {
    return true;
  }

private:
  using object = std::conditional_t<std::is_void_v<T>, char, T>;
  static constexpr std::size_t object_size = sizeof(object);
  static constexpr std::size_t alignment = alignof(object);
};

} // namespace ramalloc
