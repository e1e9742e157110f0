// Low waste: 4-byte objects allocated in bulk cost at most 4.1 bytes each of resident
// memory, every piece of metadata (page descriptors, page map, heap) included.
//
// Needs a fresh process (gtest_discover_tests runs each test in its own): the baseline
// is taken before the allocator is first used.
#include "test_support.hpp"

#include <gtest/gtest.h>

using namespace ramalloc_test;

namespace {

/// Why this process cannot measure the allocator's resident memory, or nullptr.
const char *why_resident_memory_cannot_be_measured() {
  if (under_sanitizer())
    return "resident memory under a sanitizer measures its shadow memory";
#if !RAMALLOC_TEST_WITH_OVERRIDE
  if (ramalloc::get_stats().reserved_bytes != 0)
    return "needs a fresh process (the allocator has been used already and would reuse "
           "memory that is resident): run it through ctest or alone with --gtest_filter";
#endif
  return nullptr;
}

} // namespace

TEST(TinyObjects, TenMillionLiveFourByteObjectsCostAtMostFourPointOneBytesEach) {
  if (const char *why = why_resident_memory_cannot_be_measured())
    GTEST_SKIP() << why;

  constexpr std::size_t n = 10'000'000;
  constexpr std::size_t limit_bytes = 41'000'000; // 4.1 bytes per object

  // The pointer array is the test's own memory: allocate and touch it before the
  // baseline so only the allocator's memory is measured.
  std::vector<std::uint32_t *> objects(n, nullptr);
#if RAMALLOC_TEST_WITH_OVERRIDE
  // With the override the allocator served GoogleTest before main and is never fresh.
  // Returning its free memory first keeps the objects off pages that are already
  // resident; only the metadata made at its first use is left out of the measurement.
  ramalloc::flush();
#endif
  const std::size_t baseline = resident_bytes();
  const ram_stats stats_before = ramalloc::get_stats();

  for (std::size_t i = 0; i < n; ++i) {
    auto *p = static_cast<std::uint32_t *>(ramalloc::acquire(4));
    if (p == nullptr)
      FAIL() << "acquire(4) failed after " << i << " objects";
    *p = static_cast<std::uint32_t>(i) ^ 0x5EED5EEDu; // makes the object resident
    objects[i] = p;
  }

  const std::size_t after = resident_bytes();
  const ram_stats stats_after = ramalloc::get_stats();

  // The objects are real, distinct and intact.
  std::size_t corrupted = 0;
  for (std::size_t i = 0; i < n; ++i)
    corrupted += *objects[i] != (static_cast<std::uint32_t>(i) ^ 0x5EED5EEDu);
  EXPECT_EQ(corrupted, 0u);
  EXPECT_EQ(stats_after.live_blocks - stats_before.live_blocks, n);

  const std::size_t growth = after > baseline ? after - baseline : 0;
  RecordProperty("rss_growth_bytes", std::to_string(growth));
  std::printf("resident growth %zu bytes for %zu objects = %.3f bytes/object\n", growth, n,
              static_cast<double>(growth) / static_cast<double>(n));
  EXPECT_GE(growth, n * 4) << "the objects themselves must have become resident";
  EXPECT_LE(growth, limit_bytes) << "that is "
                                 << static_cast<double>(growth) / static_cast<double>(n)
                                 << " bytes per 4-byte object";

  for (std::uint32_t *p : objects)
    ramalloc::discard(p);
}

TEST(TinyObjects, FourMillionLiveMallocsOfAtMostEightBytesCostAtMostEightPointFifteenBytesEach) {
  // malloc(1..8) needs only 8-byte alignment (C: enough for any object of that size), so
  // it takes the 8-byte class: what mimalloc, jemalloc and tcmalloc spend (docs/api.md).
  if (const char *why = why_resident_memory_cannot_be_measured())
    GTEST_SKIP() << why;

  constexpr std::size_t n = 4'000'000;
  // 8 bytes a block, 0.047 of descriptor (384 bytes per 64 KiB page of 8192 blocks: three
  // 128-byte pairs of lines, mem/page.hpp), page tables and the rest.
  constexpr std::size_t limit_bytes = 32'600'000; // 8.15 bytes per object

  std::vector<unsigned char *> objects(n, nullptr);
#if RAMALLOC_TEST_WITH_OVERRIDE
  ramalloc::flush(); // see above
#endif
  const std::size_t baseline = resident_bytes();

  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t size = 1 + i % 8; // every size from 1 to 8
    auto *p = static_cast<unsigned char *>(ram_malloc(size));
    if (p == nullptr)
      FAIL() << "malloc(" << size << ") failed after " << i << " objects";
    std::memset(p, static_cast<int>(i & 0xFF), size); // makes the object resident
    objects[i] = p;
  }

  const std::size_t after = resident_bytes();
  std::size_t corrupted = 0;
  for (std::size_t i = 0; i < n; ++i)
    corrupted += objects[i][i % 8] != static_cast<unsigned char>(i & 0xFF);
  EXPECT_EQ(corrupted, 0u);

  const std::size_t growth = after > baseline ? after - baseline : 0;
  RecordProperty("rss_growth_bytes", std::to_string(growth));
  std::printf("resident growth %zu bytes for %zu objects = %.3f bytes/object\n", growth, n,
              static_cast<double>(growth) / static_cast<double>(n));
  EXPECT_GE(growth, n * 7) << "the objects themselves must have become resident";
  EXPECT_LE(growth, limit_bytes) << "that is "
                                 << static_cast<double>(growth) / static_cast<double>(n)
                                 << " bytes per malloc of at most 8 bytes";

  for (unsigned char *p : objects)
    ram_free(p);
}
