// The registry's shared state: what heap_registry, heap strands and the loops share.
// Internal to integration/src.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include <ramalloc/io/heap_registry.hpp>
#include <ramalloc/io/heap_strand.hpp>

namespace ramalloc::io::detail {

/// Milliseconds on the steady clock (the loops' and the registry's time base).
inline std::int64_t steady_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// A thread inside run()/attach(): lives on that thread's stack for the loop's duration.
/// Counters are written by the worker only (plain adds) and read by snapshots.
struct worker_record {
  explicit worker_record(ramalloc::heap &h) noexcept : heap(&h) {}
  ramalloc::heap *heap;
  std::uint64_t serial = 0;
  std::atomic<std::uint64_t> handlers{0}, steps{0}, max_paid{0}, flushes{0};
};

/// A memory-pressure callback with the executor it runs on.
struct pressure_callback {
  pressure_subscription id = 0;
  asio::any_io_executor executor;
  std::function<void(const memory_pressure &)> function;
  std::atomic<bool> queued{false}; ///< a run is posted and not finished
};

struct registry_core {
  mutable std::mutex mutex;
  std::vector<worker_record *> workers;
  /// Strands and a weak reference to each (to post service tasks that keep the state
  /// alive). Index i of both vectors is the same strand; removal swaps with the last.
  std::vector<heap_strand_state *> strands;
  std::vector<std::weak_ptr<heap_strand_state>> strand_refs;
  std::size_t cursor = 0;
  std::uint64_t next_serial = 1;
  registry_options opts;
  std::vector<std::shared_ptr<pressure_callback>> callbacks;
  pressure_subscription next_subscription = 1;
  bool shut_down = false;

  // Read without the mutex by the loops.
  std::atomic<std::uint64_t> soft_limit{0};
  std::atomic<std::size_t> pressure_factor{8};
  std::atomic<std::int64_t> pressure_interval_ms{10};
  std::atomic<std::int64_t> last_pressure_check_ms{0};
  std::atomic<bool> pressure{false};
  std::atomic<std::uint64_t> episodes{0};
  std::atomic<bool> ticking{false}; ///< one service tick at a time

  void add_worker(worker_record *w);
  void remove_worker(worker_record *w) noexcept;
  std::uint64_t add_strand(heap_strand_state *s, std::weak_ptr<heap_strand_state> ref);
  void remove_strand(heap_strand_state *s) noexcept;

  void apply(const registry_options &o);
  /// The soft-limit check: rate-limited, at most one thread reads the statistics.
  void check_pressure(std::int64_t now_ms);
  /// Services up to strands_per_tick quiet strands. `flush_after_ms`: a strand quiet
  /// that long (and not flushed since it last ran) gets a flush task.
  void service_strands(std::int64_t now_ms, std::int64_t flush_after_ms);
  /// The whole tick (one thread at a time; a concurrent call returns at once).
  void tick(std::int64_t now_ms, std::int64_t flush_after_ms);
};

} // namespace ramalloc::io::detail
