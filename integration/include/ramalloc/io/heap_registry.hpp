// heap_registry: the per-execution-context service that knows every heap bound to the
// context's workers and heap strands.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <ramalloc/ramalloc.hpp>

#include "ramalloc/io/config.hpp"

#include <asio/any_io_executor.hpp>
#include <asio/execution_context.hpp>

namespace ramalloc::io {

namespace detail {
struct registry_core;
class heap_strand_state;
struct worker_record;
} // namespace detail

/// Who owns a heap the registry knows.
enum class heap_kind : std::uint8_t {
  worker, ///< a thread running run() / attach(): the thread's own heap
  strand  ///< a heap_strand's heap
};

/// A snapshot of one heap known to a registry (see heap_registry::heaps()).
struct heap_info {
  heap_kind kind = heap_kind::worker;
  std::uint64_t serial = 0;        ///< registration number, unique within the registry
  const void *id = nullptr;        ///< heap::id(): compare with ramalloc::query(p)->owner
  ram_stats stats{};               ///< heap::get_stats() (relaxed snapshot)
  std::uint64_t handlers = 0;      ///< handlers run (worker: by its loop; strand: on the strand)
  std::uint64_t reclaim_steps = 0; ///< budgeted reclaim steps paid by the kit for this heap
  /// Largest drop of the heap's pending debt the kit saw across one reclaim step (a lower
  /// bound of what the step paid: frees may arrive during it; workers sample every 8th
  /// step). Never above the budget.
  std::uint64_t max_step_paid = 0;
  std::uint64_t flushes = 0;       ///< idle (or pressure) flushes
  std::uint64_t service_tasks = 0; ///< strands: reclaim tasks a worker posted while it was quiet
};

/// What an `on_memory_pressure` callback is told.
struct memory_pressure {
  std::uint64_t committed_bytes = 0; ///< process-wide committed bytes when the check ran
  std::uint64_t soft_limit = 0;      ///< the limit it is above
};

/// Registry-wide options. Defaults are the ones documented in docs/integration.md.
struct registry_options {
  /// Soft limit on the process's committed bytes (ram_stats::committed_bytes); 0 = none.
  /// Initialised from RAMALLOC_SOFT_LIMIT (bytes, optional K/M/G suffix) when the
  /// registry is created. Above it the workers pay `pressure_budget_factor` times their
  /// budget, idle heaps are flushed, and the on_memory_pressure callbacks run.
  std::uint64_t soft_limit = 0;
  std::size_t pressure_budget_factor = 8;
  /// How often (at most) a worker reads the process-wide statistics for the soft limit.
  std::chrono::milliseconds pressure_check_interval{10};
  /// How many strands a worker looks at per service tick (round robin).
  std::size_t strands_per_tick = 16;
  /// Default debt budget and step length of heap strands (strand_options overrides).
  std::size_t strand_reclaim_budget = 32;
  std::size_t strand_handlers_per_step = 64;
};

/// Handle returned by on_memory_pressure, to remove the callback.
using pressure_subscription = std::uint64_t;

/// An `asio::execution_context::service` (one per context, created on first use with
/// `asio::use_service<ramalloc::io::heap_registry>(ctx)`; run(), worker_pool and
/// make_heap_strand create it for you). It knows every heap bound to the context's
/// workers (threads inside run()/attach()) and heap strands: counts, per-heap
/// statistics, options and memory-pressure callbacks. Its workers use it to service
/// strands that went quiet (their debt is paid by a budgeted task posted onto the strand,
/// so the one-owner rule holds) and to watch the soft limit.
///
/// `shutdown()` (the context's shutdown, before pending handlers are destroyed) frees
/// nothing: destroying those handlers may still free into the strands' heaps. Memory goes
/// back in the destructor: strand heaps still registered are flushed and the pressure
/// callbacks (and the executors they hold) are destroyed.
///
/// Thread-safety: every member function may be called from any thread. Counting and
/// snapshot functions are O(heaps) under the registry's mutex (never on an allocation
/// path).
class heap_registry : public asio::execution_context::service {
public:
  /// The service key (Asio's service identification).
  static asio::execution_context::id id;

  explicit heap_registry(asio::execution_context &ctx);
  ~heap_registry() override;
  heap_registry(const heap_registry &) = delete;
  heap_registry &operator=(const heap_registry &) = delete;

  /// Number of heaps known: workers plus strands.
  std::size_t heap_count() const;
  std::size_t worker_count() const;
  std::size_t strand_count() const;
  /// A snapshot of every heap, workers first in registration order, then strands.
  std::vector<heap_info> heaps() const;
  /// The snapshot of the heap with this id (heap::id()), if the registry knows it.
  std::optional<heap_info> find(const void *heap_id) const;
  /// Sum of the statistics of the heaps this registry knows (not the whole process:
  /// use ramalloc::get_stats() for that).
  ram_stats totals() const;

  registry_options options() const;
  void set_options(const registry_options &opts);
  /// Shorthand for changing only the soft limit (0 removes it).
  void set_soft_limit(std::uint64_t bytes);

  /// Registers `callback` to run on `executor` (post) whenever a worker finds the
  /// process above the soft limit: once when the limit is crossed and again at most once
  /// per pressure_check_interval while it stays above, never twice concurrently. Use it
  /// to shed memory (drop cache entries...). Runs until removed or the registry is
  /// destroyed (which destroys the callback and the executor copy).
  pressure_subscription on_memory_pressure(asio::any_io_executor executor,
                                           std::function<void(const memory_pressure &)> callback);
  /// Removes a callback; a run already posted still happens. Returns false when unknown.
  bool remove_memory_pressure(pressure_subscription subscription);
  /// True while the last check found the process above the soft limit.
  bool under_pressure() const noexcept;
  /// Number of pressure episodes (crossings of the limit from below) seen so far.
  std::uint64_t pressure_episodes() const noexcept;

  /// One service tick, as the kit's loops do it: services up to strands_per_tick quiet
  /// strands (posting a budgeted reclaim task onto each that has debt), checks the soft
  /// limit, and logs the core error reports queued since the last tick. Call it from
  /// your own loop if you do not use run(). Bounded: O(strands_per_tick + callbacks).
  void service_tick();

  /// Internal: the shared state (strands and loops hold it).
  const std::shared_ptr<detail::registry_core> &core() const noexcept { return core_; }

private:
  void shutdown() override;
  std::shared_ptr<detail::registry_core> core_;
};

} // namespace ramalloc::io
