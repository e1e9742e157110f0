// Thread exit: a thread that exits with live objects hands its heap off as an orphan.
//  - Its objects stay valid; another thread frees them (remote frees into the orphan's
//    inbox), and budgeted reclaim steps on a live thread then drain the orphan: its blocks
//    are no longer counted live, its memory goes back, and it is no longer orphaned.
//  - A new thread adopts the orphaned heap instead of making a new one.
//  - However the orphan was drained (reclaim steps, flush), flush() leaves none of its
//    free memory committed.
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <pthread.h>

#include <atomic>
#include <cstring>
#include <latch>
#include <thread>

using namespace ramalloc_stress;

namespace {

struct object {
  void *p;
  std::size_t size;
  std::uint64_t key;
};

/// Sizes over the small, medium and large paths: mostly 16 B..4 KiB, some up to 128 KiB,
/// and every 500th a large span (300 KiB..2 MiB).
std::vector<object> allocate_objects(std::size_t count, std::uint64_t seed) {
  std::vector<object> out;
  out.reserve(count);
  rng r(seed);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t size = i % 500 == 499 ? r.log_uniform(300 * KiB, 2 * MiB)
                             : i % 20 == 19 ? r.log_uniform(4 * KiB, 128 * KiB)
                                            : r.log_uniform(16, 4 * KiB);
    void *p = ramalloc::acquire(size);
    if (p == nullptr) {
      ADD_FAILURE() << "acquire(" << size << ") failed";
      continue;
    }
    fill_pattern(p, size, seed * count + i);
    out.push_back({p, size, seed * count + i});
  }
  return out;
}

std::size_t free_objects(std::vector<object> &objects) {
  std::size_t corrupted = 0;
  for (const object &o : objects) {
    corrupted += !pattern_intact(o.p, o.size, o.key);
    ramalloc::discard(o.p);
  }
  objects.clear();
  return corrupted;
}

/// Sets options for a scope, then restores the previous ones.
class options_scope {
public:
  explicit options_scope(const ramalloc::options &o) : saved_(ramalloc::get_options()) {
    ramalloc::set_options(o);
  }
  ~options_scope() { ramalloc::set_options(saved_); }
  options_scope(const options_scope &) = delete;
  options_scope &operator=(const options_scope &) = delete;

private:
  ramalloc::options saved_;
};

} // namespace

TEST(ThreadExit, ObjectsLeftByAnExitedThreadAreFreedElsewhereAndReclaimStepsDrainItsHeap) {
  const std::size_t count = sanitizer_reduced(20'000, 1.0, 1.0);
  // No purge delay: reclaim may give the orphan's free memory back in the same step that
  // settles its inbox, so draining needs no waiting.
  ramalloc::options o = ramalloc::get_options();
  o.purge_delay_ms = 0;
  options_scope scoped(o);
  const std::uint64_t reserve = o.reserve;

  ramalloc::flush();
  const ram_stats before = ramalloc::get_stats();

  std::vector<object> objects;
  std::thread([&] { objects = allocate_objects(count, 1); }).join();
  const ram_stats orphaned = ramalloc::get_stats();
  ASSERT_EQ(objects.size(), count);
  EXPECT_EQ(orphaned.heaps_orphaned, before.heaps_orphaned + 1)
      << "the exited thread's heap, with live objects, was not orphaned";
  EXPECT_EQ(orphaned.live_blocks, before.live_blocks + count);

  EXPECT_EQ(free_objects(objects), 0u) << "objects changed after their thread exited";

  // Budgeted steps, as an event loop on this (live) thread would take them. The main
  // heap has no debt of its own, so the budget goes to the orphan.
  constexpr std::size_t budget = 8;
  constexpr std::size_t step_limit = 100'000;
  std::size_t steps = 0;
  ram_stats s = ramalloc::get_stats();
  while ((s.heaps_orphaned != 0 || s.live_blocks != before.live_blocks) && steps < step_limit) {
    ramalloc::reclaim(budget);
    ++steps;
    s = ramalloc::get_stats();
  }
  std::printf("[ stats    ] %zu objects freed remotely; orphan drained in %zu reclaim(%zu) "
              "steps; committed %.2f MiB before, %.2f MiB orphaned, %.2f MiB after\n",
              count, steps, budget, mib(before.committed_bytes), mib(orphaned.committed_bytes),
              mib(s.committed_bytes));

  EXPECT_EQ(s.heaps_orphaned, 0u) << "reclaim steps never drained the orphan (" << steps
                                  << " steps)";
  EXPECT_EQ(s.live_blocks, before.live_blocks);
  EXPECT_EQ(s.live_bytes, before.live_bytes);
  EXPECT_GT(s.orphans_serviced, before.orphans_serviced);
  EXPECT_EQ(s.heaps_live, before.heaps_live) << "the drained orphan's descriptor was not pooled";
  // The orphan keeps at most its reserve pre-faulted; everything else went back.
  EXPECT_LE(s.committed_bytes, before.committed_bytes + reserve)
      << "the drained orphan still holds memory";
  EXPECT_EQ(s.invalid_frees, before.invalid_frees);
}

TEST(ThreadExit, ANewThreadAdoptsAnOrphanedHeapInsteadOfCreatingOne) {
  const std::size_t count = sanitizer_reduced(5'000, 1.0, 1.0);
  ramalloc::flush();
  const ram_stats start = ramalloc::get_stats();

  std::vector<object> left;
  const void *first_heap = nullptr;
  std::thread([&] {
    left = allocate_objects(count, 2);
    first_heap = ramalloc::current_heap().id();
  }).join();
  const ram_stats orphaned = ramalloc::get_stats();
  ASSERT_EQ(orphaned.heaps_orphaned, start.heaps_orphaned + 1);

  const void *second_heap = nullptr;
  ram_stats inside{};
  std::size_t corrupted = 0;
  std::thread([&] {
    void *p = ramalloc::acquire(64); // binds this thread's heap
    second_heap = ramalloc::current_heap().id();
    inside = ramalloc::get_stats();
    corrupted = free_objects(left); // local frees now: this thread owns their heap
    ramalloc::discard(p);
  }).join();

  EXPECT_EQ(second_heap, first_heap) << "the new thread did not get the orphaned heap";
  EXPECT_EQ(inside.orphans_adopted, orphaned.orphans_adopted + 1);
  EXPECT_EQ(inside.heaps_live, orphaned.heaps_live) << "a new heap was made beside the orphan";
  EXPECT_EQ(inside.heaps_orphaned, orphaned.heaps_orphaned - 1);
  EXPECT_EQ(corrupted, 0u) << "objects changed while their heap changed hands";

  ramalloc::flush();
  const ram_stats end = ramalloc::get_stats();
  EXPECT_EQ(end.live_blocks, start.live_blocks);
  EXPECT_EQ(end.heaps_orphaned, 0u);
  EXPECT_EQ(end.heaps_live, start.heaps_live);
}

TEST(ThreadExit, AStartingThreadAdoptsAnOlderOrphanBeforeTheNewest) {
  // Two threads hold heaps at once and exit one after the other: the heap orphaned
  // second still holds objects other threads are about to free, the one orphaned first
  // has had its turn. The next thread takes the older orphan; the newest waits for a
  // thread that finds no other.
  const std::size_t count = sanitizer_reduced(1'000, 1.0, 1.0);
  ramalloc::flush();
  const ram_stats start = ramalloc::get_stats();
  ASSERT_EQ(start.heaps_orphaned, 0u);

  std::vector<object> left_a, left_b;
  const void *heap_a = nullptr, *heap_b = nullptr;
  std::latch both_bound(2), a_joined(1);
  std::thread a([&] {
    left_a = allocate_objects(count, 3);
    heap_a = ramalloc::current_heap().id();
    both_bound.arrive_and_wait();
  });
  std::thread b([&] {
    left_b = allocate_objects(count, 4);
    heap_b = ramalloc::current_heap().id();
    both_bound.arrive_and_wait();
    a_joined.wait(); // exits after `a` has handed its heap off
  });
  a.join();
  a_joined.count_down();
  b.join();
  ASSERT_NE(heap_a, heap_b);
  ASSERT_EQ(ramalloc::get_stats().heaps_orphaned, 2u);

  const void *third_heap = nullptr, *fourth_heap = nullptr;
  std::latch third_bound(1), fourth_bound(1);
  std::thread third([&] {
    ramalloc::discard(ramalloc::acquire(64)); // binds this thread's heap
    third_heap = ramalloc::current_heap().id();
    third_bound.count_down();
    fourth_bound.wait(); // still alive when the fourth thread starts
  });
  third_bound.wait();
  std::thread fourth([&] {
    ramalloc::discard(ramalloc::acquire(64));
    fourth_heap = ramalloc::current_heap().id();
    fourth_bound.count_down();
  });
  third.join();
  fourth.join();
  EXPECT_EQ(third_heap, heap_a) << (third_heap == heap_b ? "the newest orphan was adopted first"
                                                         : "a new heap was made");
  EXPECT_EQ(fourth_heap, heap_b) << "the newest orphan was not adopted when it was the last one";

  EXPECT_EQ(free_objects(left_a) + free_objects(left_b), 0u);
  ramalloc::flush();
  const ram_stats end = ramalloc::get_stats();
  EXPECT_EQ(end.live_blocks, start.live_blocks);
  EXPECT_EQ(end.heaps_orphaned, 0u);
  EXPECT_EQ(end.heaps_live, start.heaps_live);
}

TEST(ThreadExit, ReclaimStepsLeaveAJustOrphanedThreadHeapToTheNextThread) {
  // While threads keep exiting (the last one less than purge_delay ago), a reclaim step
  // on a live thread does not pop a thread's orphan for servicing: a thread starting
  // meanwhile would find none and make a heap of its own.
  ramalloc::options o = ramalloc::get_options();
  o.purge_delay_ms = 60'000;
  options_scope scoped(o);
  ramalloc::flush();
  const ram_stats before = ramalloc::get_stats();

  std::vector<object> left;
  const void *orphan = nullptr;
  std::thread([&] {
    left = allocate_objects(sanitizer_reduced(1'000, 1.0, 1.0), 5);
    orphan = ramalloc::current_heap().id();
  }).join();
  for (int step = 0; step < 32; ++step)
    ramalloc::reclaim(64);
  const ram_stats stepped = ramalloc::get_stats();
  EXPECT_EQ(stepped.orphans_serviced, before.orphans_serviced)
      << "a reclaim step took the orphan while threads were still exiting";
  EXPECT_EQ(stepped.heaps_orphaned, before.heaps_orphaned + 1);

  const void *next = nullptr;
  std::thread([&] {
    ramalloc::discard(ramalloc::acquire(64));
    next = ramalloc::current_heap().id();
  }).join();
  EXPECT_EQ(next, orphan);

  EXPECT_EQ(free_objects(left), 0u);
  ramalloc::flush(); // explicit: drains every orphan whatever the delay
  const ram_stats end = ramalloc::get_stats();
  EXPECT_EQ(end.live_blocks, before.live_blocks);
  EXPECT_EQ(end.heaps_orphaned, 0u);
}

TEST(ThreadExit, MemoryOfAnOrphanDrainedByReclaimStepsGoesBackOnFlush) {
  // A long purge delay: the reclaim steps below settle the orphan's debt but may not yet
  // give its memory back; flush() must then return all of it, wherever the orphan is.
  ramalloc::options o = ramalloc::get_options();
  o.purge_delay_ms = 60'000;
  options_scope scoped(o);
  const std::uint64_t reserve = o.reserve;

  ramalloc::flush();
  const ram_stats before = ramalloc::get_stats();

  // A few objects in a few size classes: the exiting thread's heap holds one page per
  // class, each of them the class's current page.
  std::vector<void *> objects;
  std::thread([&] {
    for (std::size_t size : {16, 48, 128, 640, 3000})
      for (int i = 0; i < 10; ++i)
        objects.push_back(ramalloc::acquire(size));
  }).join();
  ASSERT_EQ(ramalloc::get_stats().heaps_orphaned, before.heaps_orphaned + 1);
  for (void *p : objects) {
    ASSERT_NE(p, nullptr);
    ramalloc::discard(p);
  }

  // An event loop on a live thread: a few budgeted steps, then flush on an idle tick.
  for (int step = 0; step < 64; ++step)
    ramalloc::reclaim(8);
  const ram_stats stepped = ramalloc::get_stats();
  ramalloc::flush();
  const ram_stats after = ramalloc::get_stats();
  std::printf("[ stats    ] after reclaim steps: %llu orphaned, %.2f MiB committed; after "
              "flush: %llu orphaned, %.2f MiB committed (%.2f MiB before)\n",
              static_cast<unsigned long long>(stepped.heaps_orphaned), mib(stepped.committed_bytes),
              static_cast<unsigned long long>(after.heaps_orphaned), mib(after.committed_bytes),
              mib(before.committed_bytes));

  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.heaps_orphaned, 0u);
  EXPECT_EQ(after.heaps_live, before.heaps_live);
  EXPECT_LE(after.committed_bytes, before.committed_bytes + reserve)
      << "free pages of the drained orphan stayed committed after flush()";
}

namespace {

pthread_key_t g_late_key;
std::atomic<void *> g_kept_by_late_destructor[64];

/// A key destructor that keeps itself armed for every round the C library runs, and in
/// the last one allocates (after ramalloc's own destructor has run in that round: keys
/// run in creation order, and ramalloc's key is older).
void last_round_destructor(void *value) {
  const auto round = reinterpret_cast<std::uintptr_t>(value);
  if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(g_late_key, reinterpret_cast<void *>(round + 1));
    return;
  }
  void *scratch = ramalloc::acquire(200);
  std::memset(scratch, 1, 200);
  ramalloc::discard(scratch);
  for (auto &slot : g_kept_by_late_destructor) {
    void *expected = nullptr;
    void *p = ramalloc::acquire(96);
    if (!slot.compare_exchange_strong(expected, p))
      ramalloc::discard(p);
    else
      break;
  }
}

} // namespace

TEST(ThreadExit, AThreadThatAllocatesInTheLastKeyDestructorRoundLeavesNoHeapBehind) {
  if (under_sanitizer())
    GTEST_SKIP() << "the sanitizers finalise a thread in its last key-destructor round: "
                    "instrumented code that runs after that (this test's destructor) crashes";
  ramalloc::discard(ramalloc::acquire(16)); // ramalloc's key exists before the test's
  ASSERT_EQ(pthread_key_create(&g_late_key, last_round_destructor), 0);
  ramalloc::flush();
  const std::uint64_t heaps_before = ramalloc::get_stats().heaps_live;
  constexpr int threads = 16;
  for (int i = 0; i < threads; ++i) {
    std::thread([] {
      ramalloc::discard(ramalloc::acquire(64)); // the thread has a heap of its own
      pthread_setspecific(g_late_key, reinterpret_cast<void *>(1));
    }).join();
  }
  // The blocks the last rounds kept are valid and are freed here; then nothing remains.
  for (auto &slot : g_kept_by_late_destructor)
    if (void *p = slot.exchange(nullptr)) {
      ASSERT_TRUE(ramalloc::query(p).has_value());
      ramalloc::discard(p);
    }
  ramalloc::flush();
  const ramalloc::stats s = ramalloc::get_stats();
  EXPECT_EQ(s.heaps_orphaned, 0u);
  EXPECT_LE(s.heaps_live, heaps_before + 1)
      << threads << " threads that allocated in their last key-destructor round left "
      << s.heaps_live - heaps_before << " heaps behind";
  pthread_key_delete(g_late_key);
}
