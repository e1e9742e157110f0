// heap_registry and the heap strands' shared state.
#include <ramalloc/io/heap_registry.hpp>
#include <ramalloc/io/heap_strand.hpp>
#include <ramalloc/io/logger.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <asio/detail/strand_executor_service.hpp>
#include <asio/post.hpp>

#include "registry_core.hpp"

namespace ramalloc::io {

namespace detail {

namespace {

/// RAMALLOC_SOFT_LIMIT: bytes, with an optional K, M or G suffix (powers of 1024).
/// A malformed value is reported through the kit's logger and ignored.
std::uint64_t soft_limit_from_environment() {
  const char *text = std::getenv("RAMALLOC_SOFT_LIMIT");
  if (text == nullptr || *text == '\0')
    return 0;
  errno = 0;
  char *end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  std::uint64_t scale = 1;
  if (end != text && *end != '\0' && end[1] == '\0') {
    switch (*end) {
    case 'k':
    case 'K':
      scale = 1ull << 10;
      ++end;
      break;
    case 'm':
    case 'M':
      scale = 1ull << 20;
      ++end;
      break;
    case 'g':
    case 'G':
      scale = 1ull << 30;
      ++end;
      break;
    default:
      break;
    }
  }
  if (end == text || *end != '\0' || errno == ERANGE || text[0] == '-' ||
      value > UINT64_MAX / scale) {
    logger()->warn("ramalloc: RAMALLOC_SOFT_LIMIT='{}' is not a byte count (digits, optional "
                   "K/M/G suffix); no soft limit",
                   text);
    return 0;
  }
  return value * scale;
}

void store_max(std::atomic<std::uint64_t> &slot, std::uint64_t v) noexcept {
  if (v > slot.load(std::memory_order_relaxed))
    slot.store(v, std::memory_order_relaxed);
}

heap_info snapshot(const worker_record &w) {
  heap_info i;
  i.kind = heap_kind::worker;
  i.serial = w.serial;
  i.id = w.heap->id();
  i.stats = w.heap->get_stats();
  i.handlers = w.handlers.load(std::memory_order_relaxed);
  i.reclaim_steps = w.steps.load(std::memory_order_relaxed);
  i.max_step_paid = w.max_paid.load(std::memory_order_relaxed);
  i.flushes = w.flushes.load(std::memory_order_relaxed);
  return i;
}

heap_info snapshot(heap_strand_state &s) {
  heap_info i;
  i.kind = heap_kind::strand;
  i.serial = s.serial();
  i.id = s.heap().id();
  i.stats = s.heap().get_stats();
  i.service_tasks = s.service_tasks();
  i.handlers = s.handlers() - std::min(s.handlers(), i.service_tasks);
  i.reclaim_steps = s.reclaim_steps();
  i.max_step_paid = s.max_step_paid();
  i.flushes = s.flushes();
  return i;
}

void add_stats(ram_stats &sum, const ram_stats &s) noexcept {
  sum.live_bytes += s.live_bytes;
  sum.live_blocks += s.live_blocks;
  sum.committed_bytes += s.committed_bytes;
  sum.reserved_bytes += s.reserved_bytes;
  sum.pending_debt += s.pending_debt;
  sum.remote_frees += s.remote_frees;
  sum.pages_purged += s.pages_purged;
  sum.bytes_purged += s.bytes_purged;
  sum.orphans_serviced += s.orphans_serviced;
}

} // namespace

// --- registry_core --------------------------------------------------------------------

void registry_core::add_worker(worker_record *w) {
  std::lock_guard lock(mutex);
  w->serial = next_serial++;
  workers.push_back(w);
}

void registry_core::remove_worker(worker_record *w) noexcept {
  std::lock_guard lock(mutex);
  auto it = std::find(workers.begin(), workers.end(), w);
  if (it != workers.end())
    workers.erase(it);
}

std::uint64_t registry_core::add_strand(heap_strand_state *s,
                                        std::weak_ptr<heap_strand_state> ref) {
  std::lock_guard lock(mutex);
  strands.push_back(s);
  try {
    strand_refs.push_back(std::move(ref));
  } catch (...) {
    strands.pop_back();
    throw;
  }
  return next_serial++;
}

void registry_core::remove_strand(heap_strand_state *s) noexcept {
  std::lock_guard lock(mutex);
  // O(strands) find; strands come and go far less often than handlers run.
  auto it = std::find(strands.begin(), strands.end(), s);
  if (it == strands.end())
    return;
  const auto i = static_cast<std::size_t>(it - strands.begin());
  strands[i] = strands.back();
  strand_refs[i] = std::move(strand_refs.back());
  strands.pop_back();
  strand_refs.pop_back();
}

void registry_core::apply(const registry_options &o) {
  opts = o;
  if (opts.strands_per_tick == 0)
    opts.strands_per_tick = 1;
  if (opts.strand_reclaim_budget == 0)
    opts.strand_reclaim_budget = 1;
  if (opts.strand_handlers_per_step == 0)
    opts.strand_handlers_per_step = 1;
  if (opts.pressure_budget_factor == 0)
    opts.pressure_budget_factor = 1;
  soft_limit.store(opts.soft_limit, std::memory_order_relaxed);
  pressure_factor.store(opts.pressure_budget_factor, std::memory_order_relaxed);
  pressure_interval_ms.store(std::max<std::int64_t>(0, opts.pressure_check_interval.count()),
                             std::memory_order_relaxed);
  if (opts.soft_limit == 0)
    pressure.store(false, std::memory_order_relaxed);
}

void registry_core::check_pressure(std::int64_t now_ms) {
  const std::uint64_t limit = soft_limit.load(std::memory_order_relaxed);
  if (limit == 0)
    return;
  std::int64_t last = last_pressure_check_ms.load(std::memory_order_relaxed);
  if (now_ms - last < pressure_interval_ms.load(std::memory_order_relaxed))
    return;
  if (!last_pressure_check_ms.compare_exchange_strong(last, now_ms, std::memory_order_relaxed))
    return; // another worker checks now
  const std::uint64_t committed = ramalloc::get_stats().committed_bytes;
  const bool over = committed > limit;
  const bool was = pressure.exchange(over, std::memory_order_acq_rel);
  if (!over)
    return;
  if (!was)
    episodes.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::shared_ptr<pressure_callback>> due;
  {
    std::lock_guard lock(mutex);
    if (shut_down)
      return;
    for (auto &cb : callbacks)
      if (!cb->queued.exchange(true, std::memory_order_acq_rel))
        due.push_back(cb);
  }
  const memory_pressure event{committed, limit};
  for (auto &cb : due) {
    // Clears `queued` when the run ends, or when it is destroyed unrun.
    struct run_once {
      std::shared_ptr<pressure_callback> cb;
      memory_pressure event;
      run_once(std::shared_ptr<pressure_callback> c, memory_pressure e)
          : cb(std::move(c)), event(e) {}
      run_once(run_once &&) noexcept = default;
      run_once(const run_once &) = delete;
      ~run_once() {
        if (cb)
          cb->queued.store(false, std::memory_order_release);
      }
      void operator()() { cb->function(event); }
    };
    try {
      asio::post(cb->executor, run_once(cb, event));
    } catch (...) {
      cb->queued.store(false, std::memory_order_release);
      logger()->error("ramalloc: could not post a memory-pressure callback");
    }
  }
}

void registry_core::service_strands(std::int64_t now_ms, std::int64_t flush_after_ms) {
  struct due_task {
    std::shared_ptr<heap_strand_state> state;
    bool flush;
  };
  std::vector<due_task> due;
  {
    std::lock_guard lock(mutex);
    if (shut_down || strands.empty())
      return;
    const bool under_pressure = pressure.load(std::memory_order_relaxed);
    const std::uint64_t episode = episodes.load(std::memory_order_relaxed);
    const std::size_t n = std::min(strands.size(), opts.strands_per_tick);
    for (std::size_t k = 0; k < n; ++k) {
      if (cursor >= strands.size())
        cursor = 0;
      const std::size_t i = cursor++;
      heap_strand_state &s = *strands[i];
      // A strand is quiet when no handler of its own (service tasks excluded) ran since
      // the last visit; a busy strand pays its debt itself.
      const std::uint64_t user = s.handlers() - std::min(s.handlers(), s.service_tasks());
      if (user != s.seen_handlers) {
        s.seen_handlers = user;
        s.quiet_since_ms = now_ms;
        s.flushed_quiet = false;
        continue;
      }
      if (s.running())
        continue;
      const ram_stats st = s.heap().get_stats();
      bool flush = false;
      if (under_pressure && s.flushed_episode != episode && st.committed_bytes > 0) {
        flush = true;
        s.flushed_episode = episode;
      } else if (!s.flushed_quiet && now_ms - s.quiet_since_ms >= flush_after_ms &&
                 st.committed_bytes > 0) {
        flush = true; // quiet as long as a worker's idle-flush delay: flush once
      }
      if (!flush && st.pending_debt == 0 && s.last_pending() == 0)
        continue;
      if (flush)
        s.flushed_quiet = true;
      if (auto ref = strand_refs[i].lock())
        due.push_back({std::move(ref), flush});
    }
  }
  // Outside the mutex: posting allocates, and dropping the last reference to a state
  // runs its destructor, which takes the mutex.
  for (auto &d : due) {
    try {
      d.state->post_service(d.flush);
    } catch (...) {
      logger()->error("ramalloc: could not post a heap strand's service task");
    }
  }
}

void registry_core::tick(std::int64_t now_ms, std::int64_t flush_after_ms) {
  if (ticking.exchange(true, std::memory_order_acquire))
    return;
  struct release {
    std::atomic<bool> &flag;
    ~release() { flag.store(false, std::memory_order_release); }
  } done{ticking};
  check_pressure(now_ms);
  service_strands(now_ms, flush_after_ms);
  drain_error_reports();
}

// --- heap_strand_state -----------------------------------------------------------------

heap_strand_state::heap_strand_state(std::shared_ptr<registry_core> core, const strand_options &o)
    : core_(std::move(core)), teardown_(o.teardown) {
  std::lock_guard lock(core_->mutex);
  reclaim_budget_ = o.reclaim_budget != 0 ? o.reclaim_budget : core_->opts.strand_reclaim_budget;
  handlers_per_step_ =
      o.handlers_per_step != 0 ? o.handlers_per_step : core_->opts.strand_handlers_per_step;
}

void heap_strand_state::attach() {
  serial_ = core_->add_strand(this, weak_from_this());
  attached_ = true;
}

heap_strand_state::~heap_strand_state() {
  if (attached_)
    core_->remove_strand(this);
  // No handler runs and none is queued (each holds a reference): this thread may act as
  // the heap's owner.
  if (teardown_ == strand_teardown::release_all)
    heap_.release_all();
  // heap_'s destructor pays the rest and returns free memory; blocks still live stay
  // valid (the core orphans the heap until they are freed).
}

bool heap_strand_state::post_service(bool flush) {
  if (service_queued_.exchange(true, std::memory_order_acq_rel))
    return false;
  try {
    enqueue_service(shared_from_this(), flush);
  } catch (...) {
    service_queued_.store(false, std::memory_order_release);
    throw;
  }
  return true;
}

void heap_strand_state::service_step(bool flush) noexcept {
  bump(services_);
  if (flush) {
    heap_.flush();
    bump(flushes_);
    last_pending_.store(0, std::memory_order_relaxed);
    since_step_ = 0;
  } else {
    pay_debt_step();
  }
}

void heap_strand_state::pay_debt_step() noexcept {
  since_step_ = 0;
  const std::uint64_t before = heap_.get_stats().pending_debt;
  const std::size_t pending = heap_.reclaim(reclaim_budget_);
  const std::uint64_t after = heap_.get_stats().pending_debt;
  bump(steps_);
  if (before > after)
    store_max(max_paid_, before - after);
  last_pending_.store(pending, std::memory_order_relaxed);
}

void heap_strand_state::concurrent_entry(std::thread::id other) noexcept {
  std::ostringstream who;
  who << other;
  std::fprintf(stderr,
               "ramalloc::io: heap strand #%llu entered by two threads at once (thread %s is "
               "inside it): its heap would have two owners. Was it used through its raw "
               "asio::strand, or copied into a second strand?\n",
               static_cast<unsigned long long>(serial_), who.str().c_str());
  std::abort();
}

} // namespace detail

// --- heap_registry -------------------------------------------------------------------------

asio::execution_context::id heap_registry::id;

heap_registry::heap_registry(asio::execution_context &ctx)
    : asio::execution_context::service(ctx), core_(std::make_shared<detail::registry_core>()) {
  // Services are destroyed newest first. The registry's destructor drops strand copies
  // (pressure callbacks' executors, the strands it flushes), and a strand must die before
  // Asio's strand service: make sure that service exists before this one.
  asio::use_service<asio::detail::strand_executor_service>(ctx);
  registry_options o;
  o.soft_limit = detail::soft_limit_from_environment();
  std::lock_guard lock(core_->mutex);
  core_->apply(o);
}

void heap_registry::shutdown() {
  // The context is shutting down: pending handlers are about to be destroyed, and
  // destroying them may still free into strand heaps. Free nothing; stop servicing.
  std::lock_guard lock(core_->mutex);
  core_->shut_down = true;
}

heap_registry::~heap_registry() {
  // Every handler is gone and no thread runs the context: the strands still alive (held
  // by user objects) have no owner, so this thread may flush them.
  std::vector<std::shared_ptr<detail::pressure_callback>> callbacks;
  std::vector<std::shared_ptr<detail::heap_strand_state>> alive;
  {
    std::lock_guard lock(core_->mutex);
    core_->shut_down = true;
    callbacks.swap(core_->callbacks);
    for (auto &ref : core_->strand_refs)
      if (auto s = ref.lock())
        alive.push_back(std::move(s));
  }
  for (auto &s : alive)
    if (!s->running())
      s->heap().flush();
  // Destroyed outside the mutex: executors may hold the last reference to a strand.
  callbacks.clear();
  alive.clear();
}

std::size_t heap_registry::heap_count() const {
  std::lock_guard lock(core_->mutex);
  return core_->workers.size() + core_->strands.size();
}
std::size_t heap_registry::worker_count() const {
  std::lock_guard lock(core_->mutex);
  return core_->workers.size();
}
std::size_t heap_registry::strand_count() const {
  std::lock_guard lock(core_->mutex);
  return core_->strands.size();
}

std::vector<heap_info> heap_registry::heaps() const {
  std::vector<heap_info> out;
  std::lock_guard lock(core_->mutex);
  out.reserve(core_->workers.size() + core_->strands.size());
  for (const detail::worker_record *w : core_->workers)
    out.push_back(detail::snapshot(*w));
  std::vector<heap_info> strands;
  strands.reserve(core_->strands.size());
  for (detail::heap_strand_state *s : core_->strands)
    strands.push_back(detail::snapshot(*s));
  std::sort(strands.begin(), strands.end(),
            [](const heap_info &a, const heap_info &b) { return a.serial < b.serial; });
  out.insert(out.end(), strands.begin(), strands.end());
  return out;
}

std::optional<heap_info> heap_registry::find(const void *heap_id) const {
  std::lock_guard lock(core_->mutex);
  for (const detail::worker_record *w : core_->workers)
    if (w->heap->id() == heap_id)
      return detail::snapshot(*w);
  for (detail::heap_strand_state *s : core_->strands)
    if (s->heap().id() == heap_id)
      return detail::snapshot(*s);
  return std::nullopt;
}

ram_stats heap_registry::totals() const {
  ram_stats sum{};
  std::lock_guard lock(core_->mutex);
  for (const detail::worker_record *w : core_->workers)
    detail::add_stats(sum, w->heap->get_stats());
  for (detail::heap_strand_state *s : core_->strands)
    detail::add_stats(sum, s->heap().get_stats());
  sum.heaps_live = core_->workers.size() + core_->strands.size();
  return sum;
}

registry_options heap_registry::options() const {
  std::lock_guard lock(core_->mutex);
  return core_->opts;
}

void heap_registry::set_options(const registry_options &opts) {
  std::lock_guard lock(core_->mutex);
  core_->apply(opts);
}

void heap_registry::set_soft_limit(std::uint64_t bytes) {
  std::lock_guard lock(core_->mutex);
  registry_options o = core_->opts;
  o.soft_limit = bytes;
  core_->apply(o);
}

pressure_subscription
heap_registry::on_memory_pressure(asio::any_io_executor executor,
                                  std::function<void(const memory_pressure &)> callback) {
  if (!executor)
    throw std::invalid_argument("ramalloc::io::heap_registry::on_memory_pressure: no executor");
  if (!callback)
    throw std::invalid_argument("ramalloc::io::heap_registry::on_memory_pressure: no callback");
  auto cb = std::make_shared<detail::pressure_callback>();
  cb->executor = std::move(executor);
  cb->function = std::move(callback);
  std::lock_guard lock(core_->mutex);
  cb->id = core_->next_subscription++;
  core_->callbacks.push_back(cb);
  return cb->id;
}

bool heap_registry::remove_memory_pressure(pressure_subscription subscription) {
  std::shared_ptr<detail::pressure_callback> gone; // destroyed after the unlock
  std::lock_guard lock(core_->mutex);
  auto &cbs = core_->callbacks;
  auto it =
      std::find_if(cbs.begin(), cbs.end(), [&](const auto &cb) { return cb->id == subscription; });
  if (it == cbs.end())
    return false;
  gone = std::move(*it);
  cbs.erase(it);
  return true;
}

bool heap_registry::under_pressure() const noexcept {
  return core_->pressure.load(std::memory_order_relaxed);
}

std::uint64_t heap_registry::pressure_episodes() const noexcept {
  return core_->episodes.load(std::memory_order_relaxed);
}

void heap_registry::service_tick() {
  core_->tick(detail::steady_ms(), 1000);
}

} // namespace ramalloc::io
