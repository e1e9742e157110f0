// heap::release_all(): a zone's heap torn down whole. Every block goes at once, in time
// proportional to the heap's pages (never to its objects); its resident memory goes back
// to the OS; a stale pointer freed afterwards is reported and changes nothing; the heap
// is as good as new.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ramalloc_test;
using ramalloc_test_common::fill_pattern;
using ramalloc_test_common::pattern_intact;

namespace {

constexpr std::size_t object_size = 64;
constexpr std::size_t objects_per_page = 64 * KiB / object_size;

void fill_into(std::vector<void *> &blocks, ramalloc::heap &zone, std::size_t n,
               std::size_t size = object_size) {
  for (std::size_t i = 0; i < n; ++i) {
    void *p = zone.acquire(size);
    EXPECT_NE(p, nullptr);
    blocks.push_back(p);
  }
}

std::vector<void *> fill(ramalloc::heap &zone, std::size_t n, std::size_t size = object_size) {
  std::vector<void *> blocks;
  blocks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    void *p = zone.acquire(size);
    EXPECT_NE(p, nullptr);
    blocks.push_back(p);
  }
  return blocks;
}

} // namespace

TEST(ReleaseAll, StepsGrowWithPagesNotWithObjects) {
  // 10^6 objects of 64 bytes fill about 977 pages of 64 KiB: the walk visits spans.
  constexpr std::size_t n = 1'000'000;
  constexpr std::size_t pages = (n + objects_per_page - 1) / objects_per_page;
  ramalloc::heap zone;
  std::vector<void *> blocks = fill(zone, n);
  ASSERT_EQ(zone.get_stats().live_blocks, n);
  const std::size_t steps = zone.release_all();
  EXPECT_GE(steps, pages);
  EXPECT_LE(steps, pages + 8) << "release_all visited more than the heap's spans";
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
  EXPECT_EQ(zone.get_stats().live_bytes, 0u);

  // The same heap with 10^3 objects: a handful of spans, not a thousand.
  fill(zone, 1000);
  EXPECT_LE(zone.release_all(), 8u);
}

TEST(ReleaseAll, ResidentMemoryFallsBackByWhatTheHeapHeld) {
  if (under_sanitizer())
    GTEST_SKIP() << "shadow memory makes RSS meaningless";
  ramalloc::heap zone;
  std::vector<void *> blocks;
  blocks.reserve(1'000'000);
  std::memset(blocks.data(), 0, blocks.capacity() * sizeof(void *)); // resident before
  const std::size_t before = resident_bytes();
  fill_into(blocks, zone, 1'000'000); // 64 MB, every page touched
  for (void *p : blocks)
    std::memset(p, 0xA5, object_size);
  const std::size_t held = resident_bytes() - before;
  ASSERT_GT(held, 48 * MiB);
  zone.release_all();
  const std::size_t after = resident_bytes();
  EXPECT_LT(after, before + held / 10)
      << "resident before " << before << ", held " << held << ", after " << after;
  EXPECT_LT(zone.get_stats().committed_bytes, 1 * MiB);
}

TEST(ReleaseAll, StaleFreeAfterwardsIsReportedAndChangesNothing) {
  ramalloc::heap zone;
  std::vector<void *> blocks = fill(zone, 10'000);
  void *big = zone.acquire(1 * MiB); // a large span goes too
  ASSERT_NE(big, nullptr);
  zone.release_all();

  const std::uint64_t invalid_before = ramalloc::get_stats().invalid_frees;
  {
    error_recorder errors;
    ramalloc::discard(blocks[123]);
    ramalloc::discard(big);
    ASSERT_EQ(errors.count(), 2u);
    for (const auto &r : errors.reports())
      EXPECT_EQ(r.error, RAM_ERROR_INVALID_FREE) << r.message;
    EXPECT_EQ(ramalloc::query(blocks[123]), std::nullopt);
    EXPECT_EQ(ramalloc::query(big), std::nullopt);
  }
  EXPECT_EQ(ramalloc::get_stats().invalid_frees, invalid_before + 2);
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);

  // The heap is as good as new: fresh blocks are distinct, whole and owned by it.
  std::vector<void *> again = fill(zone, 20'000);
  for (std::size_t i = 0; i < again.size(); ++i)
    fill_pattern(again[i], object_size, i);
  for (std::size_t i = 0; i < again.size(); ++i) {
    ASSERT_TRUE(pattern_intact(again[i], object_size, i)) << "block " << i;
    const auto q = ramalloc::query(again[i]);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->owner, zone.id());
  }
  EXPECT_EQ(zone.get_stats().live_blocks, again.size());
  ramalloc::heap_scope scope(zone); // local frees: the counters fall at once
  for (void *p : again)
    ramalloc::discard(p);
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}

TEST(ReleaseAll, RemoteFreesQueuedBeforeTheCallAreForgotten) {
  ramalloc::heap zone;
  std::vector<void *> blocks = fill(zone, 50'000);
  // Another thread frees every other block: pages land in the zone's inbox as debt.
  std::thread([&] {
    for (std::size_t i = 0; i < blocks.size(); i += 2)
      ramalloc::discard(blocks[i]);
  }).join();
  ASSERT_GT(zone.get_stats().pending_debt, 0u);
  zone.release_all();
  EXPECT_EQ(zone.get_stats().pending_debt, 0u);
  EXPECT_EQ(zone.reclaim(1000), 0u);

  // Memory handed out again stays consistent: nothing from the old inbox resurfaces.
  // (No harness allocation while the zone is current: with the override linked it would
  // come from the zone.)
  std::vector<void *> again;
  again.reserve(60'000);
  ramalloc::heap_scope scope(zone);
  for (std::size_t i = 0; i < 60'000; ++i) {
    again.push_back(ramalloc::acquire(object_size));
    fill_pattern(again.back(), object_size, i);
  }
  zone.flush();
  for (std::size_t i = 0; i < again.size(); ++i)
    ASSERT_TRUE(pattern_intact(again[i], object_size, i)) << "block " << i;
  for (void *p : again)
    ramalloc::discard(p);
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}

TEST(ReleaseAll, HugeBlocksStayValid) {
  ramalloc::heap zone;
  void *small = zone.acquire(100);
  void *huge = zone.acquire(64 * MiB);
  ASSERT_NE(huge, nullptr);
  fill_pattern(huge, 4096, 7);
  zone.release_all();
  EXPECT_EQ(ramalloc::query(small), std::nullopt);
  const auto q = ramalloc::query(huge);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->kind, ramalloc::block_info::block_kind::huge);
  EXPECT_TRUE(pattern_intact(huge, 4096, 7));
  ramalloc::discard(huge);
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}

TEST(ReleaseAll, StaticBufferHeapCanBeFilledAgain) {
  constexpr std::size_t size = 4 * MiB + 64 * KiB;
  void *buffer = glibc_malloc(size); // not ramalloc's own memory, even with the override
  ASSERT_NE(buffer, nullptr);
  {
    ramalloc::heap zone(buffer, size);
    std::size_t first = 0;
    while (zone.acquire(4096) != nullptr)
      ++first;
    ASSERT_GT(first, 0u);
    zone.release_all();
    EXPECT_EQ(zone.get_stats().live_blocks, 0u);
    std::size_t second = 0;
    while (zone.acquire(4096) != nullptr)
      ++second;
    EXPECT_EQ(second, first) << "release_all must make the whole buffer usable again";
    zone.release_all();
  }
  glibc_free(buffer);
}

TEST(ReleaseAll, CInterface) {
  ram_heap *zone = ram_heap_create();
  ASSERT_NE(zone, nullptr);
  for (int i = 0; i < 5000; ++i)
    ASSERT_NE(ram_heap_acquire(zone, 48), nullptr);
  ram_stats s;
  ram_heap_get_stats(zone, &s);
  EXPECT_EQ(s.live_blocks, 5000u);
  EXPECT_GE(ram_heap_release_all(zone), 1u);
  ram_heap_get_stats(zone, &s);
  EXPECT_EQ(s.live_blocks, 0u);
  ram_heap_destroy(zone);
  ram_heap_destroy(nullptr); // ignored
}
