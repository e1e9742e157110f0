// The C and POSIX edge cases of the malloc family, one test each, as a program linked
// with the static override sees them: the expected result and the errno the standards
// (C17, POSIX.1-2017) and glibc's documentation give, or docs/api.md where they leave a
// choice to the implementation.
#include "posix_support.hpp"

#include <gtest/gtest.h>

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <utility>
#include <vector>

using namespace ramalloc_posix_test;

namespace {

TEST(CEdgeCases, MallocOfZeroReturnsDistinctNonNullPointers) {
  constexpr int n = 1000;
  std::set<void *> seen;
  void *blocks[n];
  for (void *&p : blocks) {
    p = keep(std::malloc(opaque(0)));
    ASSERT_NE(p, nullptr) << "malloc(0) must return a unique pointer, not NULL";
    EXPECT_TRUE(seen.insert(p).second) << "malloc(0) returned " << p << " twice";
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % malloc_alignment(0), 0u);
  }
  for (void *p : blocks)
    std::free(p);
}

TEST(CEdgeCases, CallocWhoseProductOverflowsReturnsNullWithEnomem) {
  const std::size_t cases[][2] = {{SIZE_MAX / 2 + 1, 2},
                                  {2, SIZE_MAX / 2 + 1},
                                  {SIZE_MAX, SIZE_MAX},
                                  {std::size_t{1} << 32, std::size_t{1} << 32}};
  for (const auto &c : cases) {
    errno = 0;
    void *p = keep(std::calloc(opaque(c[0]), opaque(c[1])));
    const int err = errno;
    EXPECT_EQ(p, nullptr) << "calloc(" << c[0] << ", " << c[1] << ")";
    EXPECT_EQ(err, ENOMEM) << "calloc(" << c[0] << ", " << c[1] << ")";
  }
}

TEST(CEdgeCases, CallocReturnsZeroedMemoryEvenWhenItReusesAFreedBlock) {
  // Small, medium, large (span) and huge sizes; each block is dirtied and freed first, so
  // calloc is likely to get the same memory back.
  for (const std::size_t size : {std::size_t{48}, 20 * KiB, 3 * MiB, 40 * MiB}) {
    for (int round = 0; round < 3; ++round) {
      auto *dirty = static_cast<unsigned char *>(keep(std::malloc(size)));
      ASSERT_NE(dirty, nullptr);
      std::memset(dirty, 0xa5, malloc_usable_size(dirty));
      std::free(dirty);
      auto *p = static_cast<unsigned char *>(keep(std::calloc(1, opaque(size))));
      ASSERT_NE(p, nullptr);
      std::size_t nonzero = 0;
      for (std::size_t i = 0; i < size; ++i)
        nonzero += p[i] != 0;
      EXPECT_EQ(nonzero, 0u) << "calloc(1, " << size << ") returned " << nonzero
                             << " non-zero bytes (round " << round << ")";
      std::free(p);
    }
  }
}

TEST(CEdgeCases, MallocReturnsBlocksAlignedForAnyObjectOfTheRequestedSize) {
  // C: malloc's result is suitably aligned for any object type that fits in the size
  // asked for. docs/api.md: alignof(max_align_t) = 16 above 8 bytes, 8 for 0..8 bytes
  // (no object of at most 8 bytes needs more); the plain operator new the same.
  std::vector<std::pair<void *, std::size_t>> blocks, objects;
  for (std::size_t size = 0; size <= 1024; ++size)
    blocks.emplace_back(keep(std::malloc(size)), size);
  for (std::size_t size = 1025; size < 4 * MiB; size = size * 5 / 4)
    blocks.emplace_back(keep(std::malloc(size)), size);
  for (std::size_t size = 1; size <= 64; ++size)
    objects.emplace_back(keep(::operator new(size)), size);
  for (const auto &list : {blocks, objects})
    for (auto [p, size] : list) {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % malloc_alignment(size), 0u)
          << p << " for " << size << " bytes";
    }
  for (auto [p, size] : blocks)
    std::free(p);
  for (auto [p, size] : objects)
    ::operator delete(p, size);
}

TEST(CEdgeCases, AlignedRequestsOfAtMostEightBytesKeepTheirAlignment) {
  // The 8-byte class serves only malloc's rule: aligned_alloc, posix_memalign and the
  // aligned operator new (nothrow too) of a tiny size still get what they asked for,
  // and never less than 16.
  for (std::size_t size = 1; size <= 8; ++size) {
    SCOPED_TRACE(testing::Message() << size << " bytes");
    void *a = keep(aligned_alloc(16, opaque(size)));
    void *b = nullptr;
    ASSERT_EQ(posix_memalign(&b, 8, opaque(size)), 0);
    void *c = keep(::operator new (size, std::align_val_t{16}, std::nothrow));
    void *d = keep(::operator new (size, std::align_val_t{16}));
    for (void *p : {a, b, c, d}) {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u) << p;
    }
    std::free(a);
    std::free(b);
    ::operator delete (c, std::align_val_t{16});
    ::operator delete (d, size, std::align_val_t{16});
  }
}

TEST(CEdgeCases, ReallocOfNullActsAsMalloc) {
  const std::uint64_t before = live_blocks();
  errno = 0;
  auto *p = static_cast<unsigned char *>(keep(std::realloc(nullptr, opaque(100))));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(errno, 0) << "a successful call leaves errno untouched";
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
  EXPECT_GE(malloc_usable_size(p), 100u);
  EXPECT_TRUE(is_ramalloc_block(p));
  EXPECT_EQ(live_blocks(), before + 1);
  fill(p, 100, 1);
  std::free(p);
  EXPECT_EQ(live_blocks(), before);
}

TEST(CEdgeCases, FailingReallocLeavesTheOldBlockIntactWithEnomem) {
  for (const std::size_t old_size : {std::size_t{24}, 1000 * std::size_t{1}, 100 * KiB, 3 * MiB}) {
    auto *p = keep(std::malloc(old_size));
    ASSERT_NE(p, nullptr);
    fill(p, old_size, 7);
    const std::size_t usable = malloc_usable_size(p);
    for (const std::size_t huge : {SIZE_MAX, above_ptrdiff_max}) {
      errno = 0;
      void *q = keep(std::realloc(p, opaque(huge)));
      const int err = errno;
      EXPECT_EQ(q, nullptr) << "realloc of a " << old_size << "-byte block to " << huge;
      EXPECT_EQ(err, ENOMEM);
      EXPECT_TRUE(intact(p, old_size, 7)) << "the old block's contents changed";
      EXPECT_TRUE(is_ramalloc_block(p)) << "the old block is no longer live";
      EXPECT_EQ(malloc_usable_size(p), usable);
    }
    std::free(p); // still a valid block: no report, no abort
  }
}

TEST(CEdgeCases, ReallocarrayWhoseProductOverflowsReturnsNullWithEnomem) {
  errno = 0;
  void *fresh = keep(reallocarray(nullptr, opaque(SIZE_MAX / 2 + 1), 2));
  int err = errno;
  EXPECT_EQ(fresh, nullptr);
  EXPECT_EQ(err, ENOMEM);

  auto *p = keep(std::malloc(64));
  ASSERT_NE(p, nullptr);
  fill(p, 64, 3);
  errno = 0;
  void *q = keep(reallocarray(p, opaque(std::size_t{1} << 33), opaque(std::size_t{1} << 33)));
  err = errno;
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(err, ENOMEM);
  EXPECT_TRUE(intact(p, 64, 3)) << "a failing reallocarray must leave the block intact";

  // Without overflow it is realloc.
  q = keep(reallocarray(p, 100, 8));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(intact(q, 64, 3));
  EXPECT_GE(malloc_usable_size(q), 800u);
  std::free(q);
}

TEST(CEdgeCases, PosixMemalignWithABadAlignmentReturnsEinvalAndLeavesMemptrUntouched) {
  // POSIX: a power of two multiple of sizeof(void *); 4 is a power of two but not one.
  for (const std::size_t align :
       {std::size_t{0}, std::size_t{3}, std::size_t{24}, std::size_t{4}}) {
    void *sentinel = reinterpret_cast<void *>(std::uintptr_t{0xdeadbeef});
    void *out = sentinel;
    errno = 0;
    const int rc = posix_memalign(&out, opaque(align), 64);
    const int err = errno;
    EXPECT_EQ(rc, EINVAL) << "alignment " << align;
    EXPECT_EQ(out, sentinel) << "alignment " << align << ": *memptr must not be written";
    EXPECT_EQ(err, 0) << "posix_memalign reports through its result, not errno";
  }
  void *out = nullptr;
  ASSERT_EQ(posix_memalign(&out, 4096, 100), 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(out) % 4096, 0u);
  std::free(out);
}

TEST(CEdgeCases, AlignedAllocWithABadAlignmentReturnsNullWithEinval) {
  for (const std::size_t align : {std::size_t{0}, std::size_t{65}}) {
    errno = 0;
    void *p = keep(aligned_alloc(opaque(align), 128));
    const int err = errno;
    EXPECT_EQ(p, nullptr) << "aligned_alloc(" << align << ", 128)";
    EXPECT_EQ(err, EINVAL) << "aligned_alloc(" << align << ", 128)";
  }
  // A size that is not a multiple of the alignment is accepted (C17 DR 460).
  void *p = keep(aligned_alloc(64, 100));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  std::free(p);
}

TEST(CEdgeCases, MemalignWhoseAlignmentRoundingOverflowsReturnsNullWithEnomem) {
  // memalign rounds an alignment that is not a power of two up to the next one; above
  // SIZE_MAX / 2 + 1 there is none.
  for (const std::size_t align : {SIZE_MAX / 2 + 2, SIZE_MAX}) {
    errno = 0;
    void *p = keep(memalign(opaque(align), 16));
    const int err = errno;
    EXPECT_EQ(p, nullptr) << "memalign(" << align << ", 16)";
    EXPECT_EQ(err, ENOMEM) << "memalign(" << align << ", 16)";
  }
  // A rounding that does not overflow is honoured: 48 -> 64.
  void *p = keep(memalign(48, 100));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  std::free(p);
}

TEST(CEdgeCases, MallocUsableSizeOfNullIsZero) {
  EXPECT_EQ(malloc_usable_size(keep(static_cast<void *>(nullptr))), 0u);
}

TEST(CEdgeCases, MallocOfAnImpossibleSizeReturnsNullWithEnomem) {
  for (const std::size_t huge : {SIZE_MAX, above_ptrdiff_max}) {
    errno = 0;
    void *p = keep(std::malloc(opaque(huge)));
    const int err = errno;
    EXPECT_EQ(p, nullptr) << "malloc(" << huge << ")";
    EXPECT_EQ(err, ENOMEM);
  }
}

TEST(CEdgeCases, SuccessfulCallsLeaveErrnoUntouched) {
  errno = 4242;
  void *a = keep(std::malloc(10));
  void *b = keep(std::calloc(10, 10));
  void *c = keep(std::realloc(a, 5000));
  void *d = keep(aligned_alloc(256, 256));
  void *e = nullptr;
  EXPECT_EQ(posix_memalign(&e, 64, 64), 0);
  std::free(b);
  std::free(c);
  std::free(d);
  std::free(e);
  EXPECT_EQ(errno, 4242);
}

TEST(CEdgeCases, ReallocToZeroFreesTheBlockAndReturnsAMinimumSizeBlock) {
  void *p = keep(std::malloc(1000));
  ASSERT_NE(p, nullptr);
  const std::uint64_t before = live_blocks();
  void *q = keep(std::realloc(p, 0)); // docs/api.md: glibc's behaviour, never NULL on success
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(is_ramalloc_block(q));
  EXPECT_EQ(live_blocks(), before) << "the old block must be freed, one new block live";
  std::free(q);
}

TEST(CEdgeCases, VallocAndPvallocArePageAligned) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void *v = keep(valloc(100));
  void *pv = keep(pvalloc(100));
  ASSERT_NE(v, nullptr);
  ASSERT_NE(pv, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v) % page, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pv) % page, 0u);
  EXPECT_GE(malloc_usable_size(pv), page) << "pvalloc rounds the size up to a page";
  std::free(v);
  std::free(pv);
  errno = 0;
  EXPECT_EQ(keep(pvalloc(opaque(SIZE_MAX - 10))), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

} // namespace
