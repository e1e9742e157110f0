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

// --- back-pressure (RAMALLOC_DEBT_INTERVAL) ---------------------------------------------

namespace {

/// A heap whose inbox holds `waiting` entries (large blocks freed by another thread: one
/// entry each, nothing another class could reuse) and whose class of 512-byte blocks
/// spans `pages` full pages with one locally freed block each: from then on every
/// acquire of that class takes the slow path once (its current page has just run out)
/// and moves to the next page, which holds a freed block, so no acquire grows the class
/// and none settles before growth.
struct inbox_fixture {
  static constexpr std::size_t small = 512, per_small_page = 64 * KiB / small;
  ramalloc::heap zone;
  std::vector<void *> blocks, large, taken;

  inbox_fixture(std::size_t waiting, std::size_t pages) {
    blocks.reserve(pages * per_small_page);
    large.reserve(waiting);
    taken.reserve(pages + 16); // slow_path() pushes too: no harness allocation in the zone
    {
      ramalloc::heap_scope scope(zone);
      for (std::size_t i = 0; i < waiting; ++i)
        large.push_back(ramalloc::acquire(300 * KiB));
      for (std::size_t i = 0; i < pages * per_small_page; ++i)
        blocks.push_back(ramalloc::acquire(small));
      for (std::size_t i = 0; i < pages; ++i)
        ramalloc::discard(blocks[i * per_small_page]);
      taken.push_back(ramalloc::acquire(small)); // the current page's own freed block
    }
    std::thread([&] {
      for (void *p : large)
        ramalloc::discard(p);
    }).join();
  }
  std::uint64_t pending() const { return zone.get_stats().pending_debt; }
  /// One acquire slow path (see above).
  void slow_path() {
    ramalloc::heap_scope scope(zone);
    taken.push_back(ramalloc::acquire(small));
  }
  ~inbox_fixture() {
    ramalloc::heap_scope scope(zone);
    for (std::size_t i = 0; i < blocks.size(); ++i)
      if (i % per_small_page != 0)
        ramalloc::discard(blocks[i]);
    for (void *p : taken)
      ramalloc::discard(p);
  }
};

class BackPressure : public testing::Test {
protected:
  void SetUp() override {
    ramalloc::options o = saved;
    o.debt_slice = 1;
    o.purge_delay_ms = 3600 * 1000; // nothing else becomes payable during the test
    ramalloc::set_options(o);
  }
  void TearDown() override { ramalloc::set_options(saved); }
  void set_interval(std::uint32_t n) {
    ramalloc::options o = ramalloc::get_options();
    o.debt_interval = n;
    ASSERT_TRUE(ramalloc::set_options(o));
  }
  ramalloc::options saved = ramalloc::get_options();
};

} // namespace

// A thread that never reclaims pays its inbox on its acquire slow paths, one debt_slice
// on one slow path in debt_interval: a page left queued collects more remote frees per
// trip through the inbox (docs/benchmarks.md, section remote-cost).
TEST_F(BackPressure, OneAcquireSlowPathInDebtIntervalPaysASlice) {
  set_interval(4);
  inbox_fixture f(8, 12);
  ASSERT_EQ(f.pending(), 8u) << "one inbox entry per large block freed remotely";
  for (int i = 1; i <= 8; ++i) {
    f.slow_path();
    EXPECT_EQ(f.pending(), 8u - static_cast<unsigned>(i / 4)) << "after slow path " << i;
  }
}

TEST_F(BackPressure, AnIntervalOfOnePaysASliceOnEverySlowPath) {
  set_interval(1);
  inbox_fixture f(8, 12);
  ASSERT_EQ(f.pending(), 8u);
  for (int i = 1; i <= 8; ++i) {
    f.slow_path();
    EXPECT_EQ(f.pending(), 8u - static_cast<unsigned>(i)) << "after slow path " << i;
  }
}

// Growth does not wait for the turn: an acquire about to touch memory its class never
// used settles a slice first, whatever the interval, so a block freed remotely is reused
// before the heap grows.
TEST_F(BackPressure, AnAcquireThatWouldGrowSettlesASliceWhateverTheInterval) {
  set_interval(1024);
  inbox_fixture f(8, 2);
  ASSERT_EQ(f.pending(), 8u);
  f.slow_path(); // to the second page's freed block: no growth, no turn
  EXPECT_EQ(f.pending(), 8u);
  f.slow_path(); // no page holds a freed block: the class would grow
  EXPECT_EQ(f.pending(), 7u) << "the acquire grew its class without settling the inbox";
}

// --- watched pages ----------------------------------------------------------------------

namespace {

/// One page of `block`-byte blocks, all handed out from `zone`; block 0 is then freed by
/// another thread and its page settled by one reclaim step, so the page, which still has
/// blocks out, is watched: queued on the inbox again by its owner.
struct watched_page {
  ramalloc::heap zone;
  std::vector<void *> b;
  watched_page() {
    b.reserve(per_page);
    {
      ramalloc::heap_scope scope(zone);
      for (std::size_t i = 0; i < per_page; ++i)
        b.push_back(ramalloc::acquire(block));
    }
    std::thread([&] { ramalloc::discard(b[0]); }).join();
    zone.reclaim(1);
  }
  void free_remotely(std::size_t from, std::size_t to) {
    std::thread([&] {
      for (std::size_t i = from; i < to; ++i)
        ramalloc::discard(b[i]);
    }).join();
  }
};

} // namespace

// A page whose remote list gave blocks and which still has blocks out stays queued after
// its owner settles it, so the remote frees that follow are one CAS each and queue
// nothing new: without it, every reclaim step re-armed a push of the page by the next
// remote free (native prodcons: 19-25% of its remote frees; docs/benchmarks.md section
// remote-cost). Its entry is not debt: pending_debt stays 0, and the frees are collected
// later (here by flush) and never lost.
TEST(WatchedPage, RemoteFreesAfterASettleQueueNoNewDebt) {
  watched_page w;
  for (void *p : w.b)
    ASSERT_TRUE(in_page(p, w.b[0]));
  EXPECT_EQ(w.zone.get_stats().live_blocks, per_page - 1);
  EXPECT_EQ(w.zone.get_stats().pending_debt, 0u);
  w.free_remotely(1, 9);
  EXPECT_EQ(w.zone.get_stats().pending_debt, 0u)
      << "a remote free into a page its owner had just settled queued it again";
  w.zone.flush();
  EXPECT_EQ(w.zone.get_stats().live_blocks, per_page - 9);
  w.free_remotely(9, per_page);
  w.zone.flush();
  EXPECT_EQ(w.zone.get_stats().live_blocks, 0u);
}

// The delay does not hold memory back: a watched page whose remote list holds every block
// still out is payable at once, so the next reclaim step empties it.
TEST(WatchedPage, APageEmptiedByRemoteFreesIsCollectedByTheNextReclaimStep) {
  watched_page w;
  w.free_remotely(1, per_page);
  EXPECT_EQ(w.zone.reclaim(1), 0u);
  EXPECT_EQ(w.zone.get_stats().live_blocks, 0u)
      << "the owner's reclaim step left a fully freed page uncollected";
}
