// ramalloc::io::logger(): the kit's own spdlog logger, and the core's error reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <spdlog/logger.h>

namespace ramalloc::io {

/// The kit's logger: an spdlog logger named "ramalloc" with a null sink until you give
/// it one. It is not registered in spdlog's registry and the kit never calls
/// `spdlog::set_default_logger`: your program's logging is left alone. Give it a sink
/// with set_logger(), or add sinks to it before starting threads (spdlog's sink list is
/// not thread-safe). Thread-safe; O(1).
std::shared_ptr<spdlog::logger> logger();

/// Replaces the kit's logger (nullptr restores the null-sink logger). Takes effect for
/// every later message. Thread-safe.
void set_logger(std::shared_ptr<spdlog::logger> replacement);

/// Routes the core's error reports (invalid, interior and double frees, bad options,
/// out-of-memory when verbose: ram_set_error_handler) to logger(), at error level
/// (warning for bad options).
///
/// The core reports from inside free/malloc, where nothing may log or allocate, so the
/// handler only copies the message into a fixed ring of 64 slots (no allocation, no
/// lock; reports arriving while it is full are counted as dropped). The messages are
/// logged later by drain_error_reports(), which every service tick of the kit's loops
/// calls (and stats_reporter on each period). Replaces any handler installed before;
/// call restore_default_error_handler() to undo.
void route_core_errors_to_logger() noexcept;
/// Puts back the core's default handler (one line on stderr).
void restore_default_error_handler() noexcept;
/// Logs (and removes) the reports queued by the routed handler; returns how many.
/// Bounded: at most the ring's 64 slots per call. Thread-safe (one drainer at a time;
/// a concurrent call returns 0).
std::size_t drain_error_reports();
/// Reports dropped because the ring was full, since the start of the process.
std::uint64_t dropped_error_reports() noexcept;

} // namespace ramalloc::io
