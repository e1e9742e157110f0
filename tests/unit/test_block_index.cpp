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
      if (at.index != off / bs || at.start != (off % bs == 0)) {
        ++wrong;
        first_wrong = std::min(first_wrong, off);
      }
    }
    EXPECT_EQ(wrong, 0u) << "block size " << bs << ", first wrong offset " << first_wrong;
  }
}

TEST(BlockIndex, LargeSpanIsOneBlockThatStartsAtOffsetZeroOnly) {
  page pg; // heap.cpp formats a large span with large_span_magic
  pg.div_magic.store(large_span_magic, std::memory_order_relaxed);
  for (std::size_t off = 0; off < large_max; off += off < slice_size ? 1 : 4093) {
    const page::position at = pg.locate(static_cast<std::uint32_t>(off));
    ASSERT_EQ(at.index, 0u) << "offset " << off;
    ASSERT_EQ(at.start, off == 0) << "offset " << off;
  }
}

TEST(BlockIndex, AnUnformattedDescriptorHasNoBlockStart) {
  const page pg; // div_magic 0: a wild pointer into a span being formatted is rejected
  for (std::uint32_t off = 0; off < slice_size; off += 4)
    ASSERT_FALSE(pg.locate(off).start) << "offset " << off;
}

} // namespace
