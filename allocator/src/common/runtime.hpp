// Process-wide settings and reports that every layer may read: the current options
// (parsed from the environment by global/options.cpp), the error report hook
// (global/errors.cpp), the clock and the debug step counters.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/defs.hpp"
#include "ramalloc/ramalloc.h"

namespace ramalloc::detail {

/// on_invalid before and after the environment is read: the documented default of the
/// build (abort in debug builds, warn in release builds), so a bad free reported before
/// the first heap exists follows it too.
#ifdef NDEBUG
inline constexpr std::uint8_t default_on_invalid = 1;
#else
inline constexpr std::uint8_t default_on_invalid = 0;
#endif

/// States of the one-time read of the environment (runtime_options::load_state).
enum options_load_state : int { options_unloaded = 0, options_loading = 1, options_loaded = 2 };

/// Options as the core reads them: plain relaxed atomics, so a setter on one thread and
/// readers on others never race and no lock is taken.
struct runtime_options {
  std::atomic<std::uint64_t> purge_delay_ms{250};
  std::atomic<std::uint64_t> purge_budget{1u << 20};
  std::atomic<std::uint64_t> reserve{0};
  std::atomic<std::uint32_t> page_cache{4};
  std::atomic<std::uint32_t> debt_slice{2};
  std::atomic<std::uint32_t> debt_interval{4};
  std::atomic<std::uint32_t> remote_cache{16};
  std::atomic<bool> verbose{false};
  std::atomic<bool> auto_purge{true};
  // Checked mode (mem/checked.cpp): pages formatted while it is on are checked pages.
  std::atomic<bool> checked{false};
  std::atomic<std::uint8_t> on_invalid{default_on_invalid}; // 0 abort, 1 warn, 2 ignore
  std::atomic<int> load_state{options_unloaded};            // options_load_state
};
extern runtime_options g_options;

/// Reads RAMALLOC_* from the environment exactly once per process (allocation-free).
/// The first caller reads; concurrent first callers wait (futex) until it is done, so
/// none of them sees half-loaded options and a set_option made after it returns is
/// never overwritten by the environment. Afterwards: one acquire load.
void load_options_once() noexcept;

/// Reports bad input (never returns for on_invalid=abort). Allocation-free.
void report_error(ram_error kind, const void *p, const char *what) noexcept;

/// Reports bad input about a block (allocation-free): `what` is followed by the block's
/// start, size class, kind and owning heap, as one line.
void report_block_error(ram_error kind, const void *p, const char *what, const void *start,
                        std::size_t block_size, const char *block_kind,
                        const void *owner) noexcept;

/// Counts a rejected free (ram_stats: invalid frees; global/heaps.cpp).
void count_invalid_free() noexcept;

/// Milliseconds on a coarse monotonic clock (cheap: vDSO).
std::uint64_t now_ms() noexcept;

#if defined(RAMALLOC_DEBUG)
/// Loop iterations of the acquire or discard in progress on this thread.
extern thread_local std::uint64_t t_steps;
inline void count_step() noexcept {
  ++t_steps;
}
void steps_begin() noexcept;
void steps_end_acquire() noexcept;
void steps_end_discard() noexcept;
#else
inline void count_step() noexcept {}
inline void steps_begin() noexcept {}
inline void steps_end_acquire() noexcept {}
inline void steps_end_discard() noexcept {}
#endif

} // namespace ramalloc::detail
