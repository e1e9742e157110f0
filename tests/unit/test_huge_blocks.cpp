// Huge blocks (above 32 MiB) get their own mapping of whole 1 GiB granules, each granule
// registered in the page map: a pointer anywhere in the block is found in O(1), and the
// registration of every granule goes away with the block. Registering and unregistering
// cost one page-map store per GiB of the block (issue 8 item 7: the documented bound is
// O(size / 1 GiB) plus the kernel's mmap/munmap).
#include "test_support.hpp"

#include <gtest/gtest.h>

using namespace ramalloc_test;

TEST(HugeBlocks, BlockSpanningSeveralGranulesIsFoundFromEachAndForgottenAfterFree) {
  const std::size_t size = 3 * GiB + 12345; // four granules; address space only
  auto *p = static_cast<unsigned char *>(ramalloc::acquire(size));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(addr(p) % GiB, 0u) << "huge blocks are 1 GiB-aligned";
  p[0] = 1;
  p[size - 1] = 2;
  const std::size_t probes[] = {0, 1, GiB - 1, GiB, 2 * GiB + 77, 3 * GiB, size - 1};
  for (std::size_t off : probes) {
    SCOPED_TRACE(off);
    const auto q = ramalloc::query(p + off);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->start, p);
    EXPECT_GE(q->usable_size, size);
    EXPECT_EQ(q->kind, ramalloc::block_info::block_kind::huge);
  }
  ramalloc::discard(p);
  for (std::size_t off : probes)
    EXPECT_FALSE(ramalloc::query(p + off).has_value()) << "offset " << off << " still mapped";
}
