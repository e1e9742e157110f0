// calloc returns zeroed memory and writes only what may hold old data: a large block
// carved from memory that was never touched or was purged (the kernel hands it back as
// zero pages) is not memset, so calloc of a big buffer costs no page faults and no RSS
// until it is used (issue 8 item 5). Blocks that may hold old data are zeroed.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <stdexcept>

using namespace ramalloc_test;

namespace {

constexpr std::size_t big = 16 * MiB; // a large span (above 256 KiB, up to 32 MiB)

bool all_zero(const void *p, std::size_t n) {
  const auto *b = static_cast<const unsigned char *>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != 0)
      return false;
  return true;
}

/// Resident growth (bytes) while `f` runs.
template <typename F>
std::size_t resident_growth(F &&f) {
  const std::size_t before = resident_bytes();
  f();
  const std::size_t after = resident_bytes();
  return after > before ? after - before : 0;
}

} // namespace

TEST(Calloc, LargeBlockFromNeverTouchedMemoryIsNotWrittenByCalloc) {
  if (under_sanitizer())
    GTEST_SKIP() << "resident memory under a sanitizer measures its shadow memory";
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  void *p = nullptr;
  const std::size_t grown = resident_growth([&] { p = ram_calloc(1, big); });
  ASSERT_NE(p, nullptr);
  EXPECT_LT(grown, 2 * MiB) << "calloc made " << grown << " bytes resident for a " << big
                            << "-byte block of fresh memory";
  EXPECT_TRUE(all_zero(p, big));
  ram_free(p);
}

TEST(Calloc, LargeBlockFromPurgedMemoryIsNotWrittenByCalloc) {
  if (under_sanitizer())
    GTEST_SKIP() << "resident memory under a sanitizer measures its shadow memory";
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  void *first = ram_malloc(big);
  ASSERT_NE(first, nullptr);
  std::memset(first, 0xAB, big);
  ram_free(first);
  ramalloc::flush(); // purges the free span: its pages read back as zero
  void *p = nullptr;
  const std::size_t grown = resident_growth([&] { p = ram_calloc(big / 1024, 1024); });
  ASSERT_NE(p, nullptr);
  EXPECT_LT(grown, 2 * MiB) << "calloc made " << grown << " bytes resident for a " << big
                            << "-byte block of purged memory";
  EXPECT_TRUE(all_zero(p, big));
  ram_free(p);
}

TEST(Calloc, LargeBlockReusingResidentMemoryIsZeroed) {
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  void *first = ram_malloc(big);
  ASSERT_NE(first, nullptr);
  std::memset(first, 0xAB, big);
  ram_free(first); // a dirty span: resident, holding 0xAB
  void *p = ram_calloc(1, big);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p, first) << "the dirty span is preferred, so this reuses the old block";
  EXPECT_TRUE(all_zero(p, big));
  ram_free(p);
}

TEST(Calloc, EveryKindOfBlockIsZeroedAfterItsMemoryHeldData) {
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  for (std::size_t size : {std::size_t{1}, std::size_t{100}, 4 * KiB, 100 * KiB, 256 * KiB,
                           256 * KiB + 1, 3 * MiB, 32 * MiB, 32 * MiB + 1, 40 * MiB}) {
    SCOPED_TRACE(size);
    void *dirty = ram_malloc(size);
    ASSERT_NE(dirty, nullptr);
    std::memset(dirty, 0x5A, size);
    ram_free(dirty);
    void *p = ram_calloc(size, 1);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, size));
    std::memset(p, 0x5A, size);
    ram_free(p);
  }
}

TEST(Calloc, LargeBlockOfAStaticHeapIsZeroedEvenThoughItsSpanWasNeverUsed) {
  // A static heap's free spans are never purged and the caller's buffer may hold anything.
  const std::size_t size = 8 * MiB;
  void *raw = ::mmap(nullptr, size + slice_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  std::memset(raw, 0xCD, size + slice_size);
  {
    ramalloc::heap h(raw, size + slice_size);
    ramalloc::heap_scope scope(h);
    void *p = ram_calloc(1, 2 * MiB);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(all_zero(p, 2 * MiB));
    ram_free(p);
  }
  ::munmap(raw, size + slice_size);
}
