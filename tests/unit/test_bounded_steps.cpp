// Bounded work: acquire and discard never loop more when the heap is bigger or has just
// freed a lot. Debug builds count the loop iterations inside each call; the maximum over
// an identical probe workload is the same with 10^3 live objects, with 10^6 live
// objects, and right after a 1 GiB burst of frees.
#include "test_support.hpp"

#include <gtest/gtest.h>

using namespace ramalloc_test;

namespace {

/// The size mix every phase uses: mostly small, some up to 8 KiB, a few medium.
std::size_t workload_size(rng &r) {
  const std::uint64_t pick = r.next() % 1000;
  if (pick < 950) return r.uniform(1, 256);
  if (pick < 995) return r.uniform(257, small_max);
  return r.uniform(small_max + 1, 64 * KiB);
}

void shuffle(std::vector<void *> &v, rng &r) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[r.next() % i]);
}

/// Grows the background to `live` objects, allocating two for every one kept so the
/// heap is fragmented: half of every page's blocks are free again.
void grow_background(std::vector<void *> &background, std::size_t live, rng &r) {
  while (background.size() < live) {
    void *keep = ramalloc::acquire(workload_size(r));
    void *drop = ramalloc::acquire(workload_size(r));
    ASSERT_NE(keep, nullptr);
    ASSERT_NE(drop, nullptr);
    background.push_back(keep);
    ramalloc::discard(drop);
  }
}

/// The measured workload, identical in every phase: allocate 10^5 objects, free half of
/// them in random order, allocate 5*10^4 more, free everything in random order.
void probe(std::vector<void *> &scratch) {
  rng r(12345);
  scratch.clear();
  for (int i = 0; i < 100'000; ++i) scratch.push_back(ramalloc::acquire(workload_size(r)));
  shuffle(scratch, r);
  for (int i = 0; i < 50'000; ++i) {
    ramalloc::discard(scratch.back());
    scratch.pop_back();
  }
  for (int i = 0; i < 50'000; ++i) scratch.push_back(ramalloc::acquire(workload_size(r)));
  shuffle(scratch, r);
  std::size_t null_blocks = 0;
  for (void *p : scratch) {
    null_blocks += p == nullptr;
    ramalloc::discard(p);
  }
  scratch.clear();
  EXPECT_EQ(null_blocks, 0u);
}

std::string describe(const ramalloc::step_counts &s) {
  return "acquire " + std::to_string(s.max_acquire_steps) + ", discard " +
         std::to_string(s.max_discard_steps);
}

} // namespace

TEST(BoundedSteps, AcquireAndDiscardMaximaDoNotGrowWithLiveObjectsOrAfterABurstFree) {
#ifndef RAMALLOC_DEBUG
  GTEST_SKIP() << "the loop-step counters exist only in Debug builds (RAMALLOC_DEBUG); "
                  "build with `cmake --preset debug` to run this test";
#else
  std::vector<void *> background;
  background.reserve(1'000'000);
  std::vector<void *> scratch;
  scratch.reserve(150'000);
  rng r(99);

  // Phase 1: 10^3 live objects.
  grow_background(background, 1'000, r);
  ASSERT_FALSE(HasFatalFailure());
  ramalloc::reset_max_steps();
  probe(scratch);
  const ramalloc::step_counts thousand = ramalloc::max_steps();
  ASSERT_GT(thousand.max_acquire_steps + thousand.max_discard_steps, 0u)
      << "debug build, but the step counters counted nothing";

  // Phase 2: 10^6 live objects.
  grow_background(background, 1'000'000, r);
  ASSERT_FALSE(HasFatalFailure());
  ramalloc::reset_max_steps();
  probe(scratch);
  const ramalloc::step_counts million = ramalloc::max_steps();

  // Phase 3: 1 GiB allocated on top, then freed in one burst; the frees themselves and
  // the probe right after them are measured.
  std::vector<void *> burst;
  burst.reserve(4'000'000);
  std::size_t burst_bytes = 0;
  while (burst_bytes < 1 * GiB) {
    const std::size_t size = workload_size(r);
    void *p = ramalloc::acquire(size);
    ASSERT_NE(p, nullptr);
    burst.push_back(p);
    burst_bytes += size;
  }
  shuffle(burst, r);
  ramalloc::reset_max_steps();
  for (void *p : burst) ramalloc::discard(p);
  probe(scratch);
  const ramalloc::step_counts after_burst = ramalloc::max_steps();

  std::printf("max steps with 10^3 live: %s; with 10^6 live: %s; after 1 GiB burst free "
              "(%zu blocks): %s\n",
              describe(thousand).c_str(), describe(million).c_str(), burst.size(),
              describe(after_burst).c_str());
  EXPECT_EQ(million.max_acquire_steps, thousand.max_acquire_steps);
  EXPECT_EQ(million.max_discard_steps, thousand.max_discard_steps);
  EXPECT_EQ(after_burst.max_acquire_steps, thousand.max_acquire_steps);
  EXPECT_EQ(after_burst.max_discard_steps, thousand.max_discard_steps);

  for (void *p : background) ramalloc::discard(p);
#endif
}
