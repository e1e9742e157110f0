// worker_pool: threads running the kit's loop, exceptions carried to join().
#include <ramalloc/io/logger.hpp>
#include <ramalloc/io/worker_pool.hpp>

#include <stdexcept>

#include "loop_internal.hpp"

namespace ramalloc::io {

worker_pool::worker_pool(asio::io_context &ctx, std::size_t threads, pool_options opts)
    : ctx_(ctx), opts_(std::move(opts)) {
  if (threads == 0)
    throw std::invalid_argument("ramalloc::io::worker_pool: needs at least one thread");
  guard_.emplace(ctx_.get_executor());
  threads_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this, i] { worker_main(i); });
  } catch (...) {
    // Could not start them all: stop and wait for those that did, then report.
    stop();
    guard_.reset();
    for (auto &t : threads_)
      t.join();
    throw;
  }
}

worker_pool::~worker_pool() {
  stop();
  try {
    join();
  } catch (const std::exception &e) {
    logger()->error("ramalloc: worker_pool destroyed with an exception nobody joined: {}",
                    e.what());
  } catch (...) {
    logger()->error("ramalloc: worker_pool destroyed with an exception nobody joined");
  }
}

void worker_pool::stop() noexcept {
  ctx_.stop();
}

void worker_pool::join() {
  if (!joined_) {
    guard_.reset();
    for (auto &t : threads_)
      if (t.joinable())
        t.join();
    joined_ = true;
  }
  std::exception_ptr e;
  {
    std::lock_guard lock(mutex_);
    e = std::exchange(first_exception_, nullptr);
  }
  if (e)
    std::rethrow_exception(e);
}

void worker_pool::worker_main(std::size_t index) noexcept {
  const auto fail = [this](std::exception_ptr e) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (!first_exception_)
        first_exception_ = std::move(e);
    }
    exception_count_.fetch_add(1, std::memory_order_relaxed);
    if (opts_.stop_on_exception)
      ctx_.stop();
  };
  std::size_t handlers = 0;
  bool started = true;
  try {
    if (opts_.on_thread_start)
      opts_.on_thread_start(index);
  } catch (...) {
    started = false;
    fail(std::current_exception());
  }
  if (started) {
    try {
      detail::run_counted(ctx_, opts_.loop, handlers);
    } catch (...) {
      // The worker ends here; its heap is handed off when the thread exits.
      fail(std::current_exception());
    }
  }
  handlers_.fetch_add(handlers, std::memory_order_relaxed);
  try {
    if (opts_.on_thread_exit)
      opts_.on_thread_exit(index);
  } catch (...) {
    fail(std::current_exception());
  }
}

} // namespace ramalloc::io
