// heap_strand with the malloc override linked in: plain new/malloc inside a strand
// handler — and what Asio and the standard library allocate there — come from the
// strand's heap, whichever worker runs it. Built only without sanitizers (they replace
// malloc themselves).
#include <gtest/gtest.h>

#include "kit_test_support.hpp"

#include <asio.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace kit_test;
namespace io = ramalloc::io;

const void *owner_of(const void *p) {
  auto info = ramalloc::query(p);
  return info ? info->owner : nullptr;
}

TEST(HeapStrandOverride, NewAndMallocInAStrandHandlerComeFromTheStrandHeap) {
  asio::io_context ctx;
  auto strand = io::make_heap_strand(ctx);
  std::atomic<int> done{0}, wrong{0};
  std::vector<std::unique_ptr<std::string>> kept[1];
  std::mutex m;
  std::vector<void *> raw;
  constexpr int handlers = 2000;
  {
    io::worker_pool pool(ctx, 4);
    for (int i = 0; i < handlers; ++i)
      asio::post(strand, [&, i] {
        auto s = std::make_unique<std::string>(100, char('a' + i % 26)); // operator new
        void *m1 = std::malloc(200);                                     // malloc
        if (owner_of(s.get()) != strand.heap().id() || owner_of(s->data()) != strand.heap().id() ||
            owner_of(m1) != strand.heap().id())
          wrong.fetch_add(1);
        kept[0].push_back(std::move(s));
        {
          std::lock_guard lock(m);
          raw.push_back(m1);
        }
        done.fetch_add(1);
      });
    ASSERT_TRUE(wait_until([&] { return done.load() == handlers; }, 60s));
    pool.join();
  }
  EXPECT_EQ(wrong.load(), 0);
  // Freed from the test thread: remote frees into the strand's heap, which become its
  // debt; the workers' service ticks get the quiet strand to pay it.
  const std::uint64_t live = strand.heap().get_stats().live_blocks;
  EXPECT_GE(live, 3u * handlers);
  kept[0].clear();
  kept[0].shrink_to_fit();
  for (void *p : raw)
    std::free(p);
  EXPECT_GT(strand.heap().get_stats().pending_debt, 0u);
  ctx.restart(); // the first pool's join() let the context run out of work
  io::pool_options po;
  po.loop.service_tick = 10ms;
  io::worker_pool pool(ctx, 2, po);
  EXPECT_TRUE(wait_until([&] {
    const ram_stats st = strand.heap().get_stats();
    return st.pending_debt == 0 && st.live_blocks <= 1; // raw's own buffer
  })) << "pending "
      << strand.heap().get_stats().pending_debt << ", live "
      << strand.heap().get_stats().live_blocks;
  pool.stop();
  pool.join();
}

TEST(HeapStrandOverride, AsioOperationMemoryOnAStrandComesFromItsHeap) {
  // Under the override, Asio's default (recycling) allocator is operator new too: a timer
  // wait started on the strand allocates its operation from the strand's heap.
  asio::io_context ctx;
  auto strand = io::make_heap_strand(ctx);
  std::atomic<const void *> op_owner{nullptr};
  asio::steady_timer timer(strand);
  asio::post(strand, [&] {
    const std::uint64_t before = strand.heap().get_stats().live_blocks;
    timer.expires_after(1ms);
    timer.async_wait([&](const asio::error_code &) {});
    if (strand.heap().get_stats().live_blocks > before)
      op_owner = strand.heap().id();
  });
  io::run(ctx);
  EXPECT_EQ(op_owner.load(), strand.heap().id());
}

} // namespace
