// stats_reporter: periodic allocator statistics through ramalloc::io::logger().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/common.h>

#include "ramalloc/io/config.hpp"

#include <asio/io_context.hpp>

namespace ramalloc::io {

namespace detail {
struct reporter_state;
}

/// How a report is written.
enum class report_format : std::uint8_t {
  /// One line: "ramalloc stats #N: live_bytes=... ...; heap worker#1 id=0x...: ...".
  text,
  /// One JSON object per line (per report): {"report":N,"process":{...},"heaps":[...]}.
  json
};

struct reporter_options {
  report_format format = report_format::text;
  spdlog::level::level_enum level = spdlog::level::info;
  /// Also list every heap of the context's registry (else the process-wide figures).
  bool per_heap = true;
};

/// Reports the process-wide statistics (ramalloc::get_stats()) and, per heap, those of
/// the heaps in the context's heap_registry, every `period`, as one message to
/// ramalloc::io::logger(). Starts on construction; stop() (or the destructor) ends it.
/// The timer runs on `ctx` (any worker). Periods are kept on a fixed schedule (no
/// drift); a period missed because every worker was busy is reported once, late.
/// Nothing is logged on an allocation path: the report runs as an ordinary handler.
///
/// The fields (see docs/integration.md): report, process{live_bytes, live_blocks,
/// committed_bytes, reserved_bytes, pending_debt, remote_frees, pages_purged,
/// bytes_purged, heaps_live, heaps_orphaned, orphans_adopted, orphans_serviced,
/// invalid_frees}, heaps[{kind, serial, id, handlers, reclaim_steps, flushes, live_bytes,
/// live_blocks, committed_bytes, pending_debt, remote_frees}], under_pressure.
///
/// Thread-safety: stop() and reports() from any thread.
class stats_reporter {
public:
  /// period must be positive (else std::invalid_argument).
  stats_reporter(asio::io_context &ctx, std::chrono::milliseconds period,
                 reporter_options opts = {});
  ~stats_reporter();
  stats_reporter(const stats_reporter &) = delete;
  stats_reporter &operator=(const stats_reporter &) = delete;

  /// Cancels the timer; no report starts afterwards. Idempotent.
  void stop() noexcept;
  /// Reports written so far.
  std::uint64_t reports() const noexcept;
  /// The message a report would log now (what the timer logs, without logging it).
  std::string format_report() const;

private:
  std::shared_ptr<detail::reporter_state> state_;
};

} // namespace ramalloc::io
