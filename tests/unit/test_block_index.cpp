// The offset-to-block arithmetic every free, query and report relies on (mem/page.hpp):
// for every size class and every byte offset of its page, block_index gives
// offset / block_size, and its start test accepts exactly the block starts. A wrong answer would accept an interior pointer as a
// block (and corrupt the free list) or reject a real block's free. Exhaustive: ~15 million
// offsets, checked with plain integer division.
#include "mem/page.hpp"
#include "mem/size_class.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

namespace {

using namespace ramalloc::detail;

TEST(BlockIndex, EveryOffsetOfEveryClassPageMapsToItsBlockExactly) {
  for (unsigned cls = 0; cls < class_count; ++cls) {
    const auto bs = static_cast<std::uint32_t>(class_block_size(cls));
    const std::size_t span = std::size_t{class_page_slices(cls)} * slice_size;
    page pg;
    pg.div_magic.store(division_magic(bs), std::memory_order_relaxed);
    std::size_t wrong = 0, first_wrong = SIZE_MAX;
    for (std::size_t off = 0; off < span; ++off) {
      const page::position at = pg.locate(static_cast<std::uint32_t>(off));
      const bool fast_start = pg.starts_block(static_cast<std::uint32_t>(off)); // free's test
      if (at.index != off / bs || at.start != (off % bs == 0) || fast_start != at.start) {
        ++wrong;
        first_wrong = std::min(first_wrong, off);
      }
    }
    EXPECT_EQ(wrong, 0u) << "block size " << bs << ", first wrong offset " << first_wrong;
  }
}

// A stale or wild pointer can give an offset far past its span (the span's head slice
// was read before the span changed): the start test must still be exact there, for every
// 32-bit offset (the identity holds for all of them; sampled, with multiples of each
// size on both sides of 2^31 and at the top).
TEST(BlockIndex, TheStartTestIsExactForOffsetsFarPastTheSpan) {
  for (unsigned cls = 0; cls < class_count; ++cls) {
    const auto bs = static_cast<std::uint32_t>(class_block_size(cls));
    page pg;
    pg.div_magic.store(division_magic(bs), std::memory_order_relaxed);
    const auto check = [&](std::uint64_t off) {
      const auto o = static_cast<std::uint32_t>(off);
      ASSERT_EQ(pg.starts_block(o), o % bs == 0) << "block size " << bs << ", offset " << o;
      ASSERT_EQ(pg.locate(o).index, o / bs) << "block size " << bs << ", offset " << o;
    };
    for (std::uint64_t off = 0; off <= UINT32_MAX; off += 1000003)
      check(off);
    for (std::uint64_t k : {std::uint64_t{1} << 31, std::uint64_t{UINT32_MAX}}) {
      const std::uint64_t m = k / bs * bs;
      for (std::uint64_t off = m - 2 * bs; off <= std::min<std::uint64_t>(m + 2 * bs, UINT32_MAX); ++off)
        check(off);
    }
  }
}

TEST(BlockIndex, LargeSpanIsOneBlockThatStartsAtOffsetZeroOnly) {
  page pg; // heap.cpp formats a large span with large_span_magic
  pg.div_magic.store(large_span_magic, std::memory_order_relaxed);
  for (std::size_t off = 0; off < large_max; off += off < slice_size ? 1 : 4093) {
    const page::position at = pg.locate(static_cast<std::uint32_t>(off));
    ASSERT_EQ(at.index, 0u) << "offset " << off;
    ASSERT_EQ(at.start, off == 0) << "offset " << off;
    ASSERT_EQ(pg.starts_block(static_cast<std::uint32_t>(off)), off == 0) << "offset " << off;
  }
}

TEST(BlockIndex, AnUnformattedDescriptorHasNoBlockStart) {
  const page pg; // div_magic 0: a descriptor that was never formatted
  for (std::uint32_t off = 0; off < slice_size; off += 4) {
    ASSERT_FALSE(pg.locate(off).start) << "offset " << off;
    ASSERT_FALSE(pg.starts_block(off)) << "offset " << off;
  }
}

} // namespace
