// The remote-free cache (mem/remote_cache.cpp): a thread that frees a small block of
// another thread's heap keeps it and hands it out again itself (when its current page of
// the class runs out), at most RAMALLOC_REMOTE_CACHE blocks per class. What a user relies
// on: the block is reused by the freeing thread; it stays live in its owner's statistics until it goes back (at
// flush, at thread exit, at a reclaim step once unused for purge_delay); a double free of
// a kept block is still reported, whoever makes it, and a live block is never mistaken
// for a kept one; blocks of zones and of exited threads are never kept; the option
// bounds each class.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>

namespace ramalloc::detail {
std::uint32_t free_block_mark(const void *p) noexcept;
} // namespace ramalloc::detail

using namespace ramalloc_test;

namespace {

constexpr std::size_t size = 64;
// More acquires of `size` than one page holds: a thread's current page runs out within
// them, and a kept block is handed out there.
constexpr std::size_t more_than_a_page = 2 * slice_size / size + 16;

/// A thread that stays alive and runs the jobs it is given, one at a time, while the
/// caller waits: the owner of a thread heap whose blocks the test thread frees. No job
/// is allocated (the override build would count it).
class owner_thread {
public:
  owner_thread() : thread_([this] { loop(); }) {}
  ~owner_thread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  template <class F> void run(F &&f) {
    using fn_type = std::remove_reference_t<F>;
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = [](void *c) { (*static_cast<fn_type *>(c))(); };
    context_ = &f;
    ++posted_;
    wake_.notify_all();
    wake_.wait(lock, [&] { return done_ == posted_; });
  }
  /// Live blocks of this thread's heap once it has collected every free made so far.
  std::uint64_t live_after_flush() {
    std::uint64_t live = 0;
    run([&] {
      ramalloc::flush();
      live = ramalloc::current_heap().get_stats().live_blocks;
    });
    return live;
  }

private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || done_ != posted_; });
      if (done_ != posted_) {
        void (*job)(void *) = job_;
        void *context = context_;
        lock.unlock();
        job(context);
        lock.lock();
        ++done_;
        wake_.notify_all();
        continue;
      }
      return;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  void (*job_)(void *) = nullptr;
  void *context_ = nullptr;
  std::uint64_t posted_ = 0, done_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

class RemoteCache : public testing::Test {
protected:
  error_recorder errors{ramalloc::options::on_invalid_mode::warn};
  ramalloc::options saved = ramalloc::get_options();
  owner_thread owner;
  std::uint64_t owner_live_before = 0;

  void SetUp() override {
    ramalloc::flush(); // this thread keeps nothing from earlier tests
    owner_live_before = owner.live_after_flush();
  }
  void TearDown() override {
    ramalloc::flush();
    ramalloc::set_options(saved);
  }
  /// `n` blocks of `size` bytes from the owner thread's heap.
  std::vector<void *> owner_blocks(std::size_t n) {
    std::vector<void *> blocks;
    blocks.reserve(n);
    owner.run([&] {
      for (std::size_t i = 0; i < n; ++i)
        blocks.push_back(ramalloc::acquire(size));
    });
    return blocks;
  }
  std::uint64_t owner_live() { return owner.live_after_flush() - owner_live_before; }
  void set_remote_cache(std::uint32_t n) {
    ramalloc::options o = ramalloc::get_options();
    o.remote_cache = n;
    ASSERT_TRUE(ramalloc::set_options(o));
  }
  void free_in_owner(const std::vector<void *> &blocks) {
    owner.run([&] {
      for (void *p : blocks)
        ramalloc::discard(p);
    });
  }
  /// Acquires blocks of `size` on this thread until `p` comes back, at most
  /// more_than_a_page of them, into `got`; whether it came back.
  bool acquire_until(const void *p, std::vector<void *> &got) {
    for (std::size_t i = 0; i < more_than_a_page; ++i) {
      got.push_back(ramalloc::acquire(size));
      if (got.back() == p)
        return true;
    }
    return false;
  }
  static void discard_all(std::vector<void *> &blocks) {
    for (void *p : blocks)
      ramalloc::discard(p);
    blocks.clear();
  }
  std::size_t double_free_reports() {
    std::size_t n = 0;
    for (const auto &r : errors.reports())
      n += r.error == RAM_ERROR_DOUBLE_FREE;
    return n;
  }
};

} // namespace

TEST_F(RemoteCache, TheFreeingThreadHandsTheBlockOutAgainAndItsOwnerCountsItLiveMeanwhile) {
  const std::vector<void *> b = owner_blocks(2); // b[0] keeps the page in use
  ramalloc::discard(b[1]);
  EXPECT_EQ(owner_live(), 2u) << "a kept block left its owner's live count";
  std::vector<void *> got;
  got.reserve(more_than_a_page);
  EXPECT_TRUE(acquire_until(b[1], got)) << "the freeing thread did not reuse the block it freed";
  discard_all(got); // b[1] is kept again
  ramalloc::flush(); // gives it back
  EXPECT_EQ(owner_live(), 1u) << "flush did not give the kept block back to its owner";
  free_in_owner({b[0]});
  EXPECT_EQ(owner_live(), 0u);
  EXPECT_EQ(errors.count(), 0u);
}

TEST_F(RemoteCache, AnOptionOfZeroKeepsNothing) {
  set_remote_cache(0);
  const std::vector<void *> b = owner_blocks(2);
  ramalloc::discard(b[1]);
  EXPECT_EQ(owner_live(), 1u) << "a remote free did not reach its owner";
  std::vector<void *> got;
  got.reserve(more_than_a_page);
  EXPECT_FALSE(acquire_until(b[1], got));
  discard_all(got);
  free_in_owner({b[0]});
  EXPECT_EQ(owner_live(), 0u);
}

TEST_F(RemoteCache, EachClassKeepsAtMostTheOptionsCount) {
  set_remote_cache(4);
  const std::vector<void *> b = owner_blocks(10);
  for (void *p : b)
    ramalloc::discard(p);
  EXPECT_EQ(owner_live(), 4u) << "the bin kept more or fewer blocks than RAMALLOC_REMOTE_CACHE";
  ramalloc::flush();
  EXPECT_EQ(owner_live(), 0u);
}

TEST_F(RemoteCache, ADoubleFreeOfAKeptBlockIsReportedWhoeverMakesIt) {
  const std::vector<void *> b = owner_blocks(2);
  void *p = b[1];
  ramalloc::discard(p); // kept by this thread
  ramalloc::discard(p); // the keeper frees it again
  EXPECT_EQ(double_free_reports(), 1u) << "the keeper's double free went unreported";
  free_in_owner({p}); // its owner frees it again
  EXPECT_EQ(double_free_reports(), 2u) << "the owner's double free went unreported";
  std::thread([&] { ramalloc::discard(p); }).join(); // a third thread does
  EXPECT_EQ(double_free_reports(), 3u) << "a third thread's double free went unreported";
  // Nothing was freed twice: the block comes back once.
  std::vector<void *> got, more;
  got.reserve(more_than_a_page);
  more.reserve(more_than_a_page);
  EXPECT_TRUE(acquire_until(p, got));
  EXPECT_FALSE(acquire_until(p, more)) << "a block was handed out twice";
  discard_all(got);
  discard_all(more);
  ramalloc::flush();
  free_in_owner({b[0]});
  EXPECT_EQ(owner_live(), 0u);
}

TEST_F(RemoteCache, ALiveBlockWhoseBytesLookKeptIsFreedNormally) {
  const std::vector<void *> b = owner_blocks(2);
  void *p = b[1];
  ramalloc::discard(p);
  std::vector<void *> got;
  got.reserve(more_than_a_page);
  ASSERT_TRUE(acquire_until(p, got));
  got.pop_back(); // p, live again
  discard_all(got);
  // Live again, and its bytes 8..15 still hold the address of the slot that kept it; now
  // its data also equals its canary, by chance.
  const std::uint32_t mark = ramalloc::detail::free_block_mark(p);
  std::memcpy(static_cast<std::byte *>(p) + 4, &mark, sizeof mark);
  ramalloc::discard(p);
  ramalloc::flush();
  EXPECT_EQ(errors.count(), 0u) << "a live block was taken for a kept one";
  EXPECT_EQ(owner_live(), 1u);
  free_in_owner({b[0]});
}

TEST_F(RemoteCache, KeptBlocksGoBackWhenTheirThreadFlushesOrExits) {
  for (bool exit_only : {false, true}) {
    SCOPED_TRACE(exit_only ? "the freeing thread exits" : "the freeing thread flushes");
    const std::vector<void *> b = owner_blocks(10);
    std::thread([&] {
      for (void *p : b)
        ramalloc::discard(p);
      if (!exit_only)
        ramalloc::flush();
    }).join();
    EXPECT_EQ(owner_live(), 0u) << "blocks kept by a thread did not go back to their owner";
  }
}

TEST_F(RemoteCache, AReclaimStepGivesBackTheBlocksLeftUnusedForThePurgeDelay) {
  ramalloc::options o = ramalloc::get_options();
  o.purge_delay_ms = 0; // every reclaim step ends an interval
  ASSERT_TRUE(ramalloc::set_options(o));
  ramalloc::reclaim(64); // starts one
  const std::vector<void *> b = owner_blocks(10);
  for (void *p : b)
    ramalloc::discard(p);
  ramalloc::reclaim(64); // they were kept during this interval: not unused for a whole one
  EXPECT_EQ(owner_live(), 10u);
  ramalloc::reclaim(64); // a whole interval went by without an acquire of the class
  EXPECT_EQ(owner_live(), 0u) << "a reclaim step left blocks unused for the purge delay kept";
}

TEST_F(RemoteCache, BlocksOfAZoneAreNeverKept) {
  ramalloc::heap zone;
  void *keep = zone.acquire(size);
  void *p = zone.acquire(size);
  ramalloc::discard(p); // remote: this thread's heap is not the zone
  zone.flush();
  EXPECT_EQ(zone.get_stats().live_blocks, 1u) << "a zone's block was kept by another heap";
  std::vector<void *> got;
  got.reserve(more_than_a_page);
  EXPECT_FALSE(acquire_until(p, got));
  discard_all(got);
  zone.release_all();
  (void)keep;
}

TEST_F(RemoteCache, AThreadWorkingInAZoneKeepsNothing) {
  const std::vector<void *> b = owner_blocks(2);
  ramalloc::heap zone;
  {
    ramalloc::heap_scope scope(zone);
    ramalloc::discard(b[1]);
    std::vector<void *> got; // the zone's own blocks, never the owner's
    got.reserve(more_than_a_page);
    EXPECT_FALSE(acquire_until(b[1], got));
    discard_all(got);
  }
  EXPECT_EQ(owner_live(), 1u) << "a free made inside a zone's scope was kept";
  free_in_owner({b[0]});
}

TEST_F(RemoteCache, BlocksOfAThreadThatExitedGoStraightBack) {
  std::vector<void *> b;
  b.reserve(4);
  std::thread([&] {
    for (int i = 0; i < 4; ++i)
      b.push_back(ramalloc::acquire(size));
  }).join(); // its heap is an orphan now
  for (void *p : b)
    ramalloc::discard(p);
  std::vector<void *> got;
  got.reserve(more_than_a_page);
  for (void *p : b)
    EXPECT_FALSE(acquire_until(p, got)) << "a block of an exited thread was kept";
  discard_all(got);
}
