// Static-buffer heaps made and destroyed over and over while other threads query and
// free pointers in the same 1 GiB range (issue 8 item 12): the region header lives in
// allocator metadata and is recycled from one heap to the next, so a thread that looked
// the region up just before the heap went away reads mapped, race-free memory. Run under
// TSan this shows the recycled header's fields race-free.
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <atomic>
#include <thread>
#include <vector>

using namespace ramalloc_stress;

TEST(StaticHeapRace, QueriesAndForeignFreesRacingStaticHeapTurnoverAnswerSafely) {
  counted_bad_frees reports;

  // One mapping inside a granule: the heap's buffer and, after it, memory that is not.
  constexpr std::size_t buffer_size = 2 * MiB, mapping = 8 * MiB;
  void *raw =
      ::mmap(nullptr, 2 * mapping, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(raw, MAP_FAILED);
  auto *buffer = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<std::uintptr_t>(raw) + mapping - 1) & ~(mapping - 1));
  unsigned char *foreign = buffer + 4 * MiB;

  const std::size_t rounds = scaled(3000, 0.2, 0.5, 100);
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0};
  std::vector<std::thread> checkers;
  for (int c = 0; c < 2; ++c)
    checkers.emplace_back([&, c] {
      rng r(31 + c);
      while (!done.load(std::memory_order_relaxed)) {
        unsigned char *probe = buffer + r.uniform(0, buffer_size - 1);
        if (const auto q = ramalloc::query(probe)) {
          const auto start = static_cast<unsigned char *>(q->start);
          if (probe < start || probe >= start + q->usable_size || start < buffer ||
              start + q->usable_size > buffer + buffer_size)
            wrong.fetch_add(1);
        }
        if (ramalloc::query(foreign))
          wrong.fetch_add(1);
        ram_free(foreign + 16 * r.uniform(0, 1000)); // not ours: reported, never touched
      }
    });
  for (std::size_t i = 0; i < rounds; ++i) {
    ramalloc::heap h(buffer, buffer_size);
    void *blocks[8];
    for (std::size_t k = 0; k < 8; ++k)
      blocks[k] = h.acquire(16 << k);
    for (void *b : blocks)
      ramalloc::discard(b);
  }
  done = true;
  for (auto &t : checkers)
    t.join();
  ::munmap(raw, 2 * mapping);
  std::printf("[ stats ] %zu heaps, %llu foreign frees reported\n", rounds,
              static_cast<unsigned long long>(reports.count()));
  EXPECT_EQ(wrong.load(), 0);
}
