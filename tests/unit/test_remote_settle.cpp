// Paying debt (settling a page from the inbox) never takes blocks out of circulation:
// whatever state the page's lists are in when the remote frees arrive, every block freed
// can be handed out again from the same page.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ramalloc_test;

namespace {

constexpr std::size_t block = 64;
constexpr std::size_t per_page = 64 * KiB / block;

bool in_page(const void *p, const void *page_start) {
  return addr(p) >= addr(page_start) && addr(p) < addr(page_start) + 64 * KiB;
}

} // namespace

// No harness allocation happens while the zone is current (with the override linked,
// containers and thread start-up would allocate from it): vectors are reserved first and
// threads start outside the scopes.
TEST(RemoteSettle, BlocksFreedRemotelyWhileBothLocalListsAreBusyStayInCirculation) {
  ramalloc::heap zone;
  std::vector<void *> b, again;
  b.reserve(per_page);
  again.reserve(per_page);
  {
    ramalloc::heap_scope scope(zone);
    for (std::size_t i = 0; i < per_page; ++i)
      b.push_back(ramalloc::acquire(block)); // one fresh page, now exhausted
  }
  void *page_start = b[0];
  for (void *p : b)
    ASSERT_TRUE(in_page(p, page_start));

  {
    ramalloc::heap_scope scope(zone);
    ramalloc::discard(b[0]); // a local free: the page's free list is busy
  }
  std::thread([&] { ramalloc::discard(b[1]); }).join();
  zone.reclaim(1); // the remote list is parked on the second local list
  std::thread([&] {
    for (std::size_t i = 2; i < per_page; ++i)
      ramalloc::discard(b[i]); // every other block, while both local lists are busy
  }).join();
  zone.reclaim(1);
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);

  // All of the page's blocks are free: a page's worth of acquires fits in it again.
  std::size_t in_same_page = 0;
  {
    ramalloc::heap_scope scope(zone);
    for (std::size_t i = 0; i < per_page; ++i) {
      again.push_back(ramalloc::acquire(block));
      in_same_page += in_page(again.back(), page_start);
    }
  }
  EXPECT_EQ(in_same_page, per_page) << "blocks freed remotely were lost to the page";
  EXPECT_EQ(zone.get_stats().live_blocks, per_page);
  {
    ramalloc::heap_scope scope(zone);
    for (void *p : again)
      ramalloc::discard(p);
  }
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}
