// The fast mode's double-free canary is a hint, never a verdict: a live block whose bytes
// 4..7 happen to hold its canary value (a 1-in-2^31 chance per free for any data) is
// freed like any other. A free that finds the canary is confirmed against the page's free
// lists by the block's owner: at the call when the caller owns the block, otherwise at the
// owner's next slow path or reclaim step (the block waits, parked, in the owner's heap).
// Real double frees are still reported, and nothing is handed out twice.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace ramalloc::detail {
/// The canary a free block of ramalloc's fast mode carries in bytes 4..7 (mem/heap.cpp).
std::uint32_t free_block_mark(const void *p) noexcept;
} // namespace ramalloc::detail

using namespace ramalloc_test;

namespace {

// Sizes of each kind: the 8-byte class (the smallest with a canary), small, a page, medium
// (two sizes) and a large span.
const std::size_t sizes[] = {8, 1000, 4 * KiB, 40 * KiB, 256 * KiB, 1 * MiB};

/// Writes the value a free block of `p` would hold: the data a user may store by chance.
void write_its_canary(void *p) {
  const std::uint32_t mark = ramalloc::detail::free_block_mark(p);
  std::memcpy(static_cast<std::byte *>(p) + 4, &mark, sizeof mark);
}

class Canary : public testing::Test {
protected:
  error_recorder errors{ramalloc::options::on_invalid_mode::warn};

  void expect_no_report() {
    const auto reports = errors.reports();
    EXPECT_EQ(reports.size(), 0u) << "unexpected " << error_name(reports[0].error) << ": "
                                  << reports[0].message;
    errors.clear();
  }
};

} // namespace

TEST_F(Canary, ALiveBlockHoldingItsCanaryIsFreedByItsOwner) {
  for (std::size_t size : sizes) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    ramalloc::heap zone;
    void *keep = zone.acquire(size); // so the page stays (the block is not its last)
    void *p = zone.acquire(size);
    ASSERT_NE(p, nullptr);
    write_its_canary(p);
    {
      ramalloc::heap_scope scope(zone); // the zone's owner frees it: a local free
      ramalloc::discard(p);
    }
    expect_no_report();
    EXPECT_EQ(zone.get_stats().live_blocks, 1u) << "the block was not freed";
    void *again = zone.acquire(size); // LIFO: the block just freed comes back first
    EXPECT_EQ(again, p);
    zone.release_all();
    (void)keep;
  }
}

TEST_F(Canary, ALiveBlockHoldingItsCanaryIsFreedByAnotherThread) {
  for (std::size_t size : sizes) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    ramalloc::heap zone;
    std::vector<void *> blocks;
    for (int i = 0; i < 8; ++i)
      blocks.push_back(zone.acquire(size));
    for (void *p : blocks)
      write_its_canary(p);
    // The calling thread's own heap is not the zone: each discard is a remote free.
    for (void *p : blocks)
      ramalloc::discard(p);
    zone.flush(); // the owner settles its debt, parked frees included
    expect_no_report();
    EXPECT_EQ(zone.get_stats().live_blocks, 0u) << "a block freed remotely stayed live";
    EXPECT_EQ(zone.get_stats().pending_debt, 0u);
    // Every block came back once: a fresh round hands out eight distinct blocks.
    std::set<void *> seen;
    for (int i = 0; i < 8; ++i)
      EXPECT_TRUE(seen.insert(zone.acquire(size)).second) << "a block was handed out twice";
    zone.release_all();
  }
}

TEST_F(Canary, AParkedRemoteFreeIsPendingDebtUntilTheOwnerSettlesIt) {
  ramalloc::heap zone;
  void *keep = zone.acquire(64);
  void *p = zone.acquire(64);
  write_its_canary(p);
  ramalloc::discard(p); // remote: only the owner can tell whether p is already free
  EXPECT_GT(zone.get_stats().pending_debt, 0u);
  EXPECT_EQ(zone.get_stats().live_blocks, 2u);
  while (zone.reclaim(1) != 0) {
  }
  expect_no_report();
  EXPECT_EQ(zone.get_stats().live_blocks, 1u);
  ramalloc::discard(keep);
  zone.flush();
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}

TEST_F(Canary, ReallocOfALiveBlockHoldingItsCanaryMovesIt) {
  ramalloc::heap zone;
  void *moved = nullptr;
  void *p = zone.acquire(48);
  std::memset(p, 0x3c, 48);
  write_its_canary(p);
  std::uint32_t mark;
  std::memcpy(&mark, static_cast<std::byte *>(p) + 4, sizeof mark);
  {
    ramalloc::heap_scope scope(zone);
    moved = ram_realloc(p, 4000);
  }
  expect_no_report();
  ASSERT_NE(moved, nullptr);
  std::uint32_t seen;
  std::memcpy(&seen, static_cast<std::byte *>(moved) + 4, sizeof seen);
  EXPECT_EQ(seen, mark) << "realloc did not carry the data over";
  zone.release_all();
}

TEST_F(Canary, ARemoteDoubleFreeBehindOtherFreesIsReportedByTheOwnerAndChangesNothing) {
  for (std::size_t size : sizes) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    ramalloc::heap zone;
    void *a = zone.acquire(size);
    void *b = zone.acquire(size);
    void *c = zone.acquire(size);
    ramalloc::discard(a); // three remote frees, then a again
    ramalloc::discard(b);
    ramalloc::discard(a);
    zone.flush(); // the owner confirms the parked free: a was free already
    const auto reports = errors.reports();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].error, RAM_ERROR_DOUBLE_FREE) << reports[0].message;
    EXPECT_EQ(reports[0].pointer, a);
    errors.clear();
    EXPECT_EQ(zone.get_stats().live_blocks, 1u);
    // Nothing was listed twice: two acquires give two blocks, neither of them c.
    void *x = zone.acquire(size);
    void *y = zone.acquire(size);
    EXPECT_NE(x, y);
    EXPECT_NE(x, c);
    EXPECT_NE(y, c);
    zone.release_all();
  }
}

TEST_F(Canary, ALocalDoubleFreeBehindOtherFreesIsReportedAtTheCall) {
  for (std::size_t size : sizes) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    ramalloc::heap zone;
    void *keep = zone.acquire(size);
    void *a = zone.acquire(size);
    void *b = zone.acquire(size);
    {
      ramalloc::heap_scope scope(zone);
      ramalloc::discard(a);
      ramalloc::discard(b);
      ramalloc::discard(a);
    }
    const auto reports = errors.reports();
    ASSERT_EQ(reports.size(), 1u);
    // A large span goes back at once: its second free may find no block there at all.
    const bool large = size > 256 * KiB;
    EXPECT_TRUE(reports[0].error == RAM_ERROR_DOUBLE_FREE ||
                (large && reports[0].error == RAM_ERROR_INVALID_FREE))
        << reports[0].message;
    EXPECT_EQ(reports[0].pointer, a);
    errors.clear();
    EXPECT_EQ(zone.get_stats().live_blocks, 1u);
    zone.release_all();
    (void)keep;
  }
}

TEST_F(Canary, ParkedFreesRacingTheOwnersOwnTrafficAreAllSettledOnce) {
  // One thread frees blocks that hold their canary, a batch at a time, while their owner
  // keeps allocating, freeing and reclaiming in the same pages: every block comes back
  // exactly once. (Batches of 8: a thread parks at most parked_slots frees per heap.)
  constexpr int batches = 100, batch = 8;
  ramalloc::heap zone;
  std::vector<void *> handed(batches * batch);
  for (void *&p : handed) {
    p = zone.acquire(24);
    write_its_canary(p);
  }
  std::vector<void *> churn(64, nullptr);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> owner_rounds{0};
  std::thread freer([&] {
    for (int b = 0; b < batches; ++b) {
      for (int i = 0; i < batch; ++i)
        ramalloc::discard(handed[b * batch + i]); // remote here: parked for the owner
      // Two owner rounds later, a whole reclaim(16) began after this batch was parked.
      const std::uint64_t seen = owner_rounds.load(std::memory_order_acquire);
      while (owner_rounds.load(std::memory_order_acquire) < seen + 2) {
      }
    }
    done.store(true, std::memory_order_release);
  });
  {
    ramalloc::heap_scope scope(zone); // this thread is the owner meanwhile
    for (std::size_t i = 0; !done.load(std::memory_order_acquire); ++i) {
      void *&slot = churn[i % churn.size()];
      ramalloc::discard(slot);
      slot = ramalloc::acquire(24);
      ramalloc::reclaim(16);
      owner_rounds.fetch_add(1, std::memory_order_release);
    }
    for (void *&slot : churn) {
      ramalloc::discard(slot);
      slot = nullptr;
    }
  }
  freer.join();
  zone.flush();
  expect_no_report();
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
  EXPECT_EQ(zone.get_stats().pending_debt, 0u);
}

TEST_F(Canary, WhenSixteenFreesWaitForTheOwnerTheNextIsReportedAndChangesNothing) {
  ramalloc::heap zone;
  std::vector<void *> blocks(17);
  for (void *&p : blocks) {
    p = zone.acquire(40);
    write_its_canary(p);
  }
  for (int i = 0; i < 16; ++i)
    ramalloc::discard(blocks[i]); // remote, parked: the slots fill up
  expect_no_report();
  ramalloc::discard(blocks[16]);
  const auto reports = errors.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].error, RAM_ERROR_DOUBLE_FREE);
  EXPECT_EQ(reports[0].pointer, blocks[16]);
  EXPECT_NE(reports[0].message.find("looks already free"), std::string::npos) << reports[0].message;
  errors.clear();
  zone.flush(); // the sixteen are confirmed live and freed; the seventeenth stays live
  expect_no_report();
  EXPECT_EQ(zone.get_stats().live_blocks, 1u);
  {
    ramalloc::heap_scope scope(zone);
    ramalloc::discard(blocks[16]); // its owner frees it: confirmed at the call
  }
  expect_no_report();
  EXPECT_EQ(zone.get_stats().live_blocks, 0u);
}
