// Under AddressSanitizer (the asan preset) ramalloc poisons what the program may not touch
// — free blocks, the bytes of a block past the requested size, pages not handed out — so
// a use after discard or an overflow into a neighbour is ASan's "use-after-poison" report
// with ramalloc in the process (docs/hardening.md, "AddressSanitizer";
// allocator/src/common/annotate.hpp). Without ASan every test here is skipped.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <thread>

#include "ramalloc/ramalloc.h"
#include "ramalloc/ramalloc.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define RAMALLOC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RAMALLOC_TEST_ASAN 1
#endif
#endif

namespace {

#if defined(RAMALLOC_TEST_ASAN)
#define SKIP_UNLESS_ASAN() GTEST_FLAG_SET(death_test_style, "threadsafe")
#else
#define SKIP_UNLESS_ASAN()                                                                         \
  GTEST_SKIP() << "built without AddressSanitizer: ramalloc poisons nothing (the asan preset "     \
                  "runs these)"
#endif

constexpr const char *poisoned = "use-after-poison";

unsigned char read_byte(const void *p, std::size_t i) {
  return static_cast<const volatile unsigned char *>(p)[i];
}
void write_byte(void *p, std::size_t i) {
  static_cast<volatile unsigned char *>(p)[i] = 0x5A;
}

// --- the native API (the current heap) ---------------------------------------------------

TEST(AsanAnnotations, UseAfterDiscardIsCaught) {
  SKIP_UNLESS_ASAN();
  void *p = ramalloc::acquire(64);
  std::memset(p, 1, 64);
  ramalloc::discard(p);
  EXPECT_DEATH(read_byte(p, 32), poisoned);
}

TEST(AsanAnnotations, UseAfterDiscardOfTheFreeListLinkIsCaught) {
  SKIP_UNLESS_ASAN();
  // Bytes 0..7 hold ramalloc's own link and canary while the block is free: still poisoned.
  void *p = ramalloc::acquire(64);
  ramalloc::discard(p);
  EXPECT_DEATH(write_byte(p, 0), poisoned);
}

TEST(AsanAnnotations, UseAfterARemoteDiscardIsCaught) {
  SKIP_UNLESS_ASAN();
  // Another thread frees the block: it writes the remote list's link into it, then the
  // block must be poisoned before the owner can see it.
  void *p = ramalloc::acquire(96);
  std::memset(p, 1, 96);
  std::thread([p] { ramalloc::discard(p); }).join();
  EXPECT_DEATH(read_byte(p, 0), poisoned);
  EXPECT_DEATH(read_byte(p, 50), poisoned);
  ramalloc::reclaim(16); // the owner takes the remote list: the block stays poisoned
  EXPECT_DEATH(read_byte(p, 8), poisoned);
}

TEST(AsanAnnotations, OverflowIntoAFreeNeighbourIsCaught) {
  SKIP_UNLESS_ASAN();
  auto *a = static_cast<unsigned char *>(ramalloc::acquire(64)); // a 64-byte class: no slack
  void *b = ramalloc::acquire(64);
  std::memset(a, 1, 64);
  ramalloc::discard(b);
  // The byte after a is b (free now) or a block never handed out: poisoned either way.
  EXPECT_DEATH(write_byte(a, 64), poisoned);
  ramalloc::discard(a);
}

TEST(AsanAnnotations, OverflowPastTheRequestedSizeIsCaught) {
  SKIP_UNLESS_ASAN();
  void *p = ramalloc::acquire(10); // a 16-byte block: bytes 10..15 are not the program's
  std::memset(p, 1, 10);
  EXPECT_DEATH(read_byte(p, 10), poisoned);
  ramalloc::discard(p);
}

TEST(AsanAnnotations, LargeAndAlignedBlocksArePoisonedWhenFree) {
  SKIP_UNLESS_ASAN();
  void *big = ramalloc::acquire(300000); // a large span
  std::memset(big, 1, 300000);
  EXPECT_DEATH(read_byte(big, 300000), poisoned);
  ramalloc::discard(big);
  EXPECT_DEATH(read_byte(big, 1000), poisoned);
  void *aligned = ramalloc::acquire(100, 4096);
  std::memset(aligned, 1, 100);
  ramalloc::discard(aligned);
  EXPECT_DEATH(read_byte(aligned, 50), poisoned);
}

TEST(AsanAnnotations, LiveBlocksAreWhollyUsable) {
  SKIP_UNLESS_ASAN();
  // No false report: every requested byte, a realloc in place and the usable size.
  for (std::size_t n : {1u, 8u, 24u, 100u, 5000u, 70000u, 300000u}) {
    auto *p = static_cast<unsigned char *>(ramalloc::acquire(n));
    std::memset(p, 1, n);
    ramalloc::discard(p);
  }
  auto *r = static_cast<unsigned char *>(ram_malloc(100));
  std::memset(r, 2, 100);
  r = static_cast<unsigned char *>(ram_realloc(r, 70)); // in place (a 112-byte block)
  EXPECT_EQ(read_byte(r, 69), 2);
  r = static_cast<unsigned char *>(ram_realloc(r, 110)); // in place, grown
  std::memset(r, 3, 110);
  const std::size_t usable = ram_usable_size(r);
  std::memset(r, 4, usable);                              // the usable size is the program's to use
  r = static_cast<unsigned char *>(ram_realloc(r, 4000)); // moved: contents kept
  EXPECT_EQ(read_byte(r, usable - 1), 4);
  ram_free(r);
}

TEST(AsanAnnotations, ReallocInPlaceShrinkPoisonsTheTail) {
  SKIP_UNLESS_ASAN();
  void *p = ram_malloc(100);
  std::memset(p, 1, 100);
  void *q = ram_realloc(p, 60);
  ASSERT_EQ(q, p); // kept in place: 60 >= 112 / 2
  EXPECT_DEATH(read_byte(q, 60), poisoned);
  ram_free(q);
}

// --- a heap of its own ----------------------------------------------------------------------

TEST(AsanAnnotations, HeapUseAfterDiscardIsCaught) {
  SKIP_UNLESS_ASAN();
  ramalloc::heap h;
  void *p = h.acquire(200);
  std::memset(p, 1, 200);
  ramalloc::discard(p);
  EXPECT_DEATH(read_byte(p, 100), poisoned);
}

TEST(AsanAnnotations, HeapOverflowIntoANeighbourIsCaught) {
  SKIP_UNLESS_ASAN();
  ramalloc::heap h;
  auto *a = static_cast<unsigned char *>(h.acquire(128));
  void *b = h.acquire(128);
  ramalloc::discard(b);
  EXPECT_DEATH(write_byte(a, 128), poisoned);
  ramalloc::discard(a);
}

TEST(AsanAnnotations, HeapReleaseAllPoisonsEveryBlock) {
  SKIP_UNLESS_ASAN();
  ramalloc::heap h;
  void *small = h.acquire(48);
  void *large = h.acquire(500000);
  std::memset(small, 1, 48);
  std::memset(large, 1, 500000);
  h.release_all();
  EXPECT_DEATH(read_byte(small, 0), poisoned);
  EXPECT_DEATH(read_byte(large, 400000), poisoned);
}

// --- a static-buffer heap -------------------------------------------------------------------

TEST(AsanAnnotations, StaticHeapUseAfterDiscardIsCaught) {
  SKIP_UNLESS_ASAN();
  auto buffer = std::make_unique<unsigned char[]>(1 << 20);
  ramalloc::heap h(buffer.get(), 1 << 20);
  void *p = h.acquire(96);
  std::memset(p, 1, 96);
  ramalloc::discard(p);
  EXPECT_DEATH(read_byte(p, 40), poisoned);
}

TEST(AsanAnnotations, StaticHeapOverflowIntoANeighbourIsCaught) {
  SKIP_UNLESS_ASAN();
  auto buffer = std::make_unique<unsigned char[]>(1 << 20);
  ramalloc::heap h(buffer.get(), 1 << 20);
  auto *a = static_cast<unsigned char *>(h.acquire(32));
  void *b = h.acquire(32);
  std::memset(a, 1, 32);
  ramalloc::discard(b);
  EXPECT_DEATH(write_byte(a, 32), poisoned);
  ramalloc::discard(a);
}

TEST(AsanAnnotations, StaticBufferIsTheProgramsAgainOnceItsHeapIsGone) {
  SKIP_UNLESS_ASAN();
  // The heap poisoned the buffer's slices; its end gives them back: every byte is usable
  // (and ASan's own delete[] of the buffer below must not trip over leftover poison).
  auto buffer = std::make_unique<unsigned char[]>(1 << 20);
  {
    ramalloc::heap h(buffer.get(), 1 << 20);
    void *p = h.acquire(1000);
    std::memset(p, 1, 1000);
    ramalloc::discard(p);
  }
  std::memset(buffer.get(), 0, 1 << 20);
  EXPECT_EQ(read_byte(buffer.get(), 700000), 0);
}

} // namespace
