// Every size class, through every allocation entry point: the block is aligned as
// promised, its usable size covers the request, and filling it up to its usable size
// never touches another block (each block carries a pattern derived from its index and
// every pattern is verified after all blocks are filled).
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <functional>

using namespace ramalloc_test;

namespace {

struct block {
  void *p;
  std::size_t usable;
};

using allocate_fn = std::function<void *(std::size_t size)>;

/// How many blocks of `size` to allocate so that small classes span several pages
/// (crossing page boundaries) while the largest sizes stay cheap.
std::size_t block_count_for(std::size_t size) {
  return std::clamp<std::size_t>(3 * slice_size / size + 1, 6, 50000);
}

/// Allocates many blocks of `size` with `allocate`, checks alignment and usable size,
/// fills each to its usable size with its own pattern, then verifies every pattern and
/// that no two blocks overlap. Frees everything with `release`.
void fill_and_verify_neighbours(std::size_t size, std::size_t align, const allocate_fn &allocate,
                                void (*release)(void *)) {
  SCOPED_TRACE(testing::Message() << "size " << size << ", alignment " << align);
  const std::size_t n = block_count_for(std::max(size, align));
  std::vector<block> blocks;
  blocks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    void *p = allocate(size);
    ASSERT_NE(p, nullptr) << "allocation " << i;
    ASSERT_EQ(addr(p) % align, 0u) << "block " << p << " is not " << align << "-aligned";
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    ASSERT_TRUE(info->is_start);
    ASSERT_GE(info->usable_size, size);
    // usable_size: the program may use every usable byte now (tools are told so)
    ASSERT_EQ(ram_usable_size(p), info->usable_size);
    fill_pattern(p, info->usable_size, i);
    blocks.push_back({p, info->usable_size});
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t bad = first_pattern_mismatch(blocks[i].p, blocks[i].usable, i);
    ASSERT_EQ(bad, blocks[i].usable)
        << "block " << i << " at " << blocks[i].p << " was overwritten at offset " << bad;
  }
  std::vector<block> sorted = blocks;
  std::sort(sorted.begin(), sorted.end(),
            [](const block &a, const block &b) { return addr(a.p) < addr(b.p); });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    ASSERT_LE(addr(sorted[i - 1].p) + sorted[i - 1].usable, addr(sorted[i].p))
        << "blocks " << sorted[i - 1].p << " and " << sorted[i].p << " overlap";
  for (const block &b : blocks)
    release(b.p);
}

void discard_block(void *p) {
  ramalloc::discard(p);
}
void free_block(void *p) {
  ram_free(p);
}

} // namespace

TEST(SizeClasses, AcquireGivesNaturalAlignmentAndNeighboursStayIntact) {
  for (std::size_t size : boundary_sizes()) {
    fill_and_verify_neighbours(
        size, natural_alignment(size), [](std::size_t s) { return ramalloc::acquire(s); },
        discard_block);
    if (HasFatalFailure())
      return;
  }
}

TEST(SizeClasses, CAcquireGivesNaturalAlignmentAndNeighboursStayIntact) {
  for (std::size_t size : boundary_sizes(true, false)) {
    fill_and_verify_neighbours(
        size, natural_alignment(size), [](std::size_t s) { return ram_acquire(s); },
        [](void *p) { ram_discard(p); });
    if (HasFatalFailure())
      return;
  }
}

TEST(SizeClasses, MallocAlignsForAnyObjectOfTheSizeAndNeighboursStayIntact) {
  for (std::size_t size : boundary_sizes()) {
    fill_and_verify_neighbours(
        size, malloc_alignment(size), [](std::size_t s) { return ram_malloc(s); }, free_block);
    if (HasFatalFailure())
      return;
  }
}

TEST(SizeClasses, CallocAlignsLikeMallocAndZeroesTheBlocks) {
  for (std::size_t size : boundary_sizes()) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    // Dirty a block of the same class first so calloc has to clear reused memory.
    void *dirty = ram_malloc(size);
    ASSERT_NE(dirty, nullptr);
    std::memset(dirty, 0xA5, ram_usable_size(dirty));
    ram_free(dirty);
    auto *p = static_cast<unsigned char *>(ram_calloc(1, size));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(addr(p) % malloc_alignment(size), 0u);
    std::size_t nonzero = 0;
    for (std::size_t j = 0; j < size; ++j)
      nonzero += p[j] != 0;
    EXPECT_EQ(nonzero, 0u) << "calloc(1, " << size << ") returned non-zero bytes";
    ram_free(p);
  }
}

TEST(SizeClasses, AlignedAcquireHonoursEveryPowerOfTwoUpToOneMiB) {
  std::vector<std::size_t> sizes = boundary_sizes(false, false);
  sizes.push_back(300 * KiB);
  sizes.push_back(2 * MiB + 1);
  for (std::size_t align = 1; align <= 1 * MiB; align *= 2) {
    for (std::size_t size : sizes) {
      SCOPED_TRACE(testing::Message() << "size " << size << ", alignment " << align);
      void *p = ramalloc::acquire(size, align);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(addr(p) % align, 0u) << p;
      const auto info = ramalloc::query(p);
      ASSERT_TRUE(info.has_value());
      EXPECT_TRUE(info->is_start) << "an aligned block must start where it is returned";
      EXPECT_GE(info->usable_size, size);
      // usable_size: the program may use every usable byte now (tools are told so)
      ASSERT_EQ(ram_usable_size(p), info->usable_size);
      fill_pattern(p, info->usable_size, size ^ align);
      EXPECT_EQ(first_pattern_mismatch(p, info->usable_size, size ^ align), info->usable_size);
      ramalloc::discard(p);
    }
  }
}

TEST(SizeClasses, AlignedAcquireNeighboursStayIntact) {
  for (std::size_t align : {std::size_t{32}, std::size_t{64}, 4 * KiB, 64 * KiB}) {
    for (std::size_t size : boundary_sizes(true, false)) {
      if (size > 4 * MiB)
        continue; // spans beyond this add nothing but time
      fill_and_verify_neighbours(
          size, align, [align](std::size_t s) { return ramalloc::acquire(s, align); },
          discard_block);
      if (HasFatalFailure())
        return;
    }
  }
}

TEST(SizeClasses, MallocOfAtMostEightBytesTakesTheEightByteClass) {
  // What C requires of malloc(n) for n <= 8 is alignment for an object of n bytes: 8
  // at most. So those requests share the 8-byte class (8 bytes per object, as in
  // mimalloc, jemalloc and tcmalloc), and the next size, 9, is the 16-byte class.
  ramalloc::heap fresh;
  ramalloc::heap_scope scope(fresh);
  for (std::size_t size = 0; size <= 8; ++size) {
    SCOPED_TRACE(testing::Message() << "malloc(" << size << ")");
    void *a = ram_malloc(size);
    void *b = ram_malloc(size);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(ram_usable_size(a), 8u);
    EXPECT_EQ(addr(a) % 8, 0u);
    EXPECT_EQ(addr(b) > addr(a) ? addr(b) - addr(a) : addr(a) - addr(b), 8u)
        << "consecutive blocks of a fresh page are 8 bytes apart";
    ram_free(a);
    ram_free(b);
  }
  void *nine = ram_malloc(9);
  EXPECT_EQ(ram_usable_size(nine), 16u);
  EXPECT_EQ(addr(nine) % 16, 0u);
  ram_free(nine);
}

TEST(SizeClasses, AlignedAllocHonoursEveryPowerOfTwoUpToOneMiB) {
  for (std::size_t align = 1; align <= 1 * MiB; align *= 2) {
    for (std::size_t size : {std::size_t{1}, std::size_t{3}, std::size_t{24}, align, align + 1,
                             3 * align, std::size_t{5000}}) {
      SCOPED_TRACE(testing::Message() << "size " << size << ", alignment " << align);
      void *p = ram_aligned_alloc(align, size);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(addr(p) % std::max<std::size_t>(align, 16), 0u)
          << p << ": the malloc family never returns less than 16-byte alignment";
      EXPECT_GE(ram_usable_size(p), size);
      std::memset(p, 0x5A, ram_usable_size(p));
      ram_free(p);
    }
  }
}

TEST(SizeClasses, FourByteObjectsPackFourBytesApart) {
  ramalloc::heap fresh;
  ramalloc::heap_scope scope(fresh);
  constexpr std::size_t n = 4096; // one 64 KiB page holds 16384 of them
  std::vector<std::uintptr_t> addrs;
  addrs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    void *p = ramalloc::acquire(4);
    ASSERT_NE(p, nullptr);
    addrs.push_back(addr(p));
  }
  std::sort(addrs.begin(), addrs.end());
  std::size_t adjacent = 0;
  for (std::size_t i = 1; i < n; ++i)
    adjacent += addrs[i] - addrs[i - 1] == 4;
  EXPECT_EQ(adjacent, n - 1) << "4-byte blocks from a fresh heap should be packed densely";
  for (std::uintptr_t a : addrs)
    ramalloc::discard(reinterpret_cast<void *>(a));
}
