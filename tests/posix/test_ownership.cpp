// Whose memory is it? Under the override every allocation function of the program (and
// of the C and C++ libraries it calls) hands out ramalloc blocks; a pointer glibc handed
// out through __libc_malloc is given back to glibc; anything else is reported and left
// alone (issue 4, "Coexistence").
#include "posix_support.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

extern "C" {
void *__libc_malloc(std::size_t);
void __libc_free(void *);
}

using namespace ramalloc_posix_test;

namespace {

/// glibc's own malloc_usable_size (the program's is the override's).
std::size_t glibc_usable_size(void *p) {
  using fn = std::size_t (*)(void *);
  static const auto real = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
  return real != nullptr ? real(p) : 0;
}

TEST(Ownership, EveryAllocationFunctionReturnsARamallocBlock) {
  struct named {
    const char *what;
    void *p;
  };
  void *pm = nullptr;
  ASSERT_EQ(posix_memalign(&pm, 256, 1000), 0);
  void *ra = keep(std::malloc(10));
  ra = keep(std::realloc(ra, 100000)); // moved to a new (medium) block
  const named blocks[] = {
      {"malloc", keep(std::malloc(24))},
      {"malloc (large)", keep(std::malloc(5 * MiB))},
      {"malloc (huge)", keep(std::malloc(100 * MiB))},
      {"calloc", keep(std::calloc(10, 10))},
      {"realloc", ra},
      {"reallocarray", keep(reallocarray(nullptr, 10, 10))},
      {"aligned_alloc", keep(aligned_alloc(128, 128))},
      {"posix_memalign", pm},
      {"memalign", keep(memalign(64, 10))},
      {"valloc", keep(valloc(10))},
      {"pvalloc", keep(pvalloc(10))},
      {"strdup (malloc called inside libc)", keep(strdup("a string from libc"))},
  };
  for (const named &b : blocks) {
    ASSERT_NE(b.p, nullptr) << b.what;
    EXPECT_TRUE(is_ramalloc_block(b.p)) << b.what << " did not return a ramalloc block";
  }
  for (const named &b : blocks)
    std::free(b.p);
}

TEST(Ownership, EveryFormOfNewReturnsARamallocBlock) {
  void *plain = keep(::operator new(40));
  void *array = keep(::operator new[](400));
  void *nothrow = keep(::operator new(40, std::nothrow));
  void *aligned = keep(::operator new (40, std::align_val_t{64}));
  void *aligned_page = keep(::operator new[](10000, std::align_val_t{4096}));
  void *aligned_nothrow = keep(::operator new (40, std::align_val_t{256}, std::nothrow));
  for (void *p : {plain, array, nothrow, aligned, aligned_page, aligned_nothrow}) {
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(is_ramalloc_block(p));
  }
  // The C++ library's containers allocate through the same operator new.
  std::string s(1000, 'x');
  std::vector<int> v(1000, 7);
  EXPECT_TRUE(is_ramalloc_block(s.data()));
  EXPECT_TRUE(is_ramalloc_block(v.data()));

  ::operator delete(plain);
  ::operator delete[](array);
  ::operator delete(nothrow, std::nothrow);
  ::operator delete (aligned, std::align_val_t{64});
  ::operator delete[](aligned_page, std::align_val_t{4096});
  ::operator delete (aligned_nothrow, std::align_val_t{256}, std::nothrow);
}

TEST(Ownership, FreeOfABlockFromLibcMallocIsForwardedToGlibcWithoutAReport) {
  report_recorder reports;
  const std::uint64_t invalid_before = invalid_frees();
  // Small blocks come from glibc's heap, big ones from its own mmap.
  for (const std::size_t size : {std::size_t{100}, 8 * MiB}) {
    void *p = __libc_malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, size);
    EXPECT_FALSE(is_ramalloc_block(p));
    std::free(p);
    EXPECT_EQ(reports.count(), 0u)
        << "free of a glibc block of " << size
        << " bytes was reported: " << (reports.count() ? reports[0].message : "");
  }
  EXPECT_EQ(invalid_frees(), invalid_before);

  // The block really went back to glibc: its thread cache hands the same chunk out again.
  void *p = __libc_malloc(200);
  std::free(p);
  void *q = __libc_malloc(200);
  EXPECT_EQ(q, p) << "glibc did not get its block back";
  __libc_free(q);
}

TEST(Ownership, ReallocAndUsableSizeOfABlockFromLibcMallocAreGlibcs) {
  report_recorder reports;
  auto *p = static_cast<unsigned char *>(__libc_malloc(100));
  ASSERT_NE(p, nullptr);
  fill(p, 100, 11);
  EXPECT_GE(malloc_usable_size(p), 100u);
  EXPECT_EQ(malloc_usable_size(p), glibc_usable_size(p));

  auto *q = static_cast<unsigned char *>(keep(std::realloc(p, 64 * KiB)));
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(intact(q, 100, 11)) << "realloc of a glibc block lost its contents";
  EXPECT_GE(malloc_usable_size(q), 64 * KiB);
  std::free(q);
  EXPECT_EQ(reports.count(), 0u) << (reports.count() ? reports[0].message : "");
}

TEST(Ownership, FreeOfABlockFromAnotherThreadsGlibcArenaIsForwardedToGlibcWithoutAReport) {
  report_recorder reports;
  void *p = nullptr;
  std::thread([&] { p = __libc_malloc(100); }).join(); // a thread gets an arena of its own
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5a, 100);
  std::free(p);
  EXPECT_EQ(reports.count(), 0u) << (reports.count() ? reports[0].message : "");
}

// Issue 8 item 13: the glibc check reads the would-be chunk header, and a header can be
// forged. Where glibc's chunks can be is checked too (docs/api.md): a chunk header forged
// in memory that is neither glibc's brk heap nor one of its arenas' heaps is reported, not
// handed to __libc_free (which would put our page on its free lists, or fault).
namespace {

/// A fresh page (never freed: were the forgery handed to glibc, it would keep the page).
unsigned char *fresh_page() {
  void *m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return m == MAP_FAILED ? nullptr : static_cast<unsigned char *>(m);
}

/// Writes a chunk header for a 64-byte chunk in use (flags as given) before `p` and the
/// next chunk's header with PREV_INUSE after it.
void forge_chunk(unsigned char *p, std::uint64_t flags) {
  const std::uint64_t header[2] = {0, 64 | flags};
  std::memcpy(p - 16, header, sizeof header);
  const std::uint64_t next[2] = {0, 32 | 1};
  std::memcpy(p - 16 + 64, next, sizeof next);
}

} // namespace

TEST(Ownership, FreeOfAForgedMainArenaChunkOutsideTheProgramBreakIsReported) {
  unsigned char *page = fresh_page();
  ASSERT_NE(page, nullptr);
  unsigned char *fake = page + 256;
  forge_chunk(fake, /*PREV_INUSE*/ 1);
  unsigned char before[4096];
  std::memcpy(before, page, sizeof before);
  report_recorder reports;
  std::free(fake);
  ASSERT_EQ(reports.count(), 1u) << "a forged chunk header was passed to glibc";
  EXPECT_EQ(reports[0].error, RAM_ERROR_INVALID_FREE);
  EXPECT_EQ(reports[0].pointer, fake);
  EXPECT_EQ(std::memcmp(before, page, sizeof before), 0) << "the page was written";
  EXPECT_EQ(malloc_usable_size(fake), 0u);
}

TEST(Ownership, FreeOfAForgedThreadArenaChunkOutsideAnyGlibcHeapIsReported) {
  unsigned char *page = fresh_page();
  ASSERT_NE(page, nullptr);
  unsigned char *fake = page + 256;
  forge_chunk(fake, /*PREV_INUSE | NON_MAIN_ARENA*/ 1 | 4);
  unsigned char before[4096];
  std::memcpy(before, page, sizeof before);
  report_recorder reports;
  std::free(fake);
  ASSERT_EQ(reports.count(), 1u) << "a forged chunk header was passed to glibc";
  EXPECT_EQ(reports[0].error, RAM_ERROR_INVALID_FREE);
  EXPECT_EQ(std::memcmp(before, page, sizeof before), 0) << "the page was written";
}

TEST(Ownership, FreeOfAStackAddressIsReportedAndChangesNothing) {
  report_recorder reports;
  const std::uint64_t invalid_before = invalid_frees();
  const std::uint64_t live_before = live_blocks();
  alignas(64) unsigned char stack_buffer[128] = {};
  void *wild = keep(stack_buffer + 64);

  std::free(wild);

  ASSERT_EQ(reports.count(), 1u) << "free of a stack address must be reported once";
  EXPECT_EQ(reports[0].error, RAM_ERROR_INVALID_FREE) << reports[0].message;
  EXPECT_EQ(reports[0].pointer, wild);
  EXPECT_NE(reports[0].message[0], '\0');
  EXPECT_EQ(invalid_frees(), invalid_before + 1);
  EXPECT_EQ(live_blocks(), live_before);
  for (unsigned char b : stack_buffer)
    ASSERT_EQ(b, 0) << "the stack buffer was written";
}

TEST(Ownership, FreeOfAnUnmappedAddressIsReported) {
  report_recorder reports;
  // Below vm.mmap_min_addr: never mapped.
  void *wild = reinterpret_cast<void *>(std::uintptr_t{0x2000});
  std::free(wild);
  ASSERT_EQ(reports.count(), 1u);
  EXPECT_EQ(reports[0].error, RAM_ERROR_INVALID_FREE);
  EXPECT_EQ(reports[0].pointer, wild);
  EXPECT_EQ(malloc_usable_size(wild), 0u);
}

TEST(Ownership, ReallocOfAWildPointerIsReportedAndReturnsNullWithEinval) {
  report_recorder reports;
  alignas(64) unsigned char stack_buffer[128] = {};
  void *wild = keep(stack_buffer + 64);
  errno = 0;
  void *q = keep(std::realloc(wild, 100));
  const int err = errno;
  EXPECT_EQ(q, nullptr);
  EXPECT_EQ(err, EINVAL);
  ASSERT_EQ(reports.count(), 1u);
  EXPECT_EQ(reports[0].pointer, wild);
  EXPECT_EQ(malloc_usable_size(wild), 0u);
}

TEST(Ownership, FreeInsideABlockIsReportedAndTheBlockStaysLive) {
  report_recorder reports;
  auto *p = static_cast<unsigned char *>(keep(std::malloc(256)));
  fill(p, 256, 5);
  std::free(p + 16);
  ASSERT_EQ(reports.count(), 1u);
  EXPECT_EQ(reports[0].error, RAM_ERROR_INTERIOR_FREE) << reports[0].message;
  EXPECT_EQ(reports[0].pointer, p + 16);
  EXPECT_TRUE(is_ramalloc_block(p));
  EXPECT_TRUE(intact(p, 256, 5));
  std::free(p);
  EXPECT_EQ(reports.count(), 1u);
}

TEST(Ownership, SecondFreeOfABlockIsReported) {
  report_recorder reports;
  void *p = keep(std::malloc(64));
  std::free(p);
  std::free(keep(p));
  ASSERT_EQ(reports.count(), 1u);
  EXPECT_EQ(reports[0].error, RAM_ERROR_DOUBLE_FREE) << reports[0].message;
  EXPECT_EQ(reports[0].pointer, p);
}

} // namespace
