// Huge blocks (own mappings above 32 MiB) allocated and freed by many threads at once:
// their descriptors are recycled through a lock-free stack and their page-map entries
// come and go while other threads query and free (issue 8 items 8 and 9). Run under TSan
// these tests show the descriptor stack and the descriptors' fields race-free.
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

using namespace ramalloc_stress;

namespace {

constexpr std::size_t GiB = std::size_t{1} << 30;
constexpr std::size_t huge_min = 32 * MiB + 1;

/// A huge size: just above the large limit plus some pages (never more than 2 GiB).
std::size_t huge_size(rng &r) {
  return huge_min + r.uniform(0, 7) * 4096 * 997 + (r.uniform(0, 15) == 0 ? GiB : 0);
}

/// The block's descriptor still describes this block (a descriptor handed out twice
/// would describe the other one).
::testing::AssertionResult describes(void *p, std::size_t size) {
  const auto q = ramalloc::query(p);
  if (!q)
    return ::testing::AssertionFailure() << p << " is not ours";
  if (q->start != p || !q->is_start || q->usable_size < size ||
      q->kind != ramalloc::block_info::block_kind::huge)
    return ::testing::AssertionFailure()
           << p << " described as start " << q->start << " size " << q->usable_size;
  return ::testing::AssertionSuccess();
}

} // namespace

TEST(HugeChurn, ManyThreadsAllocatingAndFreeingHugeBlocksNeverShareADescriptor) {
  const int threads = 6;
  const std::size_t rounds = scaled(400, 0.25, 0.5, 20);
  live_set live(threads * 4);
  // Blocks handed between threads, so frees also come from a thread that did not allocate.
  std::atomic<void *> exchange[threads] = {};
  std::atomic<int> failures{0};
  const ram_stats before = ramalloc::get_stats();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      rng r(1000 + t);
      for (std::size_t i = 0; i < rounds; ++i) {
        const std::size_t size = huge_size(r);
        auto *p = static_cast<unsigned char *>(ramalloc::acquire(size));
        if (p == nullptr || !live.insert(p)) {
          failures.fetch_add(1);
          continue;
        }
        p[0] = static_cast<unsigned char>(t);
        p[size - 1] = static_cast<unsigned char>(i);
        if (!describes(p, size))
          failures.fetch_add(1);
        // Free our own block, or park it for another thread and free what was parked.
        void *victim = p;
        if (r.uniform(0, 1) == 0)
          victim = exchange[r.uniform(0, threads - 1)].exchange(p);
        if (victim == nullptr)
          continue;
        if (!describes(victim, 0) || !live.erase(victim))
          failures.fetch_add(1);
        ramalloc::discard(victim);
      }
    });
  for (auto &th : pool)
    th.join();
  for (auto &slot : exchange)
    if (void *p = slot.exchange(nullptr)) {
      EXPECT_TRUE(live.erase(p));
      ramalloc::discard(p);
    }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(live.size(), 0u);
  const ram_stats after = ramalloc::get_stats();
  EXPECT_EQ(after.live_blocks, before.live_blocks) << "huge blocks leaked or counted twice";
}

TEST(HugeChurn, QueriesAndBadFreesRacingHugeFreesAnswerSafely) {
  counted_bad_frees reports;

  const int allocators = 3, checkers = 3;
  const std::size_t rounds = scaled(400, 0.25, 0.5, 20);
  std::atomic<void *> latest[allocators] = {};
  std::atomic<int> running{allocators}, wrong{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < allocators; ++t)
    pool.emplace_back([&, t] {
      rng r(77 + t);
      for (std::size_t i = 0; i < rounds; ++i) {
        const std::size_t size = huge_size(r);
        void *p = ramalloc::acquire(size);
        if (p == nullptr)
          continue;
        latest[t].store(p);
        ramalloc::discard(p); // checkers keep using the stale pointer
      }
      running.fetch_sub(1);
    });
  for (int c = 0; c < checkers; ++c)
    pool.emplace_back([&, c] {
      rng r(500 + c);
      while (running.load() != 0) {
        auto *p = static_cast<unsigned char *>(latest[r.uniform(0, allocators - 1)].load());
        if (p == nullptr)
          continue;
        for (unsigned char *probe : {p, p + 12345, p + 40 * MiB}) {
          if (const auto q = ramalloc::query(probe)) {
            const auto start = reinterpret_cast<std::uintptr_t>(q->start);
            const auto at = reinterpret_cast<std::uintptr_t>(probe);
            if (at < start || at - start >= q->usable_size)
              wrong.fetch_add(1);
          }
        }
        // Never a block start (huge blocks are 1 GiB-aligned): rejected, frees nothing.
        ramalloc::discard(p + 4096);
      }
    });
  for (auto &th : pool)
    th.join();
  std::printf("[ stats ] %llu bad frees reported\n",
              static_cast<unsigned long long>(reports.count()));
  EXPECT_EQ(wrong.load(), 0);
}
