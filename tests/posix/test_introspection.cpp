// glibc's introspection calls under the override: malloc_trim runs flush and says whether
// memory went back; mallinfo2/mallinfo come from ramalloc's statistics; the usable size
// covers the request.
#include "posix_support.hpp"

#include <gtest/gtest.h>

#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace ramalloc_posix_test;

namespace {

TEST(Introspection, MallocTrimReturnsOneAfterLotsOfMemoryWasFreed) {
  // Small, medium and large blocks, all written to so their pages are resident.
  std::vector<void *> blocks;
  blocks.reserve(20000);
  for (int i = 0; i < 16000; ++i)
    blocks.push_back(std::malloc(200));
  for (int i = 0; i < 2000; ++i)
    blocks.push_back(std::malloc(20 * KiB));
  for (int i = 0; i < 64; ++i)
    blocks.push_back(std::malloc(1 * MiB));
  std::size_t total = 0;
  for (void *p : blocks) {
    ASSERT_NE(p, nullptr);
    const std::size_t n = malloc_usable_size(p);
    std::memset(p, 1, n);
    total += n;
  }
  ASSERT_GE(total, 100 * MiB);
  for (void *p : blocks)
    std::free(p);

  EXPECT_EQ(malloc_trim(0), 1) << "malloc_trim after freeing " << total << " bytes";
  EXPECT_EQ(malloc_trim(0), 0) << "a second trim has nothing left to return";
}

TEST(Introspection, Mallinfo2CountsLiveBytes) {
  constexpr int n = 1000;
  constexpr std::size_t size = 10 * KiB; // a size class of its own: no rounding
  void *blocks[n];
  const struct mallinfo2 before = mallinfo2();
  for (void *&p : blocks)
    p = keep(std::malloc(size));
  const struct mallinfo2 during = mallinfo2();
  for (void *p : blocks)
    std::free(p);
  const struct mallinfo2 after = mallinfo2();

  EXPECT_EQ(during.uordblks - before.uordblks, n * size);
  EXPECT_EQ(after.uordblks, before.uordblks);
  EXPECT_GE(during.arena, during.uordblks) << "arena (committed) must cover the live bytes";
  EXPECT_EQ(during.fordblks, during.arena - during.uordblks);

  ram_stats s{};
  ram_get_stats(&s);
  const struct mallinfo2 now = mallinfo2();
  EXPECT_EQ(now.uordblks, s.live_bytes);
}

TEST(Introspection, MallinfoIsMallinfo2WithIntFields) {
  void *p = keep(std::malloc(1 * MiB));
  const struct mallinfo2 m2 = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const struct mallinfo m = mallinfo(); // deprecated by glibc, still exported by ramalloc
#pragma GCC diagnostic pop
  EXPECT_EQ(static_cast<std::size_t>(m.uordblks), m2.uordblks);
  EXPECT_EQ(static_cast<std::size_t>(m.arena), m2.arena);
  std::free(p);
}

TEST(Introspection, UsableSizeCoversTheRequestAndCanBeWritten) {
  for (std::size_t size = 1; size <= 300 * KiB; size = size * 3 / 2 + 1) {
    auto *p = static_cast<unsigned char *>(keep(std::malloc(size)));
    ASSERT_NE(p, nullptr);
    const std::size_t usable = malloc_usable_size(p);
    EXPECT_GE(usable, size);
    std::memset(p, 0xab, usable);
    std::free(p);
  }
}

} // namespace
