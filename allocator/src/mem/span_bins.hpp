// Free spans of a heap, binned by length (two-level segregated fit).
//
// Lengths 1..16 slices have a bin each; longer spans share four bins per power of two.
// A bitmap of non-empty bins turns "smallest bin that surely fits" into one count of
// trailing zeros, so finding, splitting and coalescing spans are all O(1).
#pragma once

#include <bit>
#include <cstdint>

#include "ds/list.hpp"
#include "mem/page.hpp"

namespace ramalloc::detail {

inline constexpr unsigned span_bin_count = 64;

/// Bin of a free span of `n` slices (n >= 1): every span in bin b is at least as long as
/// the shortest length mapping to b.
constexpr unsigned span_bin_floor(std::uint32_t n) {
  if (n <= 16)
    return n - 1;
  const unsigned b = static_cast<unsigned>(std::bit_width(n)) - 1; // >= 4
  return 16 + (b - 4) * 4 + ((n >> (b - 2)) & 3);
}

/// Smallest bin whose every span has at least `n` slices.
constexpr unsigned span_bin_ceil(std::uint32_t n) {
  const unsigned f = span_bin_floor(n);
  if (n <= 16)
    return f;
  const unsigned b = static_cast<unsigned>(std::bit_width(n)) - 1;
  const std::uint32_t low = (4 + ((n >> (b - 2)) & 3)) << (b - 2);
  return low == n ? f : f + 1;
}

static_assert(span_bin_floor(16384) < span_bin_count);
static_assert(span_bin_ceil(17) == span_bin_floor(20) && span_bin_ceil(20) == span_bin_floor(20));

class span_bins {
public:
  using list = intrusive_list<page, &page::links>;

  void insert(page *span) noexcept {
    const unsigned b = span_bin_floor(span->slices.load(std::memory_order_relaxed));
    bins_[b].push_front(span);
    mask_ |= std::uint64_t{1} << b;
  }
  void remove(page *span) noexcept {
    const unsigned b = span_bin_floor(span->slices.load(std::memory_order_relaxed));
    bins_[b].remove(span);
    if (bins_[b].empty())
      mask_ &= ~(std::uint64_t{1} << b);
  }
  /// A span of at least `n` slices, removed from its bin, or nullptr.
  page *take(std::uint32_t n) noexcept {
    const unsigned b = span_bin_ceil(n);
    if (b >= span_bin_count)
      return nullptr;
    const std::uint64_t m = mask_ >> b;
    if (m == 0)
      return nullptr;
    page *span = bins_[b + std::countr_zero(m)].front();
    remove(span);
    return span;
  }
  bool empty() const noexcept { return mask_ == 0; }

private:
  list bins_[span_bin_count];
  std::uint64_t mask_ = 0;
};

} // namespace ramalloc::detail
