// Bounded work: acquire and discard never loop more when the heap is bigger or has just
// freed a lot. Debug builds count the loop iterations inside each call; the maximum over
// an identical probe workload is the same with 10^3 live objects, with 10^6 live
// objects, and right after a 1 GiB burst of frees. Debt left by other threads' frees is
// paid by acquire only a fixed slice at a time: owing 1 GiB instead of 256 MiB makes no
// acquire loop longer, and most of it is still owed after thousands of acquires.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ramalloc_test;

namespace {

/// The size mix every phase uses: mostly small, some up to 8 KiB, a few medium.
[[maybe_unused]] std::size_t workload_size(rng &r) {
  const std::uint64_t pick = r.next() % 1000;
  if (pick < 950)
    return r.uniform(1, 256);
  if (pick < 995)
    return r.uniform(257, small_max);
  return r.uniform(small_max + 1, 64 * KiB);
}

[[maybe_unused]] void shuffle(std::vector<void *> &v, rng &r) {
  for (std::size_t i = v.size(); i > 1; --i)
    std::swap(v[i - 1], v[r.next() % i]);
}

/// Grows the background to `live` objects, allocating two for every one kept so the
/// heap is fragmented: half of every page's blocks are free again.
[[maybe_unused]] void grow_background(std::vector<void *> &background, std::size_t live, rng &r) {
  while (background.size() < live) {
    void *keep = ramalloc::acquire(workload_size(r));
    void *drop = ramalloc::acquire(workload_size(r));
    ASSERT_NE(keep, nullptr);
    ASSERT_NE(drop, nullptr);
    background.push_back(keep);
    ramalloc::discard(drop);
  }
}

/// The measured workload, identical in every phase: allocate n objects, free half of them
/// in random order, allocate n/2 more, free everything in random order.
[[maybe_unused]] void probe(std::vector<void *> &scratch, std::size_t n = 100'000) {
  rng r(12345);
  scratch.clear();
  for (std::size_t i = 0; i < n; ++i)
    scratch.push_back(ramalloc::acquire(workload_size(r)));
  shuffle(scratch, r);
  for (std::size_t i = 0; i < n / 2; ++i) {
    ramalloc::discard(scratch.back());
    scratch.pop_back();
  }
  for (std::size_t i = 0; i < n / 2; ++i)
    scratch.push_back(ramalloc::acquire(workload_size(r)));
  shuffle(scratch, r);
  std::size_t null_blocks = 0;
  for (void *p : scratch) {
    null_blocks += p == nullptr;
    ramalloc::discard(p);
  }
  scratch.clear();
  EXPECT_EQ(null_blocks, 0u);
}

[[maybe_unused]] std::string describe(const ramalloc::step_counts &s) {
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
  for (void *p : burst)
    ramalloc::discard(p);
  probe(scratch);
  const ramalloc::step_counts after_burst = ramalloc::max_steps();

  std::printf("max steps with 10^3 live: %s; with 10^6 live: %s; after 1 GiB burst free "
              "(%zu blocks): %s\n",
              describe(thousand).c_str(), describe(million).c_str(), burst.size(),
              describe(after_burst).c_str());
  EXPECT_EQ(million.max_acquire_steps, thousand.max_acquire_steps);
  EXPECT_EQ(after_burst.max_acquire_steps, thousand.max_acquire_steps);
  // A discard that empties a page retires it, and may evict the oldest cached page or
  // pay one auto-purge step (when purge_delay passed, which depends on the machine's
  // speed): each clears the slice table of the span it frees, one step per slice. So a
  // discard's maximum may exceed the baseline by the slices of the largest page this
  // workload uses (64 KiB blocks, eight per page: 8 slices) and one cached page — a
  // constant, whatever the live count or history.
  constexpr std::uint64_t one_page_retired = 8 + 1;
  EXPECT_LE(million.max_discard_steps, thousand.max_discard_steps + one_page_retired);
  EXPECT_LE(after_burst.max_discard_steps, thousand.max_discard_steps + one_page_retired);

  for (void *p : background)
    ramalloc::discard(p);
#endif
}

namespace {

/// Allocates `bytes` of the workload on this thread, then frees every block, in
/// allocation order, from another thread: each page becomes debt of this heap, paid by
/// reclaim or, a fixed slice per slow path, by acquire. The same seed gives the same
/// sequence, so a smaller burst is exactly the beginning of a larger one.
[[maybe_unused]] void remote_burst(std::size_t bytes) {
  rng r(2024);
  std::vector<void *> blocks;
  blocks.reserve(bytes / 200);
  std::size_t total = 0;
  while (total < bytes) {
    const std::size_t size = workload_size(r);
    void *p = ramalloc::acquire(size);
    ASSERT_NE(p, nullptr);
    blocks.push_back(p);
    total += size;
  }
  std::thread([&] {
    for (void *p : blocks)
      ramalloc::discard(p);
  }).join();
}

} // namespace

TEST(BoundedSteps, AcquireStepsDoNotGrowWithTheDebtOwedAndPayOnlyASliceOfIt) {
#ifndef RAMALLOC_DEBUG
  GTEST_SKIP() << "the loop-step counters exist only in Debug builds (RAMALLOC_DEBUG); "
                  "build with `cmake --preset debug` to run this test";
#else
  // Small enough that neither burst's debt is paid off during the probe, so every slow
  // path of the probe finds debt in both phases.
  constexpr std::size_t probe_size = 5'000;
  std::vector<void *> scratch;
  scratch.reserve(probe_size * 3 / 2);

  // Both phases start from the same state: a heap that has been used and flushed.
  remote_burst(256 * MiB);
  ASSERT_FALSE(HasFatalFailure());
  ramalloc::flush();

  remote_burst(256 * MiB);
  ASSERT_FALSE(HasFatalFailure());
  const std::size_t quarter_owed = ramalloc::reclaim(0);
  ramalloc::reset_max_steps();
  probe(scratch, probe_size);
  const ramalloc::step_counts quarter = ramalloc::max_steps();
  const std::size_t quarter_left = ramalloc::reclaim(0);
  ramalloc::flush();
  ASSERT_EQ(ramalloc::reclaim(0), 0u);

  remote_burst(1 * GiB);
  ASSERT_FALSE(HasFatalFailure());
  const std::size_t whole_owed = ramalloc::reclaim(0);
  ramalloc::reset_max_steps();
  probe(scratch, probe_size);
  const ramalloc::step_counts whole = ramalloc::max_steps();
  const std::size_t whole_left = ramalloc::reclaim(0);

  std::printf("256 MiB of remote frees: %zu units owed, max steps %s, %zu units left; "
              "1 GiB: %zu owed, max steps %s, %zu left\n",
              quarter_owed, describe(quarter).c_str(), quarter_left, whole_owed,
              describe(whole).c_str(), whole_left);
  ASSERT_GT(quarter_left, quarter_owed / 2) << "the probe paid most of the debt: make it smaller";
  EXPECT_GT(whole_owed, 3 * quarter_owed);
  // The maximum depends on incidental page states (e.g. whether a probe allocation
  // happens to extend a fresh page), so it need not be equal; it must not grow with the
  // debt: at most one lazy extension (128 links) apart. (With the override linked in, the
  // harness's own allocations shift page boundaries: issue 12 saw one phase extend a fresh
  // page and the other not.)
  constexpr std::uint64_t one_extension = 128;
  EXPECT_LE(whole.max_acquire_steps, quarter.max_acquire_steps + one_extension);
  EXPECT_LE(whole.max_discard_steps, quarter.max_discard_steps);
  // 5000 acquires paid a bounded slice each: most of the 1 GiB of debt is still owed.
  EXPECT_GT(whole_left, whole_owed / 2);
  ramalloc::flush();
#endif
}

namespace {

/// Restores the options a test changed.
class options_guard {
public:
  options_guard() : saved_(ramalloc::get_options()) {}
  ~options_guard() { ramalloc::set_options(saved_); }
  options_guard(const options_guard &) = delete;
  options_guard &operator=(const options_guard &) = delete;
  const ramalloc::options &saved() const { return saved_; }

private:
  ramalloc::options saved_;
};

constexpr std::size_t pattern_size = 64;
constexpr std::size_t pattern_per_page = 64 * KiB / pattern_size;

[[maybe_unused]] std::size_t pages_for(std::size_t objects) {
  return (objects + pattern_per_page - 1) / pattern_per_page;
}

/// Remote frees interleaved with allocation (issue 8, item 1): `pages` pages of one class
/// are taken back from their remote lists by the allocation slow path while their inbox
/// entries still wait behind other debt, then run out; paying the debt afterwards must
/// not line them up, empty, in front of the next allocation. Returns the maximum steps
/// of one acquire made right after the debt is paid.
[[maybe_unused]] std::uint64_t exhausted_pages_after_settling(std::size_t pages) {
  options_guard guard;
  const std::uint32_t slice = guard.saved().debt_slice;
  // Large blocks (one span each, one touched OS page) make debt that sits in the inbox
  // ahead of the pages below: each slow path pays `slice` units of it. Containers are
  // reserved and threads started outside the zone's scopes: with the override linked,
  // their memory would otherwise come from the zone.
  std::vector<void *> ahead(2 * pages * slice + 16);
  std::vector<void *> blocks(pages * pattern_per_page); // page i: blocks[i*per_page, ...)
  ramalloc::heap zone;
  {
    ramalloc::heap_scope scope(zone);
    for (void *&p : ahead)
      p = ramalloc::acquire(300 * KiB);
    for (void *&p : blocks)
      p = ramalloc::acquire(pattern_size);
  }
  std::thread([&] {
    for (void *p : ahead)
      ramalloc::discard(p);
    for (std::size_t i = 0; i < pages; ++i)
      ramalloc::discard(blocks[i * pattern_per_page + 1]);
  }).join();
  std::uint64_t steps = 0;
  {
    ramalloc::heap_scope scope(zone);
    // Each page gets one local block back, so each becomes the front page in turn: the
    // slow path then takes its remote list (one block) while its inbox entry waits.
    for (std::size_t i = 0; i < pages; ++i)
      ramalloc::discard(blocks[i * pattern_per_page]);
    for (std::size_t i = 0; i < 2 * pages; ++i)
      blocks[i % pages * pattern_per_page + i / pages] = ramalloc::acquire(pattern_size);
    while (zone.reclaim(1'000'000) != 0) {
    }
    ramalloc::reset_max_steps();
    void *probe_block = ramalloc::acquire(pattern_size);
    steps = ramalloc::max_steps().max_acquire_steps;
    ramalloc::discard(probe_block);
  }
  zone.release_all();
  return steps;
}

/// Reuse of idle pages (issue 8, item 2): every page of one class emptied while it was
/// the current page (so it joined the idle list), then filled again (its idle entry is
/// now stale). Returns the maximum steps of one acquire slow path that pays a purge step.
[[maybe_unused]] std::uint64_t stale_idle_entries(std::size_t pages) {
  options_guard guard;
  ramalloc::options o = guard.saved();
  o.auto_purge = false; // build the pattern without any purge step
  ramalloc::set_options(o);
  ramalloc::heap zone;
  ramalloc::heap_scope scope(zone);
  for (std::size_t i = 0; i < pages; ++i) {
    void *t = ramalloc::acquire(pattern_size); // a fresh page becomes current
    ramalloc::discard(t);                      // empty again: it joins the idle list
    for (std::size_t j = 0; j < pattern_per_page; ++j)
      ramalloc::acquire(pattern_size); // refilled: the idle entry is stale
  }
  o.auto_purge = true;
  o.purge_delay_ms = 0;
  ramalloc::set_options(o);
  ramalloc::reset_max_steps();
  void *probe_block = ramalloc::acquire(pattern_size); // the last page is full: slow path
  const std::uint64_t steps = ramalloc::max_steps().max_acquire_steps;
  ramalloc::discard(probe_block);
  zone.release_all();
  return steps;
}

/// The steps `scenario` measures with 10^3 and with 10^6 objects' worth of pages: equal.
[[maybe_unused]] void expect_steps_do_not_grow(std::uint64_t (*scenario)(std::size_t pages),
                                               const char *what) {
  const std::uint64_t thousand = scenario(pages_for(1'000));
  const std::uint64_t million = scenario(pages_for(1'000'000));
  std::printf("%s: %llu steps (10^3 live), %llu steps (10^6 live)\n", what,
              static_cast<unsigned long long>(thousand), static_cast<unsigned long long>(million));
  EXPECT_EQ(million, thousand) << what;
}

} // namespace

TEST(BoundedSteps, PayingDebtNeverLinesUpExhaustedPagesForAcquire) {
#ifndef RAMALLOC_DEBUG
  GTEST_SKIP() << "the loop-step counters exist only in Debug builds (RAMALLOC_DEBUG)";
#else
  expect_steps_do_not_grow(exhausted_pages_after_settling, "acquire after paying debt");
#endif
}

TEST(BoundedSteps, StaleIdleEntriesNeverMakeAPurgeStepLonger) {
#ifndef RAMALLOC_DEBUG
  GTEST_SKIP() << "the loop-step counters exist only in Debug builds (RAMALLOC_DEBUG)";
#else
  expect_steps_do_not_grow(stale_idle_entries, "acquire paying a purge step");
#endif
}
