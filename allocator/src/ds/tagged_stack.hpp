// Lock-free stack of nodes that are never unmapped (heap descriptors). A 16-bit tag in
// the pointer's unused top bits defeats ABA; pointers are user-space (< 2^47).
#pragma once

#include <atomic>
#include <cstdint>

namespace ramalloc::detail {

template <typename T, std::atomic<T *> T::*Next>
class tagged_stack {
public:
  void push(T *n) noexcept {
    std::uint64_t top = top_.load(std::memory_order_relaxed);
    do {
      (n->*Next).store(pointer(top), std::memory_order_relaxed);
    } while (!top_.compare_exchange_weak(top, pack(n, tag(top) + 1), std::memory_order_release,
                                         std::memory_order_relaxed));
  }
  T *pop() noexcept {
    std::uint64_t top = top_.load(std::memory_order_acquire);
    while (T *n = pointer(top)) {
      T *next = (n->*Next).load(std::memory_order_relaxed);
      if (top_.compare_exchange_weak(top, pack(next, tag(top) + 1), std::memory_order_acquire,
                                     std::memory_order_acquire))
        return n;
    }
    return nullptr;
  }
  bool empty() const noexcept { return pointer(top_.load(std::memory_order_relaxed)) == nullptr; }

private:
  static constexpr std::uint64_t ptr_mask = (std::uint64_t{1} << 48) - 1;
  static T *pointer(std::uint64_t w) noexcept { return reinterpret_cast<T *>(w & ptr_mask); }
  static std::uint64_t tag(std::uint64_t w) noexcept { return w >> 48; }
  static std::uint64_t pack(T *p, std::uint64_t t) noexcept {
    return (reinterpret_cast<std::uint64_t>(p) & ptr_mask) | ((t & 0xFFFF) << 48);
  }
  std::atomic<std::uint64_t> top_{0};
};

} // namespace ramalloc::detail
