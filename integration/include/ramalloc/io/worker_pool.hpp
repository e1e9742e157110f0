// worker_pool: N threads running the kit's loop on one io_context.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ramalloc/io/config.hpp"
#include "ramalloc/io/loop.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

namespace ramalloc::io {

/// Options of a worker_pool.
struct pool_options {
  /// Runs first on each worker thread, in that thread, with its index (0..threads-1).
  std::function<void(std::size_t index)> on_thread_start;
  /// Runs last on each worker thread, in that thread, whatever made the worker stop
  /// (join, stop, or a handler that threw). The heap is handed off after it returns.
  std::function<void(std::size_t index)> on_thread_exit;
  /// The loop each worker runs.
  loop_options loop;
  /// When a handler throws, stop the io_context so join() returns (and rethrows) at
  /// once; otherwise the other workers go on and only that worker exits.
  bool stop_on_exception = true;
};

/// A fixed set of threads, each running ramalloc::io::run() on `ctx`. While the pool
/// lives it keeps the context from running out of work (a work guard), so idle workers
/// wait in the reactor.
///
/// A worker that exits — at join(), on stop(), or because a handler threw — hands its
/// heap off in O(1) through the core's thread-exit path: live blocks it allocated stay
/// valid and are freed later by other threads, and the core's orphan counters account
/// for them. The first exception thrown by a handler (or a hook) is rethrown by join();
/// later ones are counted (exceptions()).
///
/// Thread-safety: stop() may be called from any thread, including a worker; join() and
/// the destructor from one thread that is not a worker.
class worker_pool {
public:
  /// Starts `threads` workers (at least 1; 0 throws std::invalid_argument).
  worker_pool(asio::io_context &ctx, std::size_t threads, pool_options opts = {});
  /// stop() then join(); an exception not yet taken by join() is logged (error level,
  /// ramalloc::io::logger()) and dropped, since a destructor must not throw.
  ~worker_pool();
  worker_pool(const worker_pool &) = delete;
  worker_pool &operator=(const worker_pool &) = delete;

  /// Stops the io_context (ctx.stop()): workers return from run() as soon as their
  /// current handler finishes. Handlers not run stay queued in the context.
  void stop() noexcept;
  /// Lets the workers finish: drops the pool's work guard and waits for every worker to
  /// exit (when the context runs out of work or is stopped). Then rethrows the first
  /// exception a handler or hook threw, once. Idempotent.
  void join();

  std::size_t size() const noexcept { return threads_.size(); }
  asio::io_context &context() const noexcept { return ctx_; }
  /// Handlers run by all workers that have exited so far.
  std::uint64_t handlers_run() const noexcept { return handlers_.load(std::memory_order_relaxed); }
  /// Exceptions thrown by handlers or hooks so far (the first is rethrown by join()).
  std::size_t exceptions() const noexcept {
    return exception_count_.load(std::memory_order_relaxed);
  }

private:
  void worker_main(std::size_t index) noexcept;

  asio::io_context &ctx_;
  pool_options opts_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::exception_ptr first_exception_;
  std::atomic<std::size_t> exception_count_{0};
  std::atomic<std::uint64_t> handlers_{0};
  bool joined_ = false;
};

} // namespace ramalloc::io
