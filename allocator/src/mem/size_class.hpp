// Size classes: 4 and 8 bytes (native API), 16-byte steps to 128, then four classes per
// doubling (at most 25% internal waste) up to 256 KiB. Small classes (<= 8 KiB) live in
// one-slice pages; medium classes in pages of several slices sized to hold >= 8 blocks.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

#include "common/defs.hpp"

namespace ramalloc::detail {

inline constexpr unsigned class_count = 2 + 8 + 11 * 4; // 54

/// Class index of a request of `size` bytes (1 <= size <= medium_max). O(1).
constexpr unsigned class_of(std::size_t size) noexcept {
  if (size <= 4)
    return 0;
  if (size <= 8)
    return 1;
  if (size <= 128)
    return static_cast<unsigned>(1 + (size + 15) / 16);
  const unsigned b = static_cast<unsigned>(std::bit_width(size - 1)) - 1; // floor(log2(size-1))
  const unsigned step = static_cast<unsigned>(((size - 1) >> (b - 2)) & 3);
  return 10 + (b - 7) * 4 + step;
}

constexpr std::size_t class_block_size(unsigned cls) noexcept {
  if (cls == 0)
    return 4;
  if (cls == 1)
    return 8;
  if (cls < 10)
    return std::size_t{16} * (cls - 1);
  const unsigned b = 7 + (cls - 10) / 4;
  const unsigned step = (cls - 10) % 4;
  return std::size_t{5 + step} << (b - 2);
}

/// Slices per page for a class: one for small classes, enough for eight blocks otherwise.
constexpr std::uint32_t class_page_slices(unsigned cls) noexcept {
  const std::size_t bs = class_block_size(cls);
  if (bs <= small_max)
    return 1;
  return static_cast<std::uint32_t>((8 * bs + slice_size - 1) / slice_size);
}

static_assert(class_of(4) == 0 && class_of(8) == 1 && class_of(16) == 2 && class_of(128) == 9);
static_assert(class_block_size(class_of(129)) == 160 && class_block_size(class_of(256)) == 256);
static_assert(class_block_size(class_count - 1) == medium_max);
static_assert(class_of(medium_max) == class_count - 1);

consteval bool classes_round_trip() {
  for (unsigned c = 0; c < class_count; ++c) {
    if (class_of(class_block_size(c)) != c)
      return false;
    if (c > 0 && class_of(class_block_size(c - 1) + 1) != c)
      return false;
  }
  return true;
}
static_assert(classes_round_trip());

} // namespace ramalloc::detail
