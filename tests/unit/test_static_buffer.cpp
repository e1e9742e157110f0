// A heap over a caller's buffer allocates only from that buffer and never touches memory
// outside it. The buffer sits between PROT_NONE guard pages (any access outside faults)
// and the bytes between the buffer's ends and the guard pages hold canaries.
// Huge blocks of other heaps may land in the same 1 GiB range without harm.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>

using namespace ramalloc_test;

namespace {

constexpr std::size_t os_page = 4096;
constexpr unsigned char canary = 0xCB;

std::uintptr_t align_up(std::uintptr_t v, std::size_t a) {
  return (v + a - 1) & ~(a - 1);
}
std::uintptr_t align_down(std::uintptr_t v, std::size_t a) {
  return v & ~(a - 1);
}

/// `size` bytes starting `offset` bytes past a 64 KiB boundary, fenced by 1 MiB of
/// PROT_NONE on each side; the slack between the buffer and the fence holds canaries.
class guarded_buffer {
public:
  guarded_buffer(std::size_t size, std::size_t offset) : size_(size) {
    const std::size_t guard = 1 * MiB;
    total_ = guard + slice_size + align_up(offset + size, os_page) + guard;
    base_ = ::mmap(nullptr, total_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED)
      throw std::runtime_error("mmap failed");
    data_ = reinterpret_cast<unsigned char *>(align_up(addr(base_) + guard, slice_size) + offset);
    rw_begin_ = reinterpret_cast<unsigned char *>(align_down(addr(data_), os_page));
    rw_end_ = reinterpret_cast<unsigned char *>(align_up(addr(data_) + size, os_page));
    if (::mprotect(rw_begin_, static_cast<std::size_t>(rw_end_ - rw_begin_),
                   PROT_READ | PROT_WRITE) != 0)
      throw std::runtime_error("mprotect failed");
    std::memset(rw_begin_, canary, static_cast<std::size_t>(data_ - rw_begin_));
    std::memset(data_ + size, canary, static_cast<std::size_t>(rw_end_ - (data_ + size)));
  }
  ~guarded_buffer() { ::munmap(base_, total_); }
  guarded_buffer(const guarded_buffer &) = delete;
  guarded_buffer &operator=(const guarded_buffer &) = delete;

  void *data() const { return data_; }
  std::size_t size() const { return size_; }
  bool contains(const void *p, std::size_t n) const {
    return addr(p) >= addr(data_) && addr(p) + n <= addr(data_) + size_ && addr(p) + n >= addr(p);
  }
  /// Canary bytes between the buffer's ends and the guard pages that were overwritten.
  std::size_t damaged_canaries() const {
    std::size_t damaged = 0;
    for (const unsigned char *b = rw_begin_; b < data_; ++b)
      damaged += *b != canary;
    for (const unsigned char *b = data_ + size_; b < rw_end_; ++b)
      damaged += *b != canary;
    return damaged;
  }

private:
  void *base_ = nullptr;
  std::size_t total_ = 0;
  std::size_t size_;
  unsigned char *data_ = nullptr;
  unsigned char *rw_begin_ = nullptr;
  unsigned char *rw_end_ = nullptr;
};

struct request {
  std::size_t size;
  std::size_t align; // 0: natural alignment
};

struct block {
  void *p;
  std::size_t usable;
  std::uint64_t tag;
};

/// Allocates round-robin over small, medium, large and aligned requests until every one
/// of them returns nullptr; checks and fills every block. Returns the bytes obtained.
std::size_t allocate_until_exhausted(ramalloc::heap &h, const guarded_buffer &buf,
                                     std::vector<block> &blocks) {
  const request requests[] = {{4, 0},         {16, 0},      {100, 0},        {1000, 0},
                              {small_max, 0}, {20000, 0},   {100000, 0},     {medium_max, 0},
                              {300 * KiB, 0}, {1 * MiB, 0}, {5000, 4 * KiB}, {64, 64 * KiB}};
  constexpr std::size_t kinds = sizeof requests / sizeof requests[0];
  bool exhausted[kinds] = {};
  std::size_t remaining = kinds, bytes = 0;
  for (std::size_t i = 0; remaining > 0; i = (i + 1) % kinds) {
    if (exhausted[i])
      continue;
    const request &r = requests[i];
    // Alternate between the heap's own interface and the current-heap functions.
    void *p = r.align != 0
                  ? (i % 2 ? h.acquire(r.size, r.align) : ramalloc::acquire(r.size, r.align))
                  : (i % 2 ? h.acquire(r.size) : ramalloc::acquire(r.size));
    if (p == nullptr) {
      exhausted[i] = true;
      --remaining;
      continue;
    }
    const auto info = ramalloc::query(p);
    if (!info) {
      ADD_FAILURE() << "query does not know static-heap block " << p;
      return bytes;
    }
    if (!buf.contains(p, info->usable_size)) {
      ADD_FAILURE() << "block [" << p << ", +" << info->usable_size << ") lies outside the buffer ["
                    << buf.data() << ", +" << buf.size() << ")";
      return bytes;
    }
    EXPECT_EQ(info->owner, h.id());
    EXPECT_GE(info->usable_size, r.size);
    if (r.align != 0) {
      EXPECT_EQ(addr(p) % r.align, 0u);
    }
    const std::uint64_t tag = blocks.size();
    // usable_size: the program may use every usable byte now (tools are told so)
    EXPECT_EQ(ram_usable_size(p), info->usable_size);
    fill_pattern(p, info->usable_size, tag);
    blocks.push_back({p, info->usable_size, tag});
    bytes += info->usable_size;
  }
  return bytes;
}

void verify_and_free(std::vector<block> &blocks) {
  std::size_t corrupted = 0;
  for (const block &b : blocks)
    corrupted += first_pattern_mismatch(b.p, b.usable, b.tag) != b.usable;
  EXPECT_EQ(corrupted, 0u) << "blocks of the static heap overlap";
  rng r(5);
  for (std::size_t i = blocks.size(); i > 1; --i)
    std::swap(blocks[i - 1], blocks[r.next() % i]);
  for (const block &b : blocks)
    ramalloc::discard(b.p);
  blocks.clear();
}

void exercise_static_heap(std::size_t size, std::size_t offset) {
  guarded_buffer buf(size, offset);
  std::vector<block> blocks;
  blocks.reserve(size / 4 + 16);
  {
    ramalloc::heap h(buf.data(), buf.size());
    ramalloc::heap_scope scope(h);

    EXPECT_EQ(ramalloc::acquire(64 * MiB), nullptr) << "a huge request must not map memory";
    EXPECT_EQ(ramalloc::acquire(2 * size), nullptr) << "more than the buffer cannot fit";

    const std::size_t first = allocate_until_exhausted(h, buf, blocks);
    ASSERT_FALSE(testing::Test::HasFailure());
    EXPECT_GE(first, size / 2) << "the heap used less than half of its buffer";
    verify_and_free(blocks);
    h.flush();

    const std::size_t second = allocate_until_exhausted(h, buf, blocks);
    ASSERT_FALSE(testing::Test::HasFailure());
    EXPECT_GE(second, first - first / 10)
        << "after freeing everything, the buffer must be usable again";
    verify_and_free(blocks);
    h.flush();
    EXPECT_EQ(buf.damaged_canaries(), 0u);
  }
  EXPECT_EQ(buf.damaged_canaries(), 0u) << "destroying the heap wrote outside the buffer";
}

} // namespace

TEST(StaticBuffer, HeapOverSliceAlignedBufferStaysInsideItAndIsReusableAfterExhaustion) {
  exercise_static_heap(4 * MiB, 0);
}

TEST(StaticBuffer, HeapOverMisalignedBufferStaysInsideItAndIsReusableAfterExhaustion) {
  exercise_static_heap(3 * MiB + 1000, os_page + 16);
}

TEST(StaticBuffer, HeapCreatedAfterAnOsHeapWasDestroyedStaysInsideItsBuffer) {
  // Heap descriptors are pooled: the static heap may reuse this one's descriptor, and must
  // not inherit its OS memory.
  {
    ramalloc::heap os_heap;
    for (std::size_t size : {std::size_t{64}, 20 * KiB, 1 * MiB, 8 * MiB}) {
      void *p = os_heap.acquire(size);
      ASSERT_NE(p, nullptr);
      ramalloc::discard(p);
    }
  }
  exercise_static_heap(4 * MiB, 0);
}

TEST(StaticBuffer, HeapOverSmallestAcceptedBufferAllocates) {
  guarded_buffer buf(256 * KiB, 0);
  {
    ramalloc::heap h(buf.data(), buf.size());
    void *p = h.acquire(16);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(buf.contains(p, 16));
    std::memset(p, 0x11, 16);
    ramalloc::discard(p);
  }
  EXPECT_EQ(buf.damaged_canaries(), 0u);
}

TEST(StaticBuffer, TooSmallBufferIsRejectedWithInvalidArgument) {
  guarded_buffer buf(256 * KiB - 1, 0);
  try {
    ramalloc::heap h(buf.data(), buf.size());
    ADD_FAILURE() << "a buffer of 256 KiB - 1 byte was accepted";
  } catch (const std::invalid_argument &e) {
    EXPECT_STRNE(e.what(), "") << "the exception should give the reason";
  }
  EXPECT_THROW({ ramalloc::heap h(buf.data(), 0); }, std::invalid_argument);
  EXPECT_THROW({ ramalloc::heap h(nullptr, 4 * MiB); }, std::invalid_argument);
  EXPECT_EQ(buf.damaged_canaries(), 0u);
}

TEST(StaticBuffer, BlocksOfAStaticHeapCanBeFreedFromAnotherThread) {
  // While the static heap is current, every allocation of this thread comes from the
  // buffer: in the override build also vector growth, std::thread's state and GoogleTest's
  // failure records. So the vector is reserved and the thread started before the scope,
  // nothing inside it allocates but the test, and the outcome is asserted after it.
  constexpr std::size_t n = 1000;
  guarded_buffer buf(2 * MiB, 0);
  std::vector<void *> blocks;
  blocks.reserve(n);
  std::mutex mutex;
  std::condition_variable changed;
  enum class phase { allocating, freeing, freed } state = phase::allocating;
  std::thread remote([&] {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return state == phase::freeing; });
    for (void *p : blocks)
      ramalloc::discard(p);
    state = phase::freed;
    changed.notify_all();
  });

  std::size_t failed = 0, outside = 0, failed_again = 0, outside_again = 0;
  std::uint64_t live_after_remote_frees = ~std::uint64_t{0}, live_at_end = ~std::uint64_t{0};
  {
    ramalloc::heap h(buf.data(), buf.size());
    {
      ramalloc::heap_scope scope(h);
      for (std::size_t i = 0; i < n; ++i) {
        void *p = ramalloc::acquire(48);
        failed += p == nullptr;
        outside += p != nullptr && !buf.contains(p, 48);
        if (p != nullptr)
          blocks.push_back(p);
      }
      {
        std::unique_lock<std::mutex> lock(mutex);
        state = phase::freeing;
        changed.notify_all();
        changed.wait(lock, [&] { return state == phase::freed; });
      }
      ramalloc::flush();
      live_after_remote_frees = h.get_stats().live_blocks;
      for (void *&p : blocks) {
        p = ramalloc::acquire(48);
        failed_again += p == nullptr;
        outside_again += p != nullptr && !buf.contains(p, 48);
      }
      for (void *p : blocks)
        ramalloc::discard(p);
      ramalloc::flush();
    }
    live_at_end = h.get_stats().live_blocks; // nothing made inside the scope outlives it
  }
  remote.join();

  EXPECT_EQ(failed, 0u);
  EXPECT_EQ(outside, 0u) << "blocks outside the buffer";
  EXPECT_EQ(live_after_remote_frees, 0u) << "remote frees were not returned to the heap";
  EXPECT_EQ(failed_again, 0u);
  EXPECT_EQ(outside_again, 0u) << "blocks outside the buffer";
  EXPECT_EQ(live_at_end, 0u) << "something allocated from the buffer is still live";
  EXPECT_EQ(buf.damaged_canaries(), 0u);
}

TEST(StaticBuffer, HugeBlocksOfOtherHeapsCoexistWithAStaticHeapOverMallocMemory) {
  // glibc serves a big malloc with its own mmap, in the area where the kernel also puts
  // the next huge mapping: the two often share a 1 GiB-aligned range.
  ramalloc::discard(ramalloc::acquire(40 * MiB)); // the allocator's own mappings exist
  void *buffer = glibc_malloc(8 * MiB);
  ASSERT_NE(buffer, nullptr);
  {
    ramalloc::heap arena(buffer, 8 * MiB);
    void *in_arena = arena.acquire(1000);
    ASSERT_NE(in_arena, nullptr);
    for (int i = 0; i < 8; ++i) {
      auto *huge = static_cast<char *>(ramalloc::acquire(40 * MiB)); // the thread's heap
      ASSERT_NE(huge, nullptr);
      huge[0] = 1;
      huge[40 * MiB - 1] = 2;
      const auto info = ramalloc::query(huge + 20 * MiB);
      ASSERT_TRUE(info.has_value());
      EXPECT_EQ(info->start, huge);
      EXPECT_EQ(info->owner, ramalloc::current_heap().id());
      ramalloc::discard(huge);
    }
    ASSERT_TRUE(ramalloc::query(in_arena).has_value());
    EXPECT_EQ(ramalloc::query(in_arena)->owner, arena.id());
    ramalloc::discard(in_arena);
  }
  glibc_free(buffer);
}

// --- the buffer holds blocks only (issue 8 items 12 and 18) ------------------------------
//
// A static heap keeps its bookkeeping (region header, slice tables, page descriptors) in
// allocator-owned metadata, never in the caller's buffer: constructing a heap writes
// nothing there, a failed constructor leaves the buffer as it was, and query or a foreign
// free never reads it, so they stay safe once the caller unmaps or protects the buffer
// (as they must for a thread that looked the region up just before the heap went away).

namespace {

/// A read-write mapping of `size` bytes inside one 1 GiB granule (so heaps over parts of
/// it share a page-map entry), filled with `fill`.
class granule_mapping {
public:
  granule_mapping(std::size_t size, unsigned char fill) : size_(size) {
    total_ = 2 * size;
    raw_ = ::mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw_ == MAP_FAILED)
      throw std::runtime_error("mmap failed");
    data_ = reinterpret_cast<unsigned char *>(align_up(addr(raw_), size)); // size divides 1 GiB
    std::memset(data_, fill, size);
  }
  ~granule_mapping() { ::munmap(raw_, total_); }
  granule_mapping(const granule_mapping &) = delete;
  granule_mapping &operator=(const granule_mapping &) = delete;
  unsigned char *data() const { return data_; }
  /// Bytes in [from, from + n) that are not `fill`.
  std::size_t changed(std::size_t from, std::size_t n, unsigned char fill) const {
    std::size_t count = 0;
    for (std::size_t i = from; i < from + n; ++i)
      count += data_[i] != fill;
    return count;
  }

private:
  void *raw_ = nullptr;
  std::size_t total_ = 0, size_;
  unsigned char *data_ = nullptr;
};

} // namespace

TEST(StaticBuffer, ConstructingAHeapWritesNothingIntoTheBuffer) {
  granule_mapping m(4 * MiB, 0xA5);
  {
    ramalloc::heap h(m.data(), 4 * MiB);
    ramalloc_test_common::asan_unpoison(m.data(), 4 * MiB); // the heap's now: look from outside
    EXPECT_EQ(m.changed(0, 4 * MiB, 0xA5), 0u) << "the heap's bookkeeping landed in the buffer";
  }
  EXPECT_EQ(m.changed(0, 4 * MiB, 0xA5), 0u) << "destroying an unused heap wrote the buffer";
}

TEST(StaticBuffer, FailedConstructorLeavesTheBufferUntouched) {
  granule_mapping m(4 * MiB, 0x3C);
  ramalloc::heap first(m.data(), 2 * MiB);
  // The second half shares the first half's 1 GiB page-map entry: rejected.
  EXPECT_THROW({ ramalloc::heap second(m.data() + 2 * MiB, 2 * MiB); }, std::invalid_argument);
  EXPECT_EQ(m.changed(2 * MiB, 2 * MiB, 0x3C), 0u) << "a failed constructor wrote the buffer";
}

TEST(StaticBuffer, QueryAndForeignFreeNeverReadTheBuffer) {
  granule_mapping m(4 * MiB, 0);
  unsigned char *buffer = m.data();            // [0, 2 MiB): the heap's buffer
  unsigned char *foreign = m.data() + 3 * MiB; // same granule, not the heap's
  error_recorder errors{ramalloc::options::on_invalid_mode::warn};
  {
    ramalloc::heap h(buffer, 2 * MiB);
    void *p = h.acquire(100);
    ASSERT_NE(p, nullptr);
    // From here on any read of the buffer faults.
    ASSERT_EQ(::mprotect(buffer, 2 * MiB, PROT_NONE), 0);
    const auto q = ramalloc::query(p);
    const auto q_foreign = ramalloc::query(foreign);
    const auto q_tail = ramalloc::query(buffer + 2 * MiB - 1);
    ram_free(foreign); // not ours: reported, never read
    ASSERT_EQ(::mprotect(buffer, 2 * MiB, PROT_READ | PROT_WRITE), 0);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->start, p);
    EXPECT_EQ(q->owner, h.id());
    EXPECT_FALSE(q_foreign.has_value());
    EXPECT_FALSE(q_tail.has_value()) << "a free span of the buffer is not a block";
    const auto reports = errors.reports();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].error, RAM_ERROR_INVALID_FREE);
    ramalloc::discard(p);
  }
}

TEST(StaticBuffer, HeapsMadeOneAfterAnotherStartFromCleanTablesWhateverTheBuffer) {
  // Each heap's header is the previous one's, recycled: nothing of the old layout may
  // show through (a stale descriptor would make query report a block that does not exist).
  for (std::size_t size : {4 * MiB, 1 * MiB, 3 * MiB + 1000, 256 * KiB}) {
    SCOPED_TRACE(size);
    exercise_static_heap(size, size % slice_size);
    guarded_buffer buf(size, 0);
    ramalloc::heap h(buf.data(), buf.size());
    for (std::size_t off = 0; off < size; off += 4 * KiB)
      EXPECT_FALSE(ramalloc::query(static_cast<unsigned char *>(buf.data()) + off).has_value())
          << "offset " << off << " of a fresh static heap looks allocated";
  }
}
