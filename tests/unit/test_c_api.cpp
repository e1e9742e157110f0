// The C interface: usable from C, zero-size requests give real blocks, statistics follow
// allocations, debt is visible and flush pays all of it, and the error callback gets its
// context and can be reset to the default.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ramalloc_test;

extern "C" int ramalloc_c_round_trip(void);

TEST(CApi, WorksFromAPlainCTranslationUnit) {
  EXPECT_EQ(ramalloc_c_round_trip(), 0) << "number of the failed check in c_api_from_c.c";
}

TEST(CApi, AcquireOfZeroBytesReturnsAUsableBlock) {
  void *p = ram_acquire(0);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(ram_usable_size(p), 1u);
  ram_discard(p);
}

TEST(CApi, MallocOfZeroBytesReturnsDistinctFreeableBlocks) {
  void *a = ram_malloc(0);
  void *b = ram_malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(addr(a) % malloc_alignment(0), 0u);
  EXPECT_EQ(addr(b) % malloc_alignment(0), 0u);
  ram_free(a);
  ram_free(b);
}

TEST(CApi, UsableSizeCoversTheRequestAndMatchesQuery) {
  for (std::size_t size : boundary_sizes()) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    void *p = ram_malloc(size);
    ASSERT_NE(p, nullptr);
    ram_block_info info{};
    ASSERT_NE(ram_query(p, &info), 0);
    EXPECT_GE(ram_usable_size(p), size);
    EXPECT_EQ(ram_usable_size(p), info.usable_size);
    EXPECT_NE(info.is_start, 0);
    ram_free(p);
  }
}

TEST(CApi, StatisticsCountLiveBlocksAndBytes) {
  ram_stats before{}, heap_before{};
  ram_get_stats(&before);
  ram_get_heap_stats(&heap_before);
  void *p = ram_malloc(100);
  ASSERT_NE(p, nullptr);
  ram_stats during{}, heap_during{};
  ram_get_stats(&during);
  ram_get_heap_stats(&heap_during);
  EXPECT_EQ(during.live_blocks, before.live_blocks + 1);
  EXPECT_EQ(during.live_bytes, before.live_bytes + ram_usable_size(p));
  EXPECT_EQ(heap_during.live_blocks, heap_before.live_blocks + 1);
  EXPECT_EQ(heap_during.live_bytes, heap_before.live_bytes + ram_usable_size(p));
  ram_free(p);
  ram_stats after{};
  ram_get_stats(&after);
  EXPECT_EQ(after.live_blocks, before.live_blocks);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
}

TEST(CApi, HeapStatisticsFollowTheCurrentHeap) {
  ramalloc::heap other;
  ram_stats own_before{};
  ram_get_heap_stats(&own_before);
  void *p = nullptr;
  {
    ramalloc::heap_scope scope(other);
    ram_stats other_before{};
    ram_get_heap_stats(&other_before);
    p = ram_malloc(64);
    ASSERT_NE(p, nullptr);
    ram_stats other_after{};
    ram_get_heap_stats(&other_after);
    EXPECT_EQ(other_after.live_blocks, other_before.live_blocks + 1);
    EXPECT_EQ(other.get_stats().live_blocks, other_after.live_blocks);
  }
  ram_stats own_after{};
  ram_get_heap_stats(&own_after);
  EXPECT_EQ(own_after.live_blocks, own_before.live_blocks);
  ram_free(p);
}

TEST(CApi, RemoteFreesBecomeDebtThatFlushPaysInFull) {
  // The blocks come from a heap of their own, whose statistics count exactly them (in the
  // override build std::thread's state is a ramalloc block, freed remotely too).
  constexpr std::size_t n = 2000;
  ramalloc::heap owner;
  std::vector<void *> blocks(n);
  std::size_t failed = 0;
  {
    ramalloc::heap_scope scope(owner);
    for (auto &p : blocks) {
      p = ram_malloc(1024); // about 32 pages
      failed += p == nullptr;
    }
  }
  ASSERT_EQ(failed, 0u);
  const ram_stats before = owner.get_stats();
  std::thread([&] {
    for (void *p : blocks)
      ram_free(p);
  }).join();

  std::size_t pending_after_frees = 0, pending_after_flush = 0;
  {
    ramalloc::heap_scope scope(owner);
    pending_after_frees = ram_reclaim(1);
    ram_flush();
    pending_after_flush = ram_reclaim(1);
  }
  const ram_stats after = owner.get_stats();
  EXPECT_GT(pending_after_frees, 0u) << "frees from another thread must leave debt pending";
  EXPECT_EQ(pending_after_flush, 0u);
  EXPECT_EQ(after.pending_debt, 0u);
  EXPECT_EQ(after.remote_frees - before.remote_frees, n);
  EXPECT_EQ(after.live_blocks, before.live_blocks - n);
  EXPECT_EQ(after.live_blocks, 0u);
}

namespace {

struct handler_log {
  int calls = 0;
  ram_error last = RAM_ERROR_OUT_OF_MEMORY;
  const void *pointer = nullptr;
};

void log_handler(ram_error error, const void *pointer, const char *, void *context) {
  auto *log = static_cast<handler_log *>(context);
  ++log->calls;
  log->last = error;
  log->pointer = pointer;
}

} // namespace

TEST(CApi, ErrorHandlerReceivesTheReportAndItsContext) {
  const ramalloc::options saved = ramalloc::get_options();
  ASSERT_EQ(ram_set_option("RAMALLOC_ON_INVALID", "warn"), 0);
  handler_log log;
  ram_set_error_handler(&log_handler, &log);
  int on_stack = 0;
  ram_free(&on_stack);
  ram_set_error_handler(nullptr, nullptr);
  ramalloc::set_options(saved);
  EXPECT_EQ(log.calls, 1);
  EXPECT_EQ(log.last, RAM_ERROR_INVALID_FREE);
  EXPECT_EQ(log.pointer, &on_stack);
}

TEST(CApi, SettingANullErrorHandlerRestoresTheDefault) {
  const ramalloc::options saved = ramalloc::get_options();
  ASSERT_EQ(ram_set_option("RAMALLOC_ON_INVALID", "warn"), 0);
  handler_log log;
  ram_set_error_handler(&log_handler, &log);
  ram_set_error_handler(nullptr, nullptr);
  ram_stats before{};
  ram_get_stats(&before);
  int on_stack = 0;
  ram_free(&on_stack); // the default handler reports it; ours must not be called
  ram_stats after{};
  ram_get_stats(&after);
  ramalloc::set_options(saved);
  EXPECT_EQ(log.calls, 0);
  EXPECT_EQ(after.invalid_frees, before.invalid_frees + 1);
}
