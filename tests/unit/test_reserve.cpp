// RAMALLOC_RESERVE: bytes each heap pre-faults and never purges below, so the hot path
// takes no page fault while the working set fits in the reserve. Pre-faulting is debt:
// never done inside an allocation, paid a purge_budget at a time by reclaim steps, all
// at once by flush and by the heap constructor.
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <thread>
#include <vector>

using namespace ramalloc_test;

namespace {

long minor_faults_of_this_thread() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_minflt;
}

} // namespace

TEST(Reserve, AllocationsInsideTheReserveTakeNoPageFault) {
  if (under_sanitizer())
    GTEST_SKIP() << "sanitizer runtimes fault pages of their own";
  ramalloc::options o = ramalloc::get_options();
  o.reserve = 16 * MiB;
  ramalloc::set_options(o);
  long faults = -1;
  std::size_t committed = 0;
  // A new thread gets a new heap, which pre-faults the reserve on its first allocation.
  std::thread worker([&] {
    std::vector<void *> blocks;
    blocks.reserve(100000);
    std::fill_n(std::back_inserter(blocks), 100000, nullptr); // touch the vector first
    blocks.clear();
    ramalloc::discard(ramalloc::acquire(64)); // binds the heap: the reserve is owed
    while (ramalloc::reclaim(16) != 0) {      // the owner's loop pays it
    }
    const long before = minor_faults_of_this_thread();
    for (int i = 0; i < 100000; ++i) { // 6.4 MB of 64-byte blocks, written
      auto *p = static_cast<char *>(ramalloc::acquire(64));
      std::memset(p, 0x5a, 64);
      blocks.push_back(p);
    }
    faults = minor_faults_of_this_thread() - before;
    for (void *p : blocks)
      ramalloc::discard(p);
    ramalloc::flush();
    committed = ramalloc::current_heap().get_stats().committed_bytes;
  });
  worker.join();
  // Without the reserve, 6.4 MB of fresh pages would take ~1600 faults.
  EXPECT_LT(faults, 16) << "page faults while allocating inside the reserve";
  EXPECT_GE(committed, 16 * MiB) << "flush purged below the reserve";
}

TEST(Reserve, FlushKeepsTheReserveResidentAndReturnsTheRest) {
  if (under_sanitizer())
    GTEST_SKIP() << "shadow memory makes RSS meaningless";
  ramalloc::options o = ramalloc::get_options();
  o.reserve = 32 * MiB;
  ramalloc::set_options(o);
  const std::size_t start = resident_bytes();
  std::thread worker([&] {
    std::vector<void *> blocks;
    blocks.reserve(200000);
    for (int i = 0; i < 200000; ++i)
      blocks.push_back(ramalloc::acquire(1000)); // ~200 MB
    for (void *p : blocks)
      std::memset(p, 1, 1000);
    for (void *p : blocks)
      ramalloc::discard(p);
    ramalloc::flush();
    const std::size_t after = resident_bytes();
    EXPECT_GE(after + 2 * MiB, start + 32 * MiB) << "the reserve was given back";
    EXPECT_LE(after, start + 32 * MiB + 8 * MiB) << "more than the reserve stayed resident";
  });
  worker.join();
}

TEST(Reserve, PrefaultingIsDebtPaidByReclaimStepsNeverByAnAllocation) {
  ramalloc::options o = ramalloc::get_options();
  o.reserve = 512 * MiB; // the largest reserve the option allows
  ramalloc::set_options(o);
  std::uint64_t first_acquire_steps = 0;
  std::size_t committed_after_acquire = 0, owed_after_acquire = 0, largest_step = 0;
  std::size_t committed_paid = 0, steps = 0, calls = 0;
  std::thread worker([&] {
    ramalloc::reset_max_steps();
    void *p = ramalloc::acquire(64); // a new heap: the reserve becomes debt
    first_acquire_steps = ramalloc::max_steps().max_acquire_steps;
    ramalloc::heap &h = ramalloc::current_heap();
    committed_after_acquire = h.get_stats().committed_bytes;
    owed_after_acquire = h.get_stats().pending_debt;
    std::size_t before = committed_after_acquire;
    for (;;) { // one unit per call, the last one included
      const std::size_t left = ramalloc::reclaim(1);
      // Once the reserve is paid, a unit may purge what lies above it (committed falls):
      // only the units that grew committed memory are reserve steps.
      const std::size_t now = h.get_stats().committed_bytes;
      if (now > before) {
        largest_step = std::max(largest_step, now - before);
        ++steps;
      }
      before = now;
      if (left == 0 || ++calls == 100'000)
        break;
    }
    committed_paid = h.get_stats().committed_bytes;
    ramalloc::discard(p);
  });
  worker.join();
  // The first acquire neither faulted 512 MiB in nor filled a 8192-slice span table.
  EXPECT_LT(committed_after_acquire, 4 * MiB);
  EXPECT_GT(owed_after_acquire, 0u) << "the reserve is debt: pending_debt counts it";
#ifdef RAMALLOC_DEBUG
  EXPECT_LT(first_acquire_steps, 200u) << "the first acquire did the reserve's work";
#endif
  // Each reclaim unit pre-faults at most purge_budget bytes; together they pay it all.
  EXPECT_LE(largest_step, o.purge_budget);
  EXPECT_GE(committed_paid, 512 * MiB);
  EXPECT_GE(steps, 512 * MiB / o.purge_budget);
}

TEST(Reserve, AHeapMadeWithTheConstructorHasItsReserveResidentAtOnce) {
  ramalloc::options o = ramalloc::get_options();
  o.reserve = 8 * MiB;
  ramalloc::set_options(o);
  ramalloc::heap zone; // not an allocation: the constructor may pay the reserve whole
  EXPECT_GE(zone.get_stats().committed_bytes, 8 * MiB);
  EXPECT_EQ(zone.get_stats().pending_debt, 0u);
}
