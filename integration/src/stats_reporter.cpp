// stats_reporter: a fixed-schedule timer that logs allocator statistics.
#include <ramalloc/io/heap_registry.hpp>
#include <ramalloc/io/logger.hpp>
#include <ramalloc/io/stats_reporter.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>

#include <asio/steady_timer.hpp>
#include <fmt/format.h>

namespace ramalloc::io {

namespace detail {

namespace {

const char *kind_name(heap_kind k) noexcept {
  return k == heap_kind::worker ? "worker" : "strand";
}

// The process-wide fields, in the order of ram_stats (docs/tuning.md).
template <typename Out>
void process_fields(Out out, const ram_stats &s, bool json) {
  const struct {
    const char *name;
    std::uint64_t value;
  } fields[] = {{"live_bytes", s.live_bytes},           {"live_blocks", s.live_blocks},
                {"committed_bytes", s.committed_bytes}, {"reserved_bytes", s.reserved_bytes},
                {"pending_debt", s.pending_debt},       {"remote_frees", s.remote_frees},
                {"pages_purged", s.pages_purged},       {"bytes_purged", s.bytes_purged},
                {"heaps_live", s.heaps_live},           {"heaps_orphaned", s.heaps_orphaned},
                {"orphans_adopted", s.orphans_adopted}, {"orphans_serviced", s.orphans_serviced},
                {"invalid_frees", s.invalid_frees}};
  bool first = true;
  for (const auto &f : fields) {
    if (json)
      fmt::format_to(out, "{}\"{}\":{}", first ? "" : ",", f.name, f.value);
    else
      fmt::format_to(out, "{}{}={}", first ? "" : " ", f.name, f.value);
    first = false;
  }
}

template <typename Out>
void heap_fields(Out out, const heap_info &h, bool json) {
  if (json) {
    fmt::format_to(out,
                   "{{\"kind\":\"{}\",\"serial\":{},\"id\":\"{}\",\"handlers\":{},"
                   "\"reclaim_steps\":{},\"flushes\":{},\"live_bytes\":{},\"live_blocks\":{},"
                   "\"committed_bytes\":{},\"pending_debt\":{},\"remote_frees\":{}}}",
                   kind_name(h.kind), h.serial, h.id, h.handlers, h.reclaim_steps, h.flushes,
                   h.stats.live_bytes, h.stats.live_blocks, h.stats.committed_bytes,
                   h.stats.pending_debt, h.stats.remote_frees);
  } else {
    fmt::format_to(out,
                   "{}#{} id={} handlers={} reclaim_steps={} flushes={} live_bytes={} "
                   "live_blocks={} committed_bytes={} pending_debt={} remote_frees={}",
                   kind_name(h.kind), h.serial, h.id, h.handlers, h.reclaim_steps, h.flushes,
                   h.stats.live_bytes, h.stats.live_blocks, h.stats.committed_bytes,
                   h.stats.pending_debt, h.stats.remote_frees);
  }
}

} // namespace

struct reporter_state : std::enable_shared_from_this<reporter_state> {
  reporter_state(asio::io_context &c, std::chrono::milliseconds p, reporter_options o)
      : ctx(c), timer(c), period(p), opts(o) {}

  asio::io_context &ctx;
  std::mutex mutex; // guards the timer and `stopped`
  asio::steady_timer timer;
  std::chrono::milliseconds period;
  reporter_options opts;
  bool stopped = false;
  std::atomic<std::uint64_t> reports{0};

  std::string format(std::uint64_t number) const {
    const ram_stats process = ramalloc::get_stats();
    heap_registry &registry = asio::use_service<heap_registry>(ctx);
    std::vector<heap_info> heaps;
    if (opts.per_heap)
      heaps = registry.heaps();
    const bool json = opts.format == report_format::json;
    fmt::memory_buffer buf;
    auto out = std::back_inserter(buf);
    if (json) {
      fmt::format_to(out, "{{\"report\":{},\"process\":{{", number);
      process_fields(out, process, true);
      fmt::format_to(out, "}},\"under_pressure\":{},\"heaps\":[",
                     registry.under_pressure() ? "true" : "false");
      for (std::size_t i = 0; i < heaps.size(); ++i) {
        if (i != 0)
          buf.push_back(',');
        heap_fields(out, heaps[i], true);
      }
      fmt::format_to(out, "]}}");
    } else {
      fmt::format_to(out, "ramalloc stats #{}: ", number);
      process_fields(out, process, false);
      fmt::format_to(out, " under_pressure={}", registry.under_pressure() ? 1 : 0);
      for (const heap_info &h : heaps) {
        fmt::format_to(out, "; heap ");
        heap_fields(out, h, false);
      }
    }
    return fmt::to_string(buf);
  }

  void arm() { // mutex held
    timer.expires_at(timer.expiry() + period);
    timer.async_wait([self = shared_from_this()](const asio::error_code &ec) { self->fire(ec); });
  }

  void fire(const asio::error_code &ec) {
    if (ec == asio::error::operation_aborted)
      return;
    {
      std::lock_guard lock(mutex);
      if (stopped)
        return;
    }
    drain_error_reports();
    const std::uint64_t number = reports.load(std::memory_order_relaxed) + 1;
    const std::string line = format(number);
    logger()->log(opts.level, "{}", line);
    reports.store(number, std::memory_order_relaxed);
    std::lock_guard lock(mutex);
    if (!stopped) {
      // Fixed schedule: a late period is reported once, then the schedule resumes.
      const auto now = asio::steady_timer::clock_type::now();
      if (timer.expiry() + period < now)
        timer.expires_at(now);
      arm();
    }
  }
};

} // namespace detail

stats_reporter::stats_reporter(asio::io_context &ctx, std::chrono::milliseconds period,
                               reporter_options opts) {
  if (period.count() <= 0)
    throw std::invalid_argument("ramalloc::io::stats_reporter: period must be positive");
  state_ = std::make_shared<detail::reporter_state>(ctx, period, opts);
  std::lock_guard lock(state_->mutex);
  state_->timer.expires_at(asio::steady_timer::clock_type::now());
  state_->arm();
}

stats_reporter::~stats_reporter() {
  stop();
}

void stats_reporter::stop() noexcept {
  std::lock_guard lock(state_->mutex);
  if (state_->stopped)
    return;
  state_->stopped = true;
  state_->timer.cancel();
}

std::uint64_t stats_reporter::reports() const noexcept {
  return state_->reports.load(std::memory_order_relaxed);
}

std::string stats_reporter::format_report() const {
  return state_->format(reports() + 1);
}

} // namespace ramalloc::io
