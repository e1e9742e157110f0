// A field that one thread writes and others may read at any time without ordering (a
// descriptor recycled while a racing query still looks at it): every access is a relaxed
// atomic, so the race is defined behaviour, and it reads like the plain field it
// replaces. Relaxed loads and stores compile to plain moves.
#pragma once

#include <atomic>

namespace ramalloc::detail {

template <typename T>
class relaxed {
public:
  constexpr relaxed() noexcept = default;
  constexpr relaxed(T v) noexcept : v_(v) {}
  relaxed(const relaxed &) = delete;
  relaxed &operator=(const relaxed &) = delete;

  operator T() const noexcept { return v_.load(std::memory_order_relaxed); }
  relaxed &operator=(T v) noexcept {
    v_.store(v, std::memory_order_relaxed);
    return *this;
  }

private:
  std::atomic<T> v_{};
};

} // namespace ramalloc::detail
