// run(): the per-worker service loop, and attach() for asio::thread_pool users.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "ramalloc/io/config.hpp"

#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>

namespace ramalloc::io {

/// How a worker loop services its heap. Defaults suit a server with sub-millisecond
/// handlers; docs/integration.md and docs/tuning.md discuss the trade-offs.
struct loop_options {
  /// Debt units paid with ramalloc::reclaim(budget) between two batches (the worker's
  /// heap first, spare budget to orphaned heaps). Never 0 (0 is taken as 1).
  std::size_t reclaim_budget = 32;
  /// At most this many handlers run between two reclaim steps (a bounded batch).
  std::size_t handlers_per_step = 64;
  /// Once the worker has run no handler for this long, it flushes its heap (pays all
  /// debt, purges free pages) — once per idle period.
  std::chrono::milliseconds idle_flush_delay{1000};
  /// The service tick: how often a worker services quiet strands, checks the soft limit
  /// and logs queued core error reports. An idle worker blocks in the reactor and wakes
  /// once per tick (or at its idle-flush deadline), never more often: no spinning.
  std::chrono::milliseconds service_tick{50};
  /// When non-zero, sets the registry's soft limit on committed bytes (see
  /// registry_options::soft_limit, RAMALLOC_SOFT_LIMIT).
  std::uint64_t soft_limit = 0;
};

/// The per-worker service loop: call it instead of `ctx.run()` on each worker thread.
///
/// Binds the calling thread's heap (ramalloc::current_heap()) and registers it with the
/// context's heap_registry for the duration; the heap stays the thread's for the
/// thread's lifetime and is handed off by the core in O(1) when the thread exits (even
/// after an exception). Runs handlers in batches of at most `handlers_per_step`, paying
/// `reclaim(reclaim_budget)` between batches (times the pressure factor while above the
/// soft limit); an idle worker with inbox debt left keeps paying it, one budgeted step at
/// a time, before it blocks; flushes once idle for `idle_flush_delay` (at once under
/// pressure); while idle, blocks in the reactor until a handler is ready or the next tick.
///
/// Returns like `io_context::run()`: when the context is stopped or runs out of work.
/// Returns the number of handlers run (the kit's own service tasks included). An
/// exception thrown by a handler propagates to the caller (the heap's registration is
/// undone on the way out); the loop may be entered again, as `run()` may.
///
/// Thread-safety: any number of threads may run it on the same context.
std::size_t run(asio::io_context &ctx, const loop_options &opts = {});

/// The same loop for an `asio::thread_pool` built with zero threads of its own: each of
/// your threads calls `attach(pool)` (instead of `pool.attach()`) and serves the pool
/// until `pool.stop()`, or until `pool.wait()` has been called and the work runs out.
/// Uses the pool's scheduler through Asio's detail interface (standalone Asio 1.22).
std::size_t attach(asio::thread_pool &pool, const loop_options &opts = {});

} // namespace ramalloc::io
