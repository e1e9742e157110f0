// run() and attach(): the per-worker service loop.
#include <ramalloc/io/heap_registry.hpp>
#include <ramalloc/io/loop.hpp>

#include <algorithm>
#include <chrono>

#include <asio/detail/scheduler.hpp>

#include "loop_internal.hpp"
#include "registry_core.hpp"

namespace ramalloc::io {

namespace detail {

namespace {

/// The loop over an io_context, through its public interface.
struct context_target {
  asio::io_context &ctx;
  std::size_t poll_one() { return ctx.poll_one(); }
  std::size_t wait_one(std::chrono::milliseconds d) { return ctx.run_one_for(d); }
  bool stopped() const { return ctx.stopped(); }
};

/// The loop over an asio::thread_pool's scheduler (Asio's detail interface: the pool
/// does not expose poll_one/run_one, but registers its scheduler as a service).
struct scheduler_target {
  asio::detail::scheduler &sched;
  std::size_t poll_one() {
    asio::error_code ec;
    return sched.poll_one(ec);
  }
  std::size_t wait_one(std::chrono::milliseconds d) {
    asio::error_code ec;
    return sched.wait_one(static_cast<long>(d.count()) * 1000, ec);
  }
  bool stopped() const { return sched.stopped(); }
};

void store_max(std::atomic<std::uint64_t> &slot, std::uint64_t v) noexcept {
  if (v > slot.load(std::memory_order_relaxed))
    slot.store(v, std::memory_order_relaxed);
}
void add(std::atomic<std::uint64_t> &slot, std::uint64_t v) noexcept {
  slot.store(slot.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

/// Unregisters the worker however the loop ends (an exception included).
struct registration {
  registry_core &core;
  worker_record &record;
  registration(registry_core &c, worker_record &r) : core(c), record(r) { core.add_worker(&r); }
  ~registration() { core.remove_worker(&record); }
  registration(const registration &) = delete;
  registration &operator=(const registration &) = delete;
};

/// One budgeted debt step: the worker's heap first, spare budget to orphans. Returns
/// what the worker's heap still owes (inbox pages, plus 1 when a purge is due). Every
/// `measure_every`-th step also reads the heap's inbox before and after, for
/// heap_info::max_step_paid (two statistics reads: sampled to keep the loop cheap).
constexpr std::uint64_t measure_every = 8;

std::size_t pay_debt(worker_record &rec, std::size_t budget) noexcept {
  const std::uint64_t step = rec.steps.load(std::memory_order_relaxed);
  add(rec.steps, 1);
  if (step % measure_every != 0)
    return ramalloc::reclaim(budget);
  const std::uint64_t before = rec.heap->get_stats().pending_debt;
  const std::size_t pending = ramalloc::reclaim(budget);
  const std::uint64_t after = rec.heap->get_stats().pending_debt;
  if (before > after)
    store_max(rec.max_paid, before - after);
  return pending;
}

/// An idle worker keeps paying what it owes, a step per iteration, at most this many
/// steps per idle period before it blocks until the next tick (so a purge that cannot
/// progress can never turn into a spin).
constexpr std::size_t idle_steps_max = 4096;

std::int64_t to_ms(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

template <typename Target>
std::size_t service_loop(Target target, heap_registry &registry, const loop_options &opts,
                         std::size_t &handlers) {
  using clock = std::chrono::steady_clock;
  using std::chrono::milliseconds;
  registry_core &core = *registry.core();
  if (opts.soft_limit != 0)
    registry.set_soft_limit(opts.soft_limit);

  // The thread's own heap, bound now (adopting an orphan if one waits) and kept for the
  // thread's lifetime; the core hands it off when the thread exits.
  worker_record rec(ramalloc::current_heap());
  const registration reg(core, rec);

  const std::size_t budget = std::max<std::size_t>(1, opts.reclaim_budget);
  const std::size_t per_step = std::max<std::size_t>(1, opts.handlers_per_step);
  const milliseconds tick = std::max(milliseconds(1), opts.service_tick);
  const milliseconds flush_delay = std::max(milliseconds(0), opts.idle_flush_delay);

  clock::time_point idle_since = clock::now();
  clock::time_point last_tick = idle_since;
  bool flushed = false;
  std::size_t idle_steps = 0;

  for (;;) {
    std::size_t batch = 0;
    while (batch < per_step && target.poll_one() != 0) {
      ++batch;
      ++handlers;
    }
    add(rec.handlers, batch);
    const bool pressure = core.pressure.load(std::memory_order_relaxed);
    const std::size_t owed = pay_debt(
        rec, pressure ? budget * core.pressure_factor.load(std::memory_order_relaxed) : budget);

    const clock::time_point now = clock::now();
    if (batch != 0) {
      idle_since = now;
      flushed = false;
      idle_steps = 0;
    }
    core.check_pressure(to_ms(now));
    if (now - last_tick >= tick) {
      last_tick = now;
      core.tick(to_ms(now), flush_delay.count());
    }
    if (target.stopped())
      break;
    if (batch == per_step)
      continue; // more handlers may be ready: no blocking, next batch

    // The queue is empty: flush once idle long enough (at once under pressure), then
    // block in the reactor until a handler is ready, the flush is due, or the next tick.
    if (!flushed && (now - idle_since >= flush_delay || pressure)) {
      ramalloc::flush();
      add(rec.flushes, 1);
      flushed = true;
    } else if (owed != 0 && idle_steps++ < idle_steps_max) {
      // Idle with debt left: spend the idle time on it, one budgeted step per iteration
      // (handlers that arrive meanwhile still run between steps). Each step settles
      // inbox pages or purges, so this ends; idle_steps_max caps it all the same.
      continue;
    }
    clock::time_point deadline = last_tick + tick;
    if (!flushed)
      deadline = std::min(deadline, idle_since + flush_delay);
    if (deadline > now) {
      const auto wait =
          std::chrono::ceil<milliseconds>(deadline - now); // never wake before the deadline
      if (target.wait_one(wait) != 0) {
        ++handlers;
        add(rec.handlers, 1);
        idle_since = clock::now();
        flushed = false;
      }
      idle_steps = 0;
      if (target.stopped())
        break;
    }
  }
  return handlers;
}

} // namespace

std::size_t run_counted(asio::io_context &ctx, const loop_options &opts, std::size_t &handlers) {
  return service_loop(context_target{ctx}, asio::use_service<heap_registry>(ctx), opts, handlers);
}

} // namespace detail

std::size_t run(asio::io_context &ctx, const loop_options &opts) {
  std::size_t handlers = 0;
  return detail::run_counted(ctx, opts, handlers);
}

std::size_t attach(asio::thread_pool &pool, const loop_options &opts) {
  std::size_t handlers = 0;
  return detail::service_loop(
      detail::scheduler_target{asio::use_service<asio::detail::scheduler>(pool)},
      asio::use_service<heap_registry>(pool), opts, handlers);
}

} // namespace ramalloc::io
