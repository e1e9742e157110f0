// Auto purge: a heap whose owner never calls reclaim (a program under LD_PRELOAD, say)
// still returns free memory, one purge step of at most purge_budget bytes per acquire
// slow path, once purge_delay has passed since its last reclaim (or at once if it never
// reclaimed). Dirty memory beyond the cap (4 budgets, or twice its other committed memory)
// is purged without waiting for the delay. A free never purges: it sends the heap's next
// acquires to the slow path, which pays. Owners that reclaim never get it: their reclaim
// steps pay the same cap (ReclaimDirtyCap below).
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

using namespace ramalloc_test;

namespace {

struct outcome {
  std::uint64_t purged = 0;
  std::uint64_t largest_step = 0;
};

/// On a fresh thread (its own heap, never calling reclaim): 64 MiB of 32 KiB blocks,
/// freed, then after purge_delay a stream of small allocations and frees, each of which
/// may take a slow path.
outcome run_without_reclaim() {
  outcome o;
  std::thread([&] {
    // The thread's heap may have served an earlier thread (its counters go on): count
    // from here.
    const std::uint64_t first = ramalloc::current_heap().get_stats().bytes_purged;
    std::vector<void *> blocks(2048);
    for (void *&p : blocks)
      p = ramalloc::acquire(32 * KiB);
    for (void *p : blocks)
      ramalloc::discard(p);
    const auto delay = std::chrono::milliseconds(ramalloc::get_options().purge_delay_ms + 5);
    std::this_thread::sleep_for(delay); // the specified idle time, not a race
    std::uint64_t last = ramalloc::current_heap().get_stats().bytes_purged;
    // Each acquire and each discard is one operation: none may purge more than the budget.
    auto step = [&] {
      const std::uint64_t now = ramalloc::current_heap().get_stats().bytes_purged;
      o.largest_step = std::max(o.largest_step, now - last);
      last = now;
    };
    for (int i = 0; i < 20000; ++i) {
      void *p = ramalloc::acquire(16 + (i % 64) * 48);
      step();
      ramalloc::discard(p);
      step();
    }
    o.purged = last - first;
    blocks.clear();
  }).join();
  return o;
}

struct burst_outcome {
  std::uint64_t committed_filled = 0, committed_after_frees = 0, committed_after_serving = 0;
  std::uint64_t purged_by_frees = 0, largest_step = 0;
};

/// On a new heap (its owner has never reclaimed): 64 MiB of 1 KiB blocks, then all of
/// them freed in allocation order (a cache dropped at once), then a server's steady work:
/// a ring of small blocks, each step freeing the oldest and allocating one, which reuses
/// the blocks it frees and so never needs a slow path of its own. Every operation's purge
/// is measured. `reclaim_first`: the owner calls reclaim(0) before the frees, as an owner
/// with an event loop does.
burst_outcome run_burst_free(bool reclaim_first) {
  burst_outcome o;
  std::vector<void *> blocks(64 * 1024); // before the scope: not from the heap under test
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  void *ring[64];
  for (void *&p : ring)
    p = ramalloc::acquire(48);
  for (void *&p : blocks)
    p = ramalloc::acquire(1 * KiB);
  if (reclaim_first)
    h.reclaim(0);
  o.committed_filled = h.get_stats().committed_bytes;
  const std::uint64_t first = h.get_stats().bytes_purged;
  std::uint64_t last = first;
  auto step = [&] {
    const std::uint64_t now = h.get_stats().bytes_purged;
    o.largest_step = std::max(o.largest_step, now - last);
    last = now;
  };
  for (void *p : blocks) {
    ramalloc::discard(p);
    step();
  }
  o.committed_after_frees = h.get_stats().committed_bytes;
  o.purged_by_frees = last - first;
  for (int i = 0; i < 4096; ++i) {
    void *&slot = ring[i % 64];
    ramalloc::discard(slot);
    step();
    slot = ramalloc::acquire(48);
    step();
  }
  o.committed_after_serving = h.get_stats().committed_bytes;
  for (void *p : ring)
    ramalloc::discard(p);
  return o;
}

/// Options for the burst tests: a purge delay no test run reaches, so only the cap can
/// purge while the frees run.
void set_burst_options() {
  ramalloc::options opts = ramalloc::get_options();
  opts.auto_purge = true;
  opts.purge_delay_ms = 3600 * 1000;
  opts.purge_budget = 256 * KiB;
  ramalloc::set_options(opts);
}

} // namespace

TEST(AutoPurge, ABurstOfFreesNeverCallsTheOs) {
  set_burst_options();
  const burst_outcome o = run_burst_free(false);
  ASSERT_GE(o.committed_filled, 64 * MiB);
  // The frees only leave the purge owed: the madvise calls are the acquires' to pay.
  EXPECT_EQ(o.purged_by_frees, 0u) << "a free called madvise";
  EXPECT_GE(o.committed_after_frees, 60 * MiB);
}

TEST(AutoPurge, DroppedDataGoesBackAsTheHeapAllocatesAgainWithoutWaitingForTheDelay) {
  set_burst_options();
  const burst_outcome o = run_burst_free(false);
  ASSERT_GE(o.committed_filled, 64 * MiB);
  // The cap is 4 budgets (1 MiB) here: what stays committed is that, at most one budget
  // more, and a few empty pages waiting in the cache or idle for reuse. The serving loop
  // takes no slow path of its own: the frees sent its acquires there.
  EXPECT_LE(o.committed_after_serving, 3 * MiB) << "freed memory stayed resident until the delay";
  EXPECT_LE(o.largest_step, 256 * KiB) << "one operation purged more than purge_budget";
}

TEST(AutoPurge, OwnerThatReclaimsKeepsItsFreeMemoryForItsOwnSteps) {
  set_burst_options();
  const burst_outcome o = run_burst_free(true);
  // No auto purge within purge_delay of a reclaim: the frees and acquires leave the memory
  // dirty for the owner's own reclaim steps (ReclaimDirtyCap: they pay it).
  EXPECT_GE(o.committed_after_serving, 60 * MiB);
  EXPECT_EQ(o.largest_step, 0u);
}

TEST(AutoPurge, AnAdoptedHeapIsJudgedOnItsNewOwnersReclaimsNotOnItsDeadOwners) {
  // A thread that reclaimed moments before it exited leaves its heap (one live block:
  // orphaned, not pooled) to the next thread, which never reclaims. What it frees is
  // auto-purged by its next acquires like any other never-reclaiming owner's, not held
  // back for purge_delay after the dead owner's last reclaim.
  set_burst_options();
  ramalloc::flush();
  ASSERT_EQ(ramalloc::get_stats().heaps_orphaned, 0u);
  void *kept = nullptr;
  const void *first = nullptr;
  std::thread([&] {
    kept = ramalloc::acquire(64);
    first = ramalloc::current_heap().id();
    ramalloc::reclaim(0);
  }).join();
  ASSERT_EQ(ramalloc::get_stats().heaps_orphaned, 1u);

  const void *adopter = nullptr;
  std::uint64_t committed_filled = 0, committed_after = 0;
  std::thread([&] {
    std::vector<void *> blocks(64 * 1024);
    ramalloc::heap &h = ramalloc::current_heap();
    adopter = h.id();
    for (void *&p : blocks)
      p = ramalloc::acquire(1 * KiB);
    committed_filled = h.get_stats().committed_bytes;
    for (void *p : blocks)
      ramalloc::discard(p);
    // Frees never madvise: the owner's next acquires pay what the frees left owed.
    void *ring[64] = {};
    for (int i = 0; i < 4096; ++i) {
      void *&slot = ring[i % 64];
      ramalloc::discard(slot);
      slot = ramalloc::acquire(48);
    }
    committed_after = h.get_stats().committed_bytes;
    for (void *p : ring)
      ramalloc::discard(p);
  }).join();
  ramalloc::discard(kept);
  ramalloc::flush();

  ASSERT_EQ(adopter, first) << "the second thread did not adopt the orphan";
  ASSERT_GE(committed_filled, 64 * MiB);
  EXPECT_LE(committed_after, 3 * MiB)
      << "the adopter's frees stayed resident: it inherited its dead owner's reclaim time";
}

TEST(AutoPurge, HeapThatNeverReclaimsStillReturnsMemoryInBudgetedSteps) {
  ramalloc::options opts = ramalloc::get_options();
  opts.auto_purge = true;
  opts.purge_delay_ms = 20;
  opts.purge_budget = 256 * KiB;
  ramalloc::set_options(opts);
  const outcome o = run_without_reclaim();
  EXPECT_GT(o.purged, 0u) << "nothing went back to the OS";
  EXPECT_LE(o.largest_step, 256 * KiB) << "one allocation purged more than purge_budget";
}

TEST(AutoPurge, OffMeansOnlyReclaimPurges) {
  ramalloc::options opts = ramalloc::get_options();
  opts.auto_purge = false;
  opts.purge_delay_ms = 20;
  ramalloc::set_options(opts);
  EXPECT_EQ(run_without_reclaim().purged, 0u);
}

namespace {

struct reclaim_outcome {
  std::uint64_t committed_filled = 0, committed_after = 0;
  std::size_t owed_after_frees = 0, owed_at_end = 0;
  std::uint64_t largest_step = 0;
  unsigned steps = 0;
};

/// On a new heap whose owner reclaims from its loop: 64 MiB of 1 KiB blocks, all freed
/// at once, then reclaim(4) steps (and nothing else) until one reports nothing payable,
/// at most 1024 of them. Every step's purge is measured.
reclaim_outcome run_reclaim_after_burst() {
  reclaim_outcome o;
  std::vector<void *> blocks(64 * 1024); // before the scope: not from the heap under test
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);
  for (void *&p : blocks)
    p = ramalloc::acquire(1 * KiB);
  h.reclaim(0);
  o.committed_filled = h.get_stats().committed_bytes;
  for (void *p : blocks)
    ramalloc::discard(p);
  o.owed_after_frees = h.reclaim(0);
  std::uint64_t last = h.get_stats().bytes_purged;
  std::size_t owed = o.owed_after_frees;
  while (owed != 0 && o.steps < 1024) {
    owed = h.reclaim(4);
    ++o.steps;
    const std::uint64_t now = h.get_stats().bytes_purged;
    o.largest_step = std::max(o.largest_step, now - last);
    last = now;
  }
  o.owed_at_end = owed;
  o.committed_after = h.get_stats().committed_bytes;
  return o;
}

} // namespace

TEST(ReclaimDirtyCap, ReclaimStepsPayDirtyMemoryBeyondTheCapWithoutWaitingForTheDelay) {
  // An event loop that reclaims every iteration gets no auto purge; its own steps must
  // give back what a burst of frees left beyond the dirty cap, as auto purge does for a
  // heap that never reclaims, not hold it for purge_delay (a delay this test never
  // reaches). Before, frag under --native kept 160 MiB where LD_PRELOAD kept 105.
  set_burst_options();
  const reclaim_outcome o = run_reclaim_after_burst();
  ASSERT_GE(o.committed_filled, 64 * MiB);
  EXPECT_GT(o.owed_after_frees, 0u) << "reclaim(0) did not report the purge as payable";
  // The cap is 4 budgets (1 MiB) here: what stays committed is that, at most one budget
  // more, and a few empty pages waiting in the cache or idle for reuse.
  EXPECT_LE(o.committed_after, 3 * MiB) << "freed memory stayed resident until the delay";
  EXPECT_EQ(o.owed_at_end, 0u) << "reclaim still reports debt after " << o.steps << " steps";
  EXPECT_LE(o.largest_step, 256 * KiB) << "one reclaim step purged more than purge_budget";
}
