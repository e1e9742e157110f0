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

/// The class of a request of `size` bytes (1 <= size <= medium_max), by arithmetic.
constexpr unsigned class_of_computed(std::size_t size) noexcept {
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

/// Requests up to this size find their class in a table indexed by the size itself: one
/// load instead of the arithmetic on the allocation fast path, and no scaling of the index
/// (a (size + 3) / 4 index was two instructions more a call, for a quarter of the bytes).
inline constexpr std::size_t class_table_max = 1024;

/// Class by size for sizes 0..class_table_max, smallest class `MinClass`.
template <unsigned MinClass>
consteval std::array<std::uint8_t, class_table_max + 1> make_class_table() {
  std::array<std::uint8_t, class_table_max + 1> t{};
  for (std::size_t i = 0; i < t.size(); ++i) {
    const unsigned c = class_of_computed(i == 0 ? 1 : i);
    t[i] = static_cast<std::uint8_t>(c < MinClass ? MinClass : c);
  }
  return t;
}
inline constexpr auto class_table = make_class_table<0>();
inline constexpr auto class_table_from_8 = make_class_table<1>(); // malloc: never 4 bytes
/// The class of `size` <= class_table_max bytes (0 takes the smallest class): the tables'
/// one reader, for class_of and the allocation entry points that test the size first.
constexpr unsigned class_of_tabled(std::size_t size) noexcept { return class_table[size]; }
/// The same, at least the 8-byte class (malloc).
constexpr unsigned class_of_tabled_from_8(std::size_t size) noexcept {
  return class_table_from_8[size];
}

/// Class index of a request of `size` bytes (0 <= size <= medium_max; 0 takes the
/// smallest class). O(1).
constexpr unsigned class_of(std::size_t size) noexcept {
  if (RAMALLOC_LIKELY(size <= class_table_max))
    return class_of_tabled(size);
  return class_of_computed(size);
}

/// The class of `size` bytes, at least the 8-byte one (malloc never uses the 4-byte class).
constexpr unsigned class_of_from_8(std::size_t size) noexcept {
  if (RAMALLOC_LIKELY(size <= class_table_max)) // the common case falls through
    return class_of_tabled_from_8(size);
  return class_of_computed(size);
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

consteval bool tables_match_the_arithmetic() {
  for (std::size_t size = 1; size <= class_table_max; ++size) {
    if (class_of(size) != class_of_computed(size))
      return false;
    if (class_of_from_8(size) != (size <= 8 ? 1u : class_of_computed(size)))
      return false;
  }
  return class_of(0) == 0 && class_of_from_8(0) == 1;
}
static_assert(tables_match_the_arithmetic());

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
