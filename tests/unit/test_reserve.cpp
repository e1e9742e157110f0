// RAMALLOC_RESERVE: bytes each heap pre-faults on first use and never purges below, so
// the hot path takes no page fault while the working set fits in the reserve.
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
  if (under_sanitizer()) GTEST_SKIP() << "sanitizer runtimes fault pages of their own";
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
    ramalloc::discard(ramalloc::acquire(64)); // binds the heap: the reserve is faulted in
    const long before = minor_faults_of_this_thread();
    for (int i = 0; i < 100000; ++i) { // 6.4 MB of 64-byte blocks, written
      auto *p = static_cast<char *>(ramalloc::acquire(64));
      std::memset(p, 0x5a, 64);
      blocks.push_back(p);
    }
    faults = minor_faults_of_this_thread() - before;
    for (void *p : blocks) ramalloc::discard(p);
    ramalloc::flush();
    committed = ramalloc::current_heap().get_stats().committed_bytes;
  });
  worker.join();
  // Without the reserve, 6.4 MB of fresh pages would take ~1600 faults.
  EXPECT_LT(faults, 16) << "page faults while allocating inside the reserve";
  EXPECT_GE(committed, 16 * MiB) << "flush purged below the reserve";
}

TEST(Reserve, FlushKeepsTheReserveResidentAndReturnsTheRest) {
  if (under_sanitizer()) GTEST_SKIP() << "shadow memory makes RSS meaningless";
  ramalloc::options o = ramalloc::get_options();
  o.reserve = 32 * MiB;
  ramalloc::set_options(o);
  const std::size_t start = resident_bytes();
  std::thread worker([&] {
    std::vector<void *> blocks;
    blocks.reserve(200000);
    for (int i = 0; i < 200000; ++i) blocks.push_back(ramalloc::acquire(1000)); // ~200 MB
    for (void *p : blocks) std::memset(p, 1, 1000);
    for (void *p : blocks) ramalloc::discard(p);
    ramalloc::flush();
    const std::size_t after = resident_bytes();
    EXPECT_GE(after + 2 * MiB, start + 32 * MiB) << "the reserve was given back";
    EXPECT_LE(after, start + 32 * MiB + 8 * MiB) << "more than the reserve stayed resident";
  });
  worker.join();
}
