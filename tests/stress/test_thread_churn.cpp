// Thread churn: thousands of short-lived threads, each leaving 100 live objects that a
// thread of the next batch frees. The allocator must not grow with the number of threads
// it has seen:
//  - committed memory levels off (its peak over the second half of the run is less than
//    10% above its peak over the first half);
//  - heap descriptors in use (stats heaps_live, sampled by the threads themselves) never
//    exceed the number of threads alive at once plus the main thread: an exiting thread's
//    heap is orphaned and adopted by a new thread, not left behind;
//  - after the last objects are freed and flush() runs, committed memory is back to where
//    it started (plus the per-heap reserve) and no heap is left orphaned.
// Two variants: the threads call reclaim(budget) before they exit, or never.
//
// Scale: 2,000 threads at scale 1 (the 20,000 at RAMALLOC_STRESS_SCALE=10).
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <latch>
#include <thread>

using namespace ramalloc_stress;

namespace {

constexpr std::size_t batch_size = 8; // threads alive at once
constexpr std::size_t objects_per_thread = 100;

struct object {
  void *p = nullptr;
  std::size_t size = 0;
  std::uint64_t key = 0;
};
using leftovers = std::array<object, objects_per_thread>;

struct shared_state {
  std::atomic<std::uint64_t> heaps_live_max{0};
  std::atomic<std::uint64_t> corrupted{0}, failed{0};
};

void note_heaps_live(shared_state &s) {
  const std::uint64_t live = ramalloc::get_stats().heaps_live;
  std::uint64_t seen = s.heaps_live_max.load(std::memory_order_relaxed);
  while (live > seen && !s.heaps_live_max.compare_exchange_weak(seen, live)) {
  }
}

void check_and_free(object &o, shared_state &s) {
  if (o.p == nullptr)
    return;
  if (!pattern_intact(o.p, o.size, o.key) && s.corrupted.fetch_add(1) < 10)
    ADD_FAILURE() << "object " << o.p << " (" << o.size << " B) changed after its thread exited";
  ramalloc::discard(o.p);
  o = {};
}

/// One short-lived thread: allocate and leave 100 objects, free the 100 a thread of the
/// previous batch left (already joined, so they belong to an orphaned heap — possibly
/// the very heap this thread adopted), then exit without freeing its own.
void churn_thread(std::uint64_t thread_number, leftovers &previous, leftovers &mine, bool reclaims,
                  std::latch &all_bound, shared_state &s) {
  rng r(mix(thread_number + 1));
  for (std::size_t j = 0; j < objects_per_thread; ++j) {
    const std::size_t size = r.log_uniform(16, 2 * KiB);
    void *p = ramalloc::acquire(size);
    if (p == nullptr) {
      if (s.failed.fetch_add(1) < 10)
        ADD_FAILURE() << "acquire(" << size << ") failed";
      continue;
    }
    const std::uint64_t key = thread_number * objects_per_thread + j;
    fill_pattern(p, size, key);
    mine[j] = {p, size, key};
  }
  // Every thread of the batch holds its heap at once, so a batch needs batch_size heaps
  // every time: without this, how many heaps exist would depend on how the scheduler
  // happened to overlap the threads, and a late peak of overlap would add a heap (and
  // its pages) that looks like growth.
  all_bound.arrive_and_wait();
  note_heaps_live(s);
  for (object &o : previous)
    check_and_free(o, s);
  if (reclaims)
    ramalloc::reclaim(32);
  note_heaps_live(s);
}

void run_thread_churn(bool reclaims) {
  const std::size_t batches = scaled(2'000, 1.0, 1.0, 2 * batch_size) / batch_size;
  const std::size_t reserve = static_cast<std::size_t>(ramalloc::get_options().reserve);
  shared_state s;
  std::array<leftovers, batch_size> previous{}, next{};
  std::vector<std::uint64_t> committed(batches);

  ramalloc::flush(); // binds the main thread's heap: it counts in heaps_live from here on
  const ram_stats before = ramalloc::get_stats();

  for (std::size_t b = 0; b < batches; ++b) {
    std::latch all_bound(batch_size);
    std::vector<std::thread> threads;
    threads.reserve(batch_size);
    for (std::size_t i = 0; i < batch_size; ++i)
      threads.emplace_back(churn_thread, b * batch_size + i, std::ref(previous[i]),
                           std::ref(next[i]), reclaims, std::ref(all_bound), std::ref(s));
    for (auto &t : threads)
      t.join(); // after join the thread's exit hook has run: its heap is orphaned
    std::swap(previous, next);
    committed[b] = ramalloc::get_stats().committed_bytes;
  }
  const ram_stats at_end = ramalloc::get_stats();

  for (auto &objects : previous)
    for (object &o : objects)
      check_and_free(o, s);
  ramalloc::flush();
  const ram_stats after = ramalloc::get_stats();

  // Peak against peak: the committed count moves by whole pages from batch to batch, so
  // a single sample at the midpoint could sit in a trough and overstate the growth.
  const auto middle = committed.begin() + static_cast<std::ptrdiff_t>(batches / 2);
  const std::uint64_t first_half_peak = *std::max_element(committed.begin(), middle);
  const std::uint64_t second_half_peak = *std::max_element(middle, committed.end());

  std::printf("[ stats    ] committed (MiB) after each tenth of the run:");
  for (std::size_t t = 1; t <= 10; ++t)
    std::printf(" %.2f", mib(committed[t * batches / 10 - 1]));
  std::printf("\n");
  std::printf("[ stats    ] %zu threads (%zu at once): committed peak %.2f MiB (first half) "
              "%.2f MiB (second half), %.2f MiB before, %.2f MiB after flush; heaps_live max "
              "%llu; orphans adopted %llu, serviced %llu\n",
              batches * batch_size, batch_size, mib(first_half_peak), mib(second_half_peak),
              mib(before.committed_bytes), mib(after.committed_bytes),
              static_cast<unsigned long long>(s.heaps_live_max.load()),
              static_cast<unsigned long long>(at_end.orphans_adopted - before.orphans_adopted),
              static_cast<unsigned long long>(after.orphans_serviced - before.orphans_serviced));

  EXPECT_EQ(s.failed.load(), 0u);
  EXPECT_EQ(s.corrupted.load(), 0u);
  // Batches run one after the other: at most batch_size threads are alive, plus main.
  EXPECT_LE(s.heaps_live_max.load(), batch_size + 1)
      << "heap descriptors in use exceeded the threads alive at once";
  EXPECT_LE(static_cast<double>(second_half_peak), 1.10 * static_cast<double>(first_half_peak))
      << "committed memory kept growing with the number of threads";
  // Every heap keeps `reserve` bytes pre-faulted (purges never go below it); at most
  // batch_size + 1 heaps ever existed.
  EXPECT_LE(after.committed_bytes, before.committed_bytes + reserve * (batch_size + 1))
      << "memory not returned after every object was freed and flush() ran";
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.heaps_orphaned, 0u) << "flush() left orphaned heaps undrained";
  EXPECT_EQ(after.invalid_frees, before.invalid_frees);
}

} // namespace

TEST(ThreadChurn, CommittedMemoryLevelsOffAndHeapsAreReusedWhenThreadsReclaimBeforeExit) {
  run_thread_churn(/*reclaims=*/true);
}

TEST(ThreadChurn, CommittedMemoryLevelsOffAndHeapsAreReusedWhenThreadsNeverReclaim) {
  run_thread_churn(/*reclaims=*/false);
}
