// The shared state behind heap_strand copies: the heap, its debt bookkeeping and the
// ownership check. Internal (ramalloc::io::detail); see heap_strand.hpp.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include <ramalloc/ramalloc.hpp>

namespace ramalloc::io {

/// What happens to a heap strand's live blocks when its last copy goes away.
enum class strand_teardown : std::uint8_t {
  /// The heap is destroyed the core's way: debt paid, free memory returned, live blocks
  /// stay valid (the heap is orphaned until they are freed, from any thread).
  keep_blocks,
  /// A zone torn down whole: heap::release_all() frees every block at once, O(pages),
  /// without running a destructor. Pointers into the heap become invalid (a later free
  /// of one is reported as an invalid free, never corrupts). No other thread may free
  /// one of its blocks while the teardown runs.
  release_all
};

/// Per-strand options (0 = the registry's default).
struct strand_options {
  std::size_t reclaim_budget = 0;    ///< debt units per step (registry default: 32)
  std::size_t handlers_per_step = 0; ///< handlers between two debt steps (default: 64)
  strand_teardown teardown = strand_teardown::keep_blocks;
};

namespace detail {

struct registry_core;

/// The heap and bookkeeping shared by all copies of one heap_strand (and by the tasks
/// queued on it). Destroyed with the last of them, never while a handler runs.
class heap_strand_state : public std::enable_shared_from_this<heap_strand_state> {
public:
  heap_strand_state(std::shared_ptr<registry_core> core, const strand_options &opts);
  virtual ~heap_strand_state();
  heap_strand_state(const heap_strand_state &) = delete;
  heap_strand_state &operator=(const heap_strand_state &) = delete;

  ramalloc::heap &heap() noexcept { return heap_; }

  /// A handler of this strand starts on the calling thread: the heap's owner becomes
  /// this thread. Returns the previous owner (the same thread when strands nest inline).
  /// Two threads inside one strand at once is a broken one-owner rule: fatal.
  std::thread::id enter() noexcept {
    const std::thread::id self = std::this_thread::get_id();
    const std::thread::id previous = owner_.exchange(self, std::memory_order_acquire);
    if (previous != std::thread::id{} && previous != self) [[unlikely]]
      concurrent_entry(previous);
    return previous;
  }

  /// The handler is done: counts it, pays one budgeted debt step every
  /// `handlers_per_step` handlers, and gives ownership back.
  void leave(std::thread::id previous) noexcept {
    bump(handlers_);
    if (++since_step_ >= handlers_per_step_) [[unlikely]]
      pay_debt_step();
    owner_.store(previous, std::memory_order_release);
  }

  // --- used by the registry's service ticks (src/) -----------------------------------
  /// Queues one service task (a budgeted reclaim step, or a flush under memory
  /// pressure) on the strand, unless one is queued already. Returns whether it queued.
  bool post_service(bool flush);
  /// The body of that task (runs on the strand, with the heap current).
  void service_step(bool flush) noexcept;
  /// The service task went away (ran, or was destroyed unrun at shutdown).
  void service_done() noexcept { service_queued_.store(false, std::memory_order_release); }

  std::uint64_t serial() const noexcept { return serial_; }
  std::uint64_t handlers() const noexcept { return handlers_.load(std::memory_order_relaxed); }
  std::uint64_t reclaim_steps() const noexcept { return steps_.load(std::memory_order_relaxed); }
  std::uint64_t max_step_paid() const noexcept { return max_paid_.load(std::memory_order_relaxed); }
  std::uint64_t flushes() const noexcept { return flushes_.load(std::memory_order_relaxed); }
  std::uint64_t service_tasks() const noexcept { return services_.load(std::memory_order_relaxed); }
  /// What the last debt step left pending (0: nothing to pay, no purge due).
  std::uint64_t last_pending() const noexcept {
    return last_pending_.load(std::memory_order_relaxed);
  }
  bool running() const noexcept {
    return owner_.load(std::memory_order_relaxed) != std::thread::id{};
  }

  /// Registry bookkeeping, guarded by the registry's mutex.
  std::uint64_t seen_handlers = 0;   ///< handlers of its own at the last visit
  std::int64_t quiet_since_ms = 0;   ///< when that count last changed
  bool flushed_quiet = false;        ///< flushed since it went quiet
  std::uint64_t flushed_episode = 0; ///< the pressure episode it was last flushed in

  /// Registers with the registry (after construction: it needs weak_from_this()).
  void attach();

protected:
  /// Queues a heap-scoped service task on the strand, never running it inline.
  virtual void enqueue_service(std::shared_ptr<heap_strand_state> self, bool flush) = 0;

private:
  void pay_debt_step() noexcept;
  [[noreturn]] void concurrent_entry(std::thread::id other) noexcept;
  /// Counters written only by the owner and read by anyone (a plain add, no RMW).
  static void bump(std::atomic<std::uint64_t> &c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  ramalloc::heap heap_;
  std::shared_ptr<registry_core> core_;
  std::atomic<std::thread::id> owner_{};
  std::atomic<std::uint64_t> handlers_{0}, steps_{0}, max_paid_{0}, flushes_{0}, services_{0},
      last_pending_{0};
  std::atomic<bool> service_queued_{false};
  std::size_t since_step_ = 0;
  std::size_t reclaim_budget_;
  std::size_t handlers_per_step_;
  strand_teardown teardown_;
  std::uint64_t serial_ = 0;
  bool attached_ = false;
};

/// Runs a function object with a strand's heap current and the strand's bookkeeping
/// around it. Holds the state, so the heap outlives every handler that uses it.
template <typename Function>
class heap_invoker {
public:
  template <typename F>
  heap_invoker(std::shared_ptr<heap_strand_state> state, F &&f)
      : state_(std::move(state)), function_(std::forward<F>(f)) {}

  void operator()() {
    // The heap becomes current before the owner check and stops being current only
    // after the debt step in leave(): the guard is destroyed before the scope.
    ramalloc::heap_scope scope(state_->heap());
    const entry_guard guard(*state_);
    std::move(function_)();
  }

private:
  struct entry_guard {
    explicit entry_guard(heap_strand_state &s) noexcept : state(s), previous(s.enter()) {}
    ~entry_guard() { state.leave(previous); }
    entry_guard(const entry_guard &) = delete;
    entry_guard &operator=(const entry_guard &) = delete;
    heap_strand_state &state;
    std::thread::id previous;
  };

  std::shared_ptr<heap_strand_state> state_;
  Function function_;
};

} // namespace detail
} // namespace ramalloc::io
