// Remote frees are correct: one thread allocates 10^6 blocks and hands each to a second
// thread that checks and frees it. No block is lost, corrupted, or handed out again
// while it is still live, and the statistics return to where they started.
//
// The blocks come from a heap of their own, so its statistics count exactly them: in the
// override build the harness (std::thread's state, glibc's thread-local storage) also
// allocates from ramalloc, and the hand-off queue and live set allocate from glibc.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <thread>
#include <unordered_set>

using namespace ramalloc_test;

namespace {

struct handoff {
  void *p;
  std::uint64_t seq;
  std::size_t size;
};

using handoff_batch = std::deque<handoff, glibc_allocator<handoff>>;

/// A minimal blocking FIFO (test-only, glibc-allocated in both builds). close() wakes the consumer
/// for good once everything has been taken.
class handoff_queue {
public:
  void push(const handoff &h) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items_.push_back(h);
    }
    ready_.notify_one();
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_one();
  }
  /// Moves every queued item into `out`; false once closed and drained.
  bool take_all(handoff_batch &out) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty())
      return false;
    out.swap(items_);
    return true;
  }

private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<handoff, glibc_allocator<handoff>> items_;
  bool closed_ = false;
};

/// Addresses currently live. The producer inserts right after acquire; the consumer
/// erases *before* it calls discard, so an address can only be handed out again after
/// its erase: finding it still present on insert means the allocator returned a block
/// that was live.
class live_set {
public:
  live_set() { addresses_.reserve(2'000'000); }
  bool insert(void *p) {
    std::lock_guard<std::mutex> lock(mutex_);
    return addresses_.insert(p).second;
  }
  bool erase(void *p) {
    std::lock_guard<std::mutex> lock(mutex_);
    return addresses_.erase(p) == 1;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return addresses_.size();
  }

private:
  std::mutex mutex_;
  std::unordered_set<void *, std::hash<void *>, std::equal_to<void *>, glibc_allocator<void *>>
      addresses_;
};

/// Block `seq` holds its sequence number in its first 8 bytes and a pattern after it.
std::size_t size_for(std::uint64_t seq) {
  return 8 + (seq * 37) % 505;
}

void tag(void *p, std::uint64_t seq, std::size_t size) {
  std::memcpy(p, &seq, sizeof seq);
  fill_pattern(static_cast<char *>(p) + 8, size - 8, seq);
}

bool tag_intact(const void *p, std::uint64_t seq, std::size_t size) {
  std::uint64_t stored = 0;
  std::memcpy(&stored, p, sizeof stored);
  return stored == seq &&
         first_pattern_mismatch(static_cast<const char *>(p) + 8, size - 8, seq) == size - 8;
}

struct consumer_result {
  std::uint64_t received = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t corrupted = 0;
  std::uint64_t not_live = 0;
};

void consume(handoff_queue &queue, live_set &live, consumer_result &result) {
  handoff_batch batch;
  std::uint64_t expected = 0;
  while (queue.take_all(batch)) {
    for (const handoff &h : batch) {
      result.out_of_order += h.seq != expected;
      expected = h.seq + 1;
      result.corrupted += !tag_intact(h.p, h.seq, h.size);
      result.not_live += !live.erase(h.p);
      ramalloc::discard(h.p); // a remote free: this thread does not own the block
      ++result.received;
    }
    batch.clear();
  }
}

} // namespace

TEST(TwoThreads, BlocksFreedByAnotherThreadAreNeitherLostNorHandedOutTwiceWhileLive) {
  constexpr std::uint64_t n = 1'000'000;
  handoff_queue queue;
  live_set live;
  consumer_result result;
  ramalloc::heap producer; // owns every block handed over, and nothing else
  std::thread consumer([&] { consume(queue, live, result); });

  const ram_stats before = producer.get_stats();
  std::uint64_t handed_out_twice = 0, failed = 0, reclaim_after_flush = 0;
  std::uint64_t first_failed_seq = 0, first_twice_seq = 0;
  {
    // No GoogleTest macro in here: a failure record would be one of the heap's blocks.
    ramalloc::heap_scope scope(producer);
    for (std::uint64_t seq = 0; seq < n; ++seq) {
      const std::size_t size = size_for(seq);
      void *p = ramalloc::acquire(size);
      if (p == nullptr) {
        first_failed_seq = failed++ == 0 ? seq : first_failed_seq;
        continue;
      }
      if (!live.insert(p)) {
        first_twice_seq = handed_out_twice++ == 0 ? seq : first_twice_seq;
        continue; // the consumer still owns it; do not hand it over twice
      }
      tag(p, seq, size);
      queue.push({p, seq, size});
      if (seq % 256 == 255)
        ramalloc::reclaim(8); // pay for the remote frees, as a loop would
    }
  }
  queue.close();
  consumer.join();
  {
    // Everything the consumer freed is debt of the owning heap: pay it all.
    ramalloc::heap_scope scope(producer);
    ramalloc::flush();
    reclaim_after_flush = ramalloc::reclaim(1);
  }
  const ram_stats after = producer.get_stats();

  EXPECT_EQ(failed, 0u) << "first failure at seq " << first_failed_seq;
  EXPECT_EQ(handed_out_twice, 0u) << "first block handed out while live at seq " << first_twice_seq;
  EXPECT_EQ(result.received, n);
  EXPECT_EQ(result.out_of_order, 0u);
  EXPECT_EQ(result.corrupted, 0u) << "blocks changed between allocation and remote free";
  EXPECT_EQ(result.not_live, 0u);
  EXPECT_EQ(live.size(), 0u);
  EXPECT_EQ(after.live_blocks, before.live_blocks)
      << "blocks freed remotely were not returned to their heap";
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(after.remote_frees - before.remote_frees, n);
  EXPECT_EQ(after.pending_debt, 0u);
  EXPECT_EQ(reclaim_after_flush, 0u) << "debt still pending after flush";
}
