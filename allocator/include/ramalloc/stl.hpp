// STL allocator adapter: std::vector<T, ramalloc::allocator<T>> and friends.
#pragma once

#include <cstddef>
#include <limits>
#include <new>

#include "ramalloc/ramalloc.hpp"

namespace ramalloc {

/// A stateless standard allocator over the calling thread's current heap. Memory it
/// returns may be freed by any thread (and by any ramalloc::allocator). Allocation throws
/// std::bad_alloc on failure (std::bad_array_new_length when n * sizeof(T) overflows).
template <typename T>
class allocator {
public:
  using value_type = T;
  using is_always_equal = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;

  allocator() noexcept = default;
  template <typename U>
  allocator(const allocator<U> &) noexcept {}

  [[nodiscard]] T *allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
      throw std::bad_array_new_length();
    void *p = alignof(T) > 16 ? ramalloc::acquire(n * sizeof(T), alignof(T))
                              : ramalloc::acquire(n * sizeof(T));
    if (p == nullptr)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t) noexcept { ramalloc::discard(p); }

  template <typename U>
  bool operator==(const allocator<U> &) const noexcept {
    return true;
  }
};

} // namespace ramalloc
