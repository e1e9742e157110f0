// heap_strand and handler_allocator: an Asio executor whose handlers allocate from the
// strand's own heap, on whichever worker runs them; zones torn down whole.
#include <gtest/gtest.h>

#include "kit_test_support.hpp"

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

namespace {

using namespace kit_test;
namespace io = ramalloc::io;
using strand_t = io::heap_strand<asio::io_context::executor_type>;

const void *owner_of(const void *p) {
  auto info = ramalloc::query(p);
  return info ? info->owner : nullptr;
}

// --- the executor model ------------------------------------------------------------------

static_assert(asio::execution::is_executor<strand_t>::value,
              "a heap_strand is a standard (P0443) executor");
static_assert(asio::is_executor<strand_t>::value,
              "a heap_strand is a Networking TS executor when the inner executor is one");
static_assert(asio::can_require<strand_t, asio::execution::blocking_t::never_t>::value);
static_assert(asio::can_prefer<strand_t, asio::execution::outstanding_work_t::tracked_t>::value);
static_assert(asio::can_prefer<strand_t, asio::execution::relationship_t::continuation_t>::value);
static_assert(asio::can_query<strand_t, asio::execution::context_t>::value);
static_assert(std::is_convertible_v<strand_t, asio::any_io_executor>);
static_assert(std::is_nothrow_copy_constructible_v<strand_t>);

TEST(HeapStrand, ForwardsPropertiesAndComparesByHeapAndStrand) {
  asio::io_context ctx;
  strand_t a = io::make_heap_strand(ctx);
  strand_t b = io::make_heap_strand(ctx.get_executor());
  strand_t a2 = a;
  EXPECT_TRUE(a == a2);
  EXPECT_FALSE(a == b);
  EXPECT_NE(a.heap().id(), b.heap().id());
  EXPECT_EQ(&asio::query(a, asio::execution::context),
            &static_cast<asio::execution_context &>(ctx));
  EXPECT_EQ(&a.context(), &static_cast<asio::execution_context &>(ctx));

  auto never = asio::require(a, asio::execution::blocking.never);
  EXPECT_EQ(asio::query(never, asio::execution::blocking), asio::execution::blocking.never);
  EXPECT_EQ(never.heap().id(), a.heap().id()) << "require keeps the heap";
  auto tracked = asio::prefer(a, asio::execution::outstanding_work.tracked);
  EXPECT_EQ(asio::query(tracked, asio::execution::outstanding_work),
            asio::execution::outstanding_work.tracked);
  EXPECT_EQ(tracked.heap().id(), a.heap().id());

  asio::any_io_executor erased = a;
  EXPECT_TRUE(erased == asio::any_io_executor(a2));

  auto &registry = asio::use_service<io::heap_registry>(ctx);
  EXPECT_EQ(registry.strand_count(), 2u);
  EXPECT_EQ(registry.worker_count(), 0u);
}

// --- the heap is current in the strand's handlers, on any worker ---------------------------

TEST(HeapStrand, TwoStrandsOnFourWorkersAllocateFromTheirOwnHeapOneThreadAtATime) {
  asio::io_context ctx;
  std::array<strand_t, 2> strands{io::make_heap_strand(ctx), io::make_heap_strand(ctx)};
  struct per_strand {
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> wrong_current{0};
    std::atomic<int> wrong_owner{0};
    std::mutex mutex;
    std::set<std::thread::id> threads;
  };
  std::array<per_strand, 2> seen;
  const int handlers = under_sanitizer() ? 1500 : 6000;
  std::atomic<int> done{0};
  std::vector<void *> blocks[2];

  {
    io::worker_pool pool(ctx, 4);
    for (int i = 0; i < handlers; ++i) {
      for (int s = 0; s < 2; ++s) {
        asio::post(strands[s], [&, s] {
          per_strand &me = seen[s];
          if (me.inside.fetch_add(1) != 0)
            me.overlaps.fetch_add(1);
          if (ramalloc::current_heap().id() != strands[s].heap().id())
            me.wrong_current.fetch_add(1);
          void *p = ramalloc::acquire(48);
          if (owner_of(p) != strands[s].heap().id())
            me.wrong_owner.fetch_add(1);
          blocks[s].push_back(p); // the strand serialises this vector
          {
            std::lock_guard lock(me.mutex);
            me.threads.insert(std::this_thread::get_id());
          }
          me.inside.fetch_sub(1);
          done.fetch_add(1);
        });
      }
    }
    ASSERT_TRUE(wait_until([&] { return done.load() == 2 * handlers; }, 60s));
    pool.join();
  }
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(seen[s].overlaps.load(), 0) << "strand " << s << " ran two handlers at once";
    EXPECT_EQ(seen[s].wrong_current.load(), 0) << "the strand's heap was not current";
    EXPECT_EQ(seen[s].wrong_owner.load(), 0) << "a block did not come from the strand's heap";
    std::printf("[ info ] strand %d ran on %zu worker threads\n", s, seen[s].threads.size());
    EXPECT_EQ(strands[s].heap().get_stats().live_blocks, blocks[s].size());
    for (void *p : blocks[s])
      ramalloc::discard(p);
  }
}

TEST(HeapStrandDeathTest, TwoThreadsInsideOneHeapStrandIsAFatalErrorWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  asio::io_context ctx;
  strand_t s = io::make_heap_strand(ctx);
  // What a handler run through the raw asio::strand and one run through the heap strand
  // at the same time would do: a second thread enters while the first is still inside.
  EXPECT_DEATH(
      {
        std::thread([&] { (void)s.state()->enter(); }).join(); // entered, never left
        (void)s.state()->enter();
      },
      "entered by two threads at once");
}

TEST(HeapStrand, InlineDispatchNestsHeapsAndRestoresThePreviousOne) {
  asio::io_context ctx;
  strand_t a = io::make_heap_strand(ctx);
  strand_t b = io::make_heap_strand(ctx);
  const void *worker_heap = nullptr;
  const void *in_a_before = nullptr, *in_b = nullptr, *in_a_after = nullptr, *in_a_again = nullptr;
  bool b_ran_inline = false, a_ran_inline = false;
  asio::post(ctx, [&] {
    worker_heap = ramalloc::current_heap().id();
    asio::dispatch(a, [&] {
      in_a_before = ramalloc::current_heap().id();
      bool returned = false;
      asio::dispatch(b, [&] {
        b_ran_inline = !returned;
        in_b = owner_of(ramalloc::acquire(32));
      });
      returned = true;
      in_a_after = ramalloc::current_heap().id();
      bool returned_a = false;
      asio::dispatch(a, [&] { // already in a: runs inline, heap unchanged
        a_ran_inline = !returned_a;
        in_a_again = ramalloc::current_heap().id();
      });
      returned_a = true;
    });
  });
  io::run(ctx);
  EXPECT_TRUE(b_ran_inline) << "dispatch to an idle strand from a worker runs inline";
  EXPECT_TRUE(a_ran_inline);
  EXPECT_EQ(in_a_before, a.heap().id());
  EXPECT_EQ(in_b, b.heap().id()) << "inside the nested strand its own heap is current";
  EXPECT_EQ(in_a_after, a.heap().id()) << "leaving the nested strand restores a's heap";
  EXPECT_EQ(in_a_again, a.heap().id());
  EXPECT_NE(worker_heap, a.heap().id());
  EXPECT_EQ(ramalloc::current_heap().id(), worker_heap) << "the worker's heap is back";
}

TEST(HeapStrand, BindExecutorTimersAndCoroutinesRunWithTheStrandHeap) {
  asio::io_context ctx;
  strand_t s = io::make_heap_strand(ctx);
  std::vector<const void *> owners;
  asio::steady_timer timer(ctx, 1ms);
  timer.async_wait(asio::bind_executor(s, [&](const asio::error_code &ec) {
    EXPECT_FALSE(ec);
    EXPECT_TRUE(s.running_in_this_thread());
    owners.push_back(owner_of(ramalloc::acquire(24)));
  }));
  asio::co_spawn(
      s,
      [&]() -> asio::awaitable<void> {
        owners.push_back(owner_of(ramalloc::acquire(40)));
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);
        owners.push_back(owner_of(ramalloc::acquire(40))); // resumed on the strand
        co_return;
      },
      asio::detached);
  // An I/O object constructed on the strand completes on it.
  asio::steady_timer on_strand(s, 2ms);
  on_strand.async_wait(
      [&](const asio::error_code &) { owners.push_back(owner_of(ramalloc::acquire(56))); });
  io::run(ctx);
  ASSERT_EQ(owners.size(), 4u);
  for (const void *o : owners)
    EXPECT_EQ(o, s.heap().id());
  EXPECT_EQ(s.heap().get_stats().live_blocks, 4u); // leaked on purpose: the heap keeps them
}

// --- handler_allocator -----------------------------------------------------------------

TEST(HandlerAllocator, IsAnAllocatorThatRebindsComparesEqualAndChecksSizes) {
  io::handler_allocator<int> ints;
  io::handler_allocator<double> doubles(ints);
  EXPECT_TRUE(ints == doubles);
  static_assert(
      std::is_same_v<std::allocator_traits<io::handler_allocator<int>>::rebind_alloc<long>,
                     io::handler_allocator<long>>);
  static_assert(std::allocator_traits<io::handler_allocator<int>>::is_always_equal::value);
  int *p = ints.allocate(10);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(owner_of(p), ramalloc::current_heap().id());
  ints.deallocate(p, 10);
  EXPECT_THROW((void)ints.allocate(std::numeric_limits<std::size_t>::max() / 2),
               std::bad_array_new_length);
  struct alignas(64) wide {
    char c[64];
  };
  io::handler_allocator<wide> w;
  wide *q = w.allocate(3);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % 64, 0u);
  w.deallocate(q, 3);
  std::vector<int, io::handler_allocator<int>> v(1000, 7);
  EXPECT_EQ(v[999], 7);

  auto bound = asio::bind_allocator(io::handler_allocator<void>(), [] {});
  static_assert(
      std::is_same_v<asio::associated_allocator_t<decltype(bound)>, io::handler_allocator<void>>);
}

/// A handler type whose associated allocator is handler_allocator (the member form).
struct counting_handler {
  using allocator_type = io::handler_allocator<void>;
  allocator_type get_allocator() const noexcept { return {}; }
  std::atomic<int> *calls;
  void operator()(const asio::error_code &) const { calls->fetch_add(1); }
};
static_assert(std::is_same_v<asio::associated_allocator_t<counting_handler>,
                             io::handler_allocator<void>>);

TEST(HandlerAllocator, AsTheAssociatedAllocatorOfAHandlerTypeItFeedsTheStrandHeap) {
  asio::io_context ctx;
  auto s = io::make_heap_strand(ctx);
  asio::steady_timer timer(s);
  std::atomic<int> calls{0};
  std::uint64_t live_during_wait = 0, live_before = 0;
  asio::post(s, [&] {
    live_before = s.heap().get_stats().live_blocks;
    timer.expires_after(1ms);
    timer.async_wait(counting_handler{&calls}); // the wait operation: from the strand heap
    live_during_wait = s.heap().get_stats().live_blocks;
  });
  io::run(ctx);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(live_during_wait, live_before + 1) << "the operation came from the strand's heap";
  // Asio freed it before calling the handler, outside the strand: a remote free, owed
  // by the strand's heap until one of its debt steps settles it.
  EXPECT_GE(s.heap().get_stats().pending_debt, 1u);
  asio::post(s, [&] { s.heap().reclaim(8); });
  ctx.restart();
  io::run(ctx);
  EXPECT_EQ(s.heap().get_stats().live_blocks, live_before) << "and went back to it";
}

/// Wraps handler_allocator and records, for each allocation made on the strand, which
/// heap the block came from: what Asio's composed operations allocate through it.
struct allocation_log {
  std::mutex mutex;
  std::vector<const void *> on_strand_owners;
  std::size_t off_strand = 0;
  const strand_t *strand = nullptr;
};

template <typename T>
struct recording_allocator {
  using value_type = T;
  allocation_log *log;
  explicit recording_allocator(allocation_log *l) noexcept : log(l) {}
  template <typename U>
  recording_allocator(const recording_allocator<U> &o) noexcept : log(o.log) {}
  T *allocate(std::size_t n) {
    T *p = io::handler_allocator<T>().allocate(n);
    std::lock_guard lock(log->mutex);
    if (log->strand->running_in_this_thread())
      log->on_strand_owners.push_back(owner_of(p));
    else
      ++log->off_strand;
    return p;
  }
  void deallocate(T *p, std::size_t n) noexcept { io::handler_allocator<T>().deallocate(p, n); }
  template <typename U>
  bool operator==(const recording_allocator<U> &o) const noexcept {
    return log == o.log;
  }
  template <typename U>
  bool operator!=(const recording_allocator<U> &o) const noexcept {
    return log != o.log;
  }
};

TEST(HandlerAllocator, ComposedOperationsOnAStrandAllocateFromItsHeap) {
  asio::io_context ctx;
  strand_t s = io::make_heap_strand(ctx);
  allocation_log timers, posts, writes, reads;
  for (auto *l : {&timers, &posts, &writes, &reads})
    l->strand = &s;

  asio::ip::tcp::acceptor acceptor(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket server(s), client(s);
  std::array<char, 4096> out{}, in{};
  out.fill('x');
  std::atomic<bool> read_done{false}, wrote{false}, posted{false}, waited{false};
  asio::steady_timer timer(s);

  acceptor.async_accept(server, [&](const asio::error_code &ec) { ASSERT_FALSE(ec); });
  client.async_connect(
      acceptor.local_endpoint(), asio::bind_executor(s, [&](const asio::error_code &ec) {
        ASSERT_FALSE(ec);
        // All initiated from a strand handler, so their operation memory comes from the
        // strand's heap through the associated allocator.
        timer.expires_after(1ms);
        timer.async_wait(asio::bind_allocator(recording_allocator<void>(&timers),
                                              [&](const asio::error_code &) { waited = true; }));
        asio::post(s,
                   asio::bind_allocator(recording_allocator<void>(&posts), [&] { posted = true; }));
        asio::async_write(client, asio::buffer(out),
                          asio::bind_allocator(recording_allocator<void>(&writes),
                                               [&](const asio::error_code &e, std::size_t n) {
                                                 EXPECT_FALSE(e);
                                                 EXPECT_EQ(n, out.size());
                                                 wrote = true;
                                               }));
        asio::async_read(server, asio::buffer(in),
                         asio::bind_allocator(recording_allocator<void>(&reads),
                                              [&](const asio::error_code &e, std::size_t n) {
                                                EXPECT_FALSE(e);
                                                EXPECT_EQ(n, in.size());
                                                read_done = true;
                                              }));
      }));
  {
    io::worker_pool pool(ctx, 2);
    ASSERT_TRUE(wait_until([&] { return read_done && wrote && posted && waited; }, 30s));
    pool.join();
  }
  EXPECT_EQ(in, out);
  for (auto *l : {&timers, &posts, &writes, &reads}) {
    EXPECT_FALSE(l->on_strand_owners.empty()) << "the operation allocated through the allocator";
    for (const void *o : l->on_strand_owners)
      EXPECT_EQ(o, s.heap().id());
  }
}

// --- quiet strands -------------------------------------------------------------------------

TEST(HeapStrand, FreesIntoAQuietStrandAreRepaidWithinAFewTicksOnTheStrand) {
  asio::io_context ctx;
  io::strand_options so;
  so.reclaim_budget = 8;
  so.handlers_per_step = 1000000; // the strand itself never pays: only the service does
  strand_t s = io::make_heap_strand(ctx, so);
  auto &registry = asio::use_service<io::heap_registry>(ctx);
  io::pool_options po;
  po.loop.service_tick = 20ms;
  po.loop.idle_flush_delay = 60000ms; // no flush: the debt must be paid step by step
  io::worker_pool pool(ctx, 2, po);

  // 64 pages' worth of 1 KiB blocks, allocated by one strand handler.
  constexpr std::size_t count = 64 * 64;
  std::vector<void *> blocks;
  std::atomic<bool> allocated{false};
  asio::post(s, [&] {
    for (std::size_t i = 0; i < count; ++i)
      blocks.push_back(ramalloc::acquire(1024));
    allocated = true;
  });
  // The strand counts a handler once it has returned, after `allocated` is set: wait for
  // the count too, or `before` may miss the handler (seen under ASan).
  ASSERT_TRUE(wait_until(
      [&] { return allocated.load() && info_of(registry, s.heap().id()).handlers >= 1; }));
  const io::heap_info before = info_of(registry, s.heap().id());
  // Another thread frees them all; the strand runs no handler from now on.
  std::thread([&] {
    for (void *p : blocks)
      ramalloc::discard(p);
  }).join();
  const std::uint64_t debt = s.heap().get_stats().pending_debt;
  EXPECT_GT(debt, 8u) << "the remote frees left debt on the strand's heap";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return s.heap().get_stats().pending_debt == 0; },
                         std::chrono::milliseconds(20 * (debt / 8 + 10)) + slack()));
  const auto took = std::chrono::steady_clock::now() - t0;
  const io::heap_info after = info_of(registry, s.heap().id());
  EXPECT_EQ(after.handlers, before.handlers) << "no handler of the strand's own ran";
  EXPECT_GE(after.service_tasks - before.service_tasks, (debt + 7) / 8)
      << "paid in budgeted steps (8 units each), one service task per step";
  EXPECT_LE(after.max_step_paid, 8u) << "no step paid more than the budget";
  EXPECT_EQ(after.stats.live_blocks, 0u);
  std::printf(
      "[ info ] %llu units of debt repaid in %lld ms by %llu service tasks\n",
      static_cast<unsigned long long>(debt),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
      static_cast<unsigned long long>(after.service_tasks - before.service_tasks));
  pool.stop();
  pool.join();
}

// --- zones: release_all ----------------------------------------------------------------------

TEST(HeapStrand, ReleaseAllFreesAMillionObjectsInPageStepsAndStalePointersAreReported) {
  ramalloc::options o = ramalloc::get_options();
  o.on_invalid = ramalloc::options::on_invalid_mode::warn; // a stale free is reported, not fatal
  ramalloc::set_options(o);
  struct capture {
    std::atomic<int> invalid{0};
  } reports;
  ram_set_error_handler(
      [](ram_error e, const void *, const char *, void *ctx) {
        if (e == RAM_ERROR_INVALID_FREE)
          static_cast<capture *>(ctx)->invalid.fetch_add(1);
      },
      &reports);

  asio::io_context ctx;
  io::strand_options so;
  so.teardown = io::strand_teardown::release_all;
  auto s = std::make_optional(io::make_heap_strand(ctx, so));
  constexpr std::size_t objects = 1000000;
  void *stale = nullptr;
  std::size_t spans = 0, pages = 0;
  std::size_t rss_full = 0, rss_released = 0;
  const std::size_t rss_before = ramalloc_test_common::resident_bytes();
  asio::post(*s, [&] {
    for (std::size_t i = 0; i < objects; ++i) {
      void *p = ramalloc::acquire(16);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xA5, 16); // resident
      if (i == objects / 2)
        stale = p;
    }
    const ram_stats st = s->heap().get_stats();
    EXPECT_EQ(st.live_blocks, objects);
    pages = st.committed_bytes / (64 * 1024);
    rss_full = ramalloc_test_common::resident_bytes();
    spans = s->release_all(); // from a handler: the strand is the owner
    rss_released = ramalloc_test_common::resident_bytes();
    EXPECT_EQ(s->heap().get_stats().live_blocks, 0u);
  });
  io::run(ctx);
  std::printf("[ info ] release_all: %zu objects in %zu pages, %zu span steps; RSS %zu -> %zu "
              "-> %zu KiB\n",
              objects, pages, spans, rss_before / 1024, rss_full / 1024, rss_released / 1024);
  EXPECT_LE(spans, pages + 16) << "steps follow pages, not objects";
  EXPECT_LT(spans, objects / 100);
  if (!under_sanitizer()) {
    const std::size_t held = rss_full - rss_before;
    EXPECT_GE(held, objects * 16 * 9 / 10) << "the objects were resident";
    EXPECT_LE(rss_released, rss_before + held / 10) << "RSS fell back by what the heap held";
  }
  EXPECT_THROW(s->release_all(), std::logic_error) << "only from a handler of the strand";

  // A stale pointer freed later is reported and changes nothing.
  const std::uint64_t invalid_before = ramalloc::get_stats().invalid_frees;
  ramalloc::discard(stale);
  EXPECT_EQ(ramalloc::get_stats().invalid_frees, invalid_before + 1);
  EXPECT_EQ(reports.invalid.load(), 1);
  // The zone's heap is usable again; dropping the last copy tears it down the same way.
  asio::post(*s, [&] { stale = ramalloc::acquire(16); });
  ctx.restart();
  io::run(ctx);
  s.reset();
  ramalloc::discard(stale);
  EXPECT_EQ(ramalloc::get_stats().invalid_frees, invalid_before + 2)
      << "teardown release_all freed the zone's last block";
  ram_set_error_handler(nullptr, nullptr);
}

TEST(HeapRegistry, ShutdownFreesNothingTheDestructorGivesMemoryBack) {
  const std::uint64_t invalid_before = ramalloc::get_stats().invalid_frees;
  bool destroyed = false;
  std::uint64_t strand_committed = 0, committed_with_strand = 0;
  {
    asio::io_context ctx;
    std::optional<strand_t> s(io::make_heap_strand(ctx));
    void *block = nullptr;
    asio::post(*s, [&] {
      block = ramalloc::acquire(4096);
      for (int i = 0; i < 200; ++i) // free pages for the teardown to return
        ramalloc::discard(ramalloc::acquire(8192));
    });
    io::run(ctx);
    ASSERT_NE(block, nullptr);
    // A handler that never runs holds the block and the last copy of the strand. The
    // context's shutdown destroys it after the registry's shutdown(): its destructor
    // frees into the strand's heap, which must still be there.
    struct owner {
      void *p;
      std::optional<strand_t> strand;
      bool *flag;
      owner(void *q, strand_t st, bool *f) : p(q), strand(std::move(st)), flag(f) {}
      owner(owner &&o) noexcept
          : p(std::exchange(o.p, nullptr)), strand(std::move(o.strand)), flag(o.flag) {
        o.strand.reset();
      }
      ~owner() {
        if (p != nullptr) {
          ramalloc::discard(p);
          *flag = true;
        }
      }
      void operator()() {}
    };
    ctx.restart();
    strand_committed = s->heap().get_stats().committed_bytes;
    asio::post(ctx, owner(block, *s, &destroyed));
    s.reset();
    EXPECT_EQ(asio::use_service<io::heap_registry>(ctx).strand_count(), 1u);
    committed_with_strand = ramalloc::get_stats().committed_bytes;
  } // ~io_context: registry shutdown (frees nothing), handler destroyed, strand heap gone
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(ramalloc::get_stats().invalid_frees, invalid_before)
      << "the pending handler freed into a live heap";
  EXPECT_GT(strand_committed, 0u);
  EXPECT_LE(ramalloc::get_stats().committed_bytes + strand_committed * 9 / 10,
            committed_with_strand)
      << "the strand heap's memory went back once the context was destroyed";
}

} // namespace
