// A thread's first call into the allocator, whatever it is, binds the thread a heap of its
// own. Until then its current heap is a shared, never-written placeholder whose pages are
// all empty (docs/design.md, "Binding and hand-off"), so the allocation fast path has no "no heap
// yet" test: the first acquire of a class reaches the slow path, a big one its own path,
// and each of them must bind instead of using the placeholder. Every kind of first call
// is tried in a fresh thread: the block it returns (and a small one after it) belongs to
// the thread's own heap, is usable, and goes back without a report.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

using namespace ramalloc_test;

namespace {

struct first_call {
  const char *name;
  // The thread's first call; returns a block to check and free, or nullptr when the call
  // allocates nothing.
  std::function<void *()> call;
  std::size_t size; // bytes the block must offer
};

void *main_thread_block = nullptr; // freed by the "discard" case's thread

std::vector<first_call> first_calls() {
  return {
      {"acquire of a small class", [] { return ramalloc::acquire(64); }, 64},
      {"acquire of the 4-byte class", [] { return ramalloc::acquire(4); }, 4},
      {"acquire of a medium class", [] { return ramalloc::acquire(100 * KiB); }, 100 * KiB},
      {"acquire of a large span", [] { return ramalloc::acquire(MiB); }, MiB},
      {"acquire of a huge block", [] { return ramalloc::acquire(64 * MiB); }, 64 * MiB},
      {"aligned acquire of a class", [] { return ramalloc::acquire(100 * KiB, 64 * KiB); },
       100 * KiB},
      {"aligned acquire of a large span", [] { return ramalloc::acquire(300 * KiB, MiB); },
       300 * KiB},
      {"discard of another thread's block",
       []() -> void * {
         ramalloc::discard(main_thread_block);
         return nullptr;
       },
       0},
      {"reclaim",
       []() -> void * {
         ramalloc::reclaim(8);
         return nullptr;
       },
       0},
      {"get_stats",
       []() -> void * {
         (void)ramalloc::get_stats();
         return nullptr;
       },
       0},
  };
}

struct outcome {
  const void *heap = nullptr;        // current_heap().id() after the first call
  const void *first_owner = nullptr; // the first call's block's owner, if any
  const void *small_owner = nullptr; // the owner of a small block acquired next
  bool usable = false;
};

outcome run_first(const first_call &c) {
  outcome o;
  std::thread([&] {
    void *first = c.call();
    void *small = ramalloc::acquire(48);
    o.heap = ramalloc::current_heap().id();
    if (first != nullptr) {
      std::memset(first, 0xA5, c.size);
      const auto info = ramalloc::query(first);
      o.first_owner = info ? info->owner : nullptr;
      o.usable = info && info->is_start && info->usable_size >= c.size;
      ramalloc::discard(first);
    } else {
      o.usable = true;
    }
    const auto info = ramalloc::query(small);
    o.small_owner = info ? info->owner : nullptr;
    ramalloc::discard(small);
  }).join();
  return o;
}

} // namespace

TEST(FirstAllocation, EveryKindOfFirstCallBindsTheThreadAHeapOfItsOwn) {
  error_recorder errors;
  const void *main_heap = ramalloc::current_heap().id();
  for (const first_call &c : first_calls()) {
    SCOPED_TRACE(c.name);
    main_thread_block = ramalloc::acquire(256);
    ASSERT_NE(main_thread_block, nullptr);
    const outcome o = run_first(c);
    ASSERT_NE(o.heap, nullptr);
    EXPECT_NE(o.heap, main_heap) << "the thread got a heap of its own";
    EXPECT_TRUE(o.usable) << "the first block offers what was asked";
    if (c.size != 0) {
      EXPECT_EQ(o.first_owner, o.heap) << "the first block is the thread's own heap's";
    }
    EXPECT_EQ(o.small_owner, o.heap) << "a later acquire uses the same heap: bound once";
    if (c.name != std::string("discard of another thread's block")) {
      ramalloc::discard(main_thread_block);
    }
  }
  EXPECT_EQ(errors.count(), 0u) << "no call was reported as bad input";
}

TEST(FirstAllocation, ThreadsWhoseFirstCallsRaceGetDistinctHeaps) {
  // Two threads at once, each starting with an acquire that reaches the slow path: the
  // placeholder they share is never written, so neither sees the other's heap.
  error_recorder errors;
  const void *owners[2][8] = {};
  std::atomic<int> ready{0}, done{0};
  auto work = [&](int t) {
    ready.fetch_add(1);
    while (ready.load() != 2) {
    }
    void *blocks[8];
    for (int i = 0; i < 8; ++i) {
      blocks[i] = ramalloc::acquire(std::size_t{16} << i); // 16 B .. 2 KiB: eight classes
      const auto info = ramalloc::query(blocks[i]);
      owners[t][i] = info ? info->owner : nullptr;
    }
    // Both threads hold their blocks until both have allocated: a thread that exits with
    // nothing live pools its heap, and the other could then be bound that same heap.
    done.fetch_add(1);
    while (done.load() != 2) {
    }
    for (void *p : blocks)
      ramalloc::discard(p);
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_NE(owners[0][i], nullptr);
    EXPECT_EQ(owners[0][i], owners[0][0]) << "thread 0 used one heap for every class";
    EXPECT_EQ(owners[1][i], owners[1][0]) << "thread 1 used one heap for every class";
  }
  EXPECT_NE(owners[0][0], owners[1][0]) << "the threads got distinct heaps";
  EXPECT_EQ(errors.count(), 0u);
}
