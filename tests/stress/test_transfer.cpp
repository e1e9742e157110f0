// Transfer stress: threads exchange blocks through a shared array of atomic slots. A
// thread puts a fresh block into a random slot, takes whatever the slot held, moves
// blocks from slot to slot, and frees what it takes — so most frees are remote, into
// heaps whose owner may be running, exiting, or already gone. Every block carries a
// header (size, seed) and a pattern derived from it over all its bytes, checked every
// time a thread takes the block. All threads are joined and new ones created every round;
// blocks left in the slots carry over, so each round's threads free blocks of heaps
// orphaned by the previous round (and adopt those heaps). At the end the main thread
// frees every survivor, flushes, and the allocator's live count is back where it began.
//
// Scale: 4 threads x 8,000 operations per round; 16 rounds at scale 1, 160 at scale 10.
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

using namespace ramalloc_stress;

namespace {

struct header {
  std::uint64_t size;
  std::uint64_t seed;
};

constexpr std::size_t slot_count = 1024;
constexpr std::size_t thread_count = 4;

struct counters {
  std::atomic<std::uint64_t> allocated{0}, freed{0}, checked{0}, corrupted{0}, failed{0};
};

/// Mostly small blocks (16 B..4 KiB), some medium (..64 KiB), and one in 2048 a large
/// span (256 KiB..1 MiB) whose remote free takes the large-page path.
std::size_t next_size(rng &r) {
  const std::uint64_t pick = r.next() % 2048;
  if (pick == 0)
    return r.log_uniform(256 * KiB + 1, 1 * MiB);
  if (pick < 64)
    return r.log_uniform(4 * KiB + 1, 64 * KiB);
  return r.log_uniform(sizeof(header), 4 * KiB);
}

void *make_block(rng &r, std::uint64_t seed, counters &c) {
  const std::size_t size = next_size(r);
  void *p = ramalloc::acquire(size);
  if (p == nullptr) {
    if (c.failed.fetch_add(1) < 10)
      ADD_FAILURE() << "acquire(" << size << ") failed";
    return nullptr;
  }
  const header h{size, seed};
  std::memcpy(p, &h, sizeof h);
  fill_pattern(static_cast<char *>(p) + sizeof h, size - sizeof h, seed ^ size);
  c.allocated.fetch_add(1, std::memory_order_relaxed);
  return p;
}

/// The header must be plausible and every byte after it must match its pattern.
bool block_intact(const void *p) {
  header h;
  std::memcpy(&h, p, sizeof h);
  if (h.size < sizeof h || h.size > 1 * MiB)
    return false;
  const auto info = ramalloc::query(p);
  if (!info || info->start != p || info->usable_size < h.size)
    return false;
  return pattern_intact(static_cast<const char *>(p) + sizeof h, h.size - sizeof h,
                        h.seed ^ h.size);
}

void check_and_free(void *p, counters &c) {
  if (p == nullptr)
    return;
  c.checked.fetch_add(1, std::memory_order_relaxed);
  if (!block_intact(p) && c.corrupted.fetch_add(1) < 10)
    ADD_FAILURE() << "block " << p << " changed while it sat in a slot";
  ramalloc::discard(p);
  c.freed.fetch_add(1, std::memory_order_relaxed);
}

/// One thread's share of a round. exchange(acq_rel) is the whole protocol: whoever takes
/// a pointer out of a slot owns the block exclusively and sees the bytes its writer wrote.
void worker(std::atomic<void *> *slots, std::size_t ops, std::uint64_t thread_seed, counters &c) {
  rng r(thread_seed);
  for (std::size_t i = 0; i < ops; ++i) {
    std::atomic<void *> &slot = slots[r.next() % slot_count];
    const std::uint64_t action = r.next() % 10;
    if (action < 5) { // put a fresh block, free the one it displaces
      void *fresh = make_block(r, mix(thread_seed * 0x10000 + i), c);
      check_and_free(slot.exchange(fresh, std::memory_order_acq_rel), c);
    } else if (action < 8) { // move a block to another slot, without freeing it
      void *taken = slot.exchange(nullptr, std::memory_order_acq_rel);
      if (taken != nullptr) {
        c.checked.fetch_add(1, std::memory_order_relaxed);
        if (!block_intact(taken) && c.corrupted.fetch_add(1) < 10)
          ADD_FAILURE() << "block " << taken << " changed while it sat in a slot";
        std::atomic<void *> &other = slots[r.next() % slot_count];
        check_and_free(other.exchange(taken, std::memory_order_acq_rel), c);
      }
    } else { // take and free
      check_and_free(slot.exchange(nullptr, std::memory_order_acq_rel), c);
    }
    if (action == 9 && i % 16 == 0)
      ramalloc::reclaim(4); // some threads pay debt now and then, as a loop would
  }
}

} // namespace

TEST(Transfer, BlocksExchangedBetweenThreadsThatAreRecreatedEveryRoundStayIntactAndAllComeBack) {
  const std::size_t rounds = scaled(16, 1.0, 1.0, 4);
  const std::size_t ops = sanitizer_reduced(8'000, 1.0, 1.0); // per thread and round

  auto slots = std::make_unique<std::atomic<void *>[]>(slot_count);
  for (std::size_t i = 0; i < slot_count; ++i)
    slots[i].store(nullptr, std::memory_order_relaxed);
  counters c;

  ramalloc::flush();
  const ram_stats before = ramalloc::get_stats();

  std::size_t carried_over = 0;
  for (std::size_t round = 0; round < rounds; ++round) {
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < thread_count; ++t)
      threads.emplace_back(worker, slots.get(), ops, mix(round * thread_count + t + 1),
                           std::ref(c));
    for (auto &t : threads)
      t.join();
    for (std::size_t i = 0; i < slot_count; ++i)
      carried_over += slots[i].load(std::memory_order_relaxed) != nullptr;
  }

  // Every survivor: checked, then freed by the main thread (remote: their heaps belong to
  // threads that have exited).
  for (std::size_t i = 0; i < slot_count; ++i)
    check_and_free(slots[i].exchange(nullptr, std::memory_order_acq_rel), c);
  ramalloc::flush();
  const ram_stats after = ramalloc::get_stats();

  EXPECT_GT(carried_over, 0u) << "no block survived a round: the carry-over was not exercised";
  EXPECT_EQ(c.failed.load(), 0u);
  EXPECT_EQ(c.corrupted.load(), 0u);
  EXPECT_EQ(c.freed.load(), c.allocated.load());
  EXPECT_EQ(after.live_blocks, before.live_blocks) << "blocks lost or counted twice";
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.invalid_frees, before.invalid_frees);
  EXPECT_EQ(after.heaps_orphaned, 0u) << "flush() left orphaned heaps undrained";
  EXPECT_GT(after.orphans_adopted, before.orphans_adopted)
      << "new rounds' threads created heaps instead of adopting the previous round's";
  std::printf("[ stats    ] %zu rounds x %zu threads x %zu ops: %llu blocks allocated, %llu "
              "checks, %zu block-rounds carried over, %llu remote frees, %llu orphans adopted\n",
              rounds, thread_count, ops, static_cast<unsigned long long>(c.allocated.load()),
              static_cast<unsigned long long>(c.checked.load()), carried_over,
              static_cast<unsigned long long>(after.remote_frees - before.remote_frees),
              static_cast<unsigned long long>(after.orphans_adopted - before.orphans_adopted));
}
