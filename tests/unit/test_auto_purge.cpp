// Auto purge: a heap whose owner never calls reclaim (a program under LD_PRELOAD, say)
// still returns free memory, one purge step of at most purge_budget bytes per slow path,
// once purge_delay has passed since its last reclaim. Owners that reclaim never get it.
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
    o.purged = last;
    blocks.clear();
  }).join();
  return o;
}

} // namespace

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
