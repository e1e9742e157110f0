// Options: parsed from RAMALLOC_* environment variables on first use, settable at run
// time by name (the same parser) or as a struct. Parsing uses getenv and hand-written
// number parsing only: it runs inside the first malloc of an LD_PRELOAD'ed program.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/runtime.hpp"
#include "ramalloc/ramalloc.hpp"

namespace ramalloc::detail {

constinit runtime_options g_options{};

namespace {

// The documented ranges (docs/tuning.md), shared by set_option, set_options and the
// environment. Each keeps one reclaim, purge or acquire step bounded.
constexpr std::uint64_t max_purge_delay_ms = 86400000;
constexpr std::uint64_t min_purge_budget = slice_size;
constexpr std::uint64_t max_reserve = std::uint64_t{512} << 20;
constexpr std::uint64_t max_page_cache = 1024;
constexpr std::uint64_t min_debt_slice = 1, max_debt_slice = 64;
constexpr std::uint64_t min_debt_interval = 1, max_debt_interval = 1024;
constexpr std::uint64_t max_remote_cache = 16; // rcache_slots (mem/heap.hpp)

constexpr const char *purge_delay_range = "milliseconds from 0 to 86400000";
constexpr const char *purge_budget_range =
    "a byte count of at least 64K (suffixes K, M, G allowed)";
constexpr const char *reserve_range = "a byte count up to 512M (suffixes K, M, G allowed)";
constexpr const char *page_cache_range = "a page count from 0 to 1024";
constexpr const char *debt_slice_range = "a unit count from 1 to 64";
constexpr const char *debt_interval_range = "a slow-path count from 1 to 1024";
constexpr const char *remote_cache_range = "a block count from 0 to 16";
constexpr const char *bool_range = "0/1, true/false, yes/no or on/off";
constexpr const char *on_invalid_range = "abort, warn or ignore";

/// Every variable apply_option knows, in the order the environment is read.
constexpr const char *option_names[] = {
    "RAMALLOC_PURGE_DELAY_MS", "RAMALLOC_PURGE_BUDGET", "RAMALLOC_RESERVE",
    "RAMALLOC_PAGE_CACHE",     "RAMALLOC_DEBT_SLICE",   "RAMALLOC_DEBT_INTERVAL",
    "RAMALLOC_REMOTE_CACHE",   "RAMALLOC_VERBOSE",      "RAMALLOC_AUTO_PURGE",
    "RAMALLOC_ON_INVALID",     "RAMALLOC_CHECKED"};

// Set while this thread reads the environment: a report callback that allocates (and so
// re-enters load_options_once) must not wait for itself.
constinit thread_local bool t_loading_options __attribute__((tls_model("initial-exec"))) = false;

// The wait of a thread that finds another one reading the environment: a futex on the
// load state itself. (std::atomic::wait would do, but libstdc++'s implementation of it
// is out of line, and libramalloc.so links no C++ runtime: api/cxx_runtime.hpp.)
void wait_while(std::atomic<int> &word, int value) noexcept {
  static_assert(sizeof(std::atomic<int>) == sizeof(int));
  const int saved = errno; // EAGAIN when the value changed first: not the caller's error
  syscall(SYS_futex, reinterpret_cast<int *>(&word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr,
          0);
  errno = saved;
}
void wake_all(std::atomic<int> &word) noexcept {
  syscall(SYS_futex, reinterpret_cast<int *>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr,
          nullptr, 0);
}

/// Parses a byte count: decimal digits with an optional K/M/G suffix (binary units).
bool parse_bytes(const char *s, std::uint64_t &out) noexcept {
  if (s == nullptr || *s == '\0')
    return false;
  std::uint64_t v = 0;
  const char *c = s;
  for (; *c >= '0' && *c <= '9'; ++c) {
    const std::uint64_t d = static_cast<std::uint64_t>(*c - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  if (c == s)
    return false;
  unsigned shift = 0;
  switch (*c) {
  case '\0':
    break;
  case 'k':
  case 'K':
    shift = 10;
    ++c;
    break;
  case 'm':
  case 'M':
    shift = 20;
    ++c;
    break;
  case 'g':
  case 'G':
    shift = 30;
    ++c;
    break;
  default:
    return false;
  }
  if (*c == 'i' || *c == 'B')
    ++c; // accept KiB / KB
  if (*c == 'B')
    ++c;
  if (*c != '\0')
    return false;
  if (shift != 0 && v > (UINT64_MAX >> shift))
    return false;
  out = v << shift;
  return true;
}

/// Parses a plain decimal count (no suffix).
bool parse_count(const char *s, std::uint64_t &out) noexcept {
  for (const char *c = s; *c != '\0'; ++c)
    if (*c < '0' || *c > '9')
      return false;
  return parse_bytes(s, out);
}

bool parse_bool(const char *s, bool &out) noexcept {
  if (std::strcmp(s, "1") == 0 || std::strcmp(s, "true") == 0 || std::strcmp(s, "yes") == 0 ||
      std::strcmp(s, "on") == 0) {
    out = true;
    return true;
  }
  if (std::strcmp(s, "0") == 0 || std::strcmp(s, "false") == 0 || std::strcmp(s, "no") == 0 ||
      std::strcmp(s, "off") == 0) {
    out = false;
    return true;
  }
  return false;
}

void reject(const char *name, const char *value, const char *expected,
            const char *kept = "the previous value") noexcept {
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s=\"%.64s\" rejected: expected %s; keeping %s", name, value,
                expected, kept);
  report_error(RAM_ERROR_BAD_OPTION, nullptr, msg);
}

/// set_options' check of one field: reports it (naming its variable) when out of range.
bool field_ok(bool ok, const char *name, std::uint64_t value, const char *expected) noexcept {
  if (!ok) {
    char text[24];
    std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(value));
    reject(name, text, expected, "every previous option (set_options changed nothing)");
  }
  return ok;
}

} // namespace

bool apply_option(const char *name, const char *value) noexcept {
  if (name == nullptr) {
    report_error(RAM_ERROR_BAD_OPTION, nullptr, "option name is null");
    return false;
  }
  if (value == nullptr) {
    reject(name, "(null)", "a value");
    return false;
  }
  std::uint64_t n = 0;
  bool b = false;
  if (std::strcmp(name, "RAMALLOC_PURGE_DELAY_MS") == 0) {
    if (!parse_count(value, n) || n > max_purge_delay_ms) {
      reject(name, value, purge_delay_range);
      return false;
    }
    g_options.purge_delay_ms.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_PURGE_BUDGET") == 0) {
    if (!parse_bytes(value, n) || n < min_purge_budget) {
      reject(name, value, purge_budget_range);
      return false;
    }
    g_options.purge_budget.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_RESERVE") == 0) {
    if (!parse_bytes(value, n) || n > max_reserve) {
      reject(name, value, reserve_range);
      return false;
    }
    g_options.reserve.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_PAGE_CACHE") == 0) {
    if (!parse_count(value, n) || n > max_page_cache) {
      reject(name, value, page_cache_range);
      return false;
    }
    g_options.page_cache.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_DEBT_SLICE") == 0) {
    if (!parse_count(value, n) || n < min_debt_slice || n > max_debt_slice) {
      reject(name, value, debt_slice_range);
      return false;
    }
    g_options.debt_slice.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_DEBT_INTERVAL") == 0) {
    if (!parse_count(value, n) || n < min_debt_interval || n > max_debt_interval) {
      reject(name, value, debt_interval_range);
      return false;
    }
    g_options.debt_interval.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_REMOTE_CACHE") == 0) {
    if (!parse_count(value, n) || n > max_remote_cache) {
      reject(name, value, remote_cache_range);
      return false;
    }
    g_options.remote_cache.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_VERBOSE") == 0) {
    if (!parse_bool(value, b)) {
      reject(name, value, bool_range);
      return false;
    }
    g_options.verbose.store(b, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_AUTO_PURGE") == 0) {
    if (!parse_bool(value, b)) {
      reject(name, value, bool_range);
      return false;
    }
    g_options.auto_purge.store(b, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_CHECKED") == 0) {
    if (!parse_bool(value, b)) {
      reject(name, value, bool_range);
      return false;
    }
    g_options.checked.store(b, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_ON_INVALID") == 0) {
    std::uint8_t mode;
    if (std::strcmp(value, "abort") == 0)
      mode = 0;
    else if (std::strcmp(value, "warn") == 0)
      mode = 1;
    else if (std::strcmp(value, "ignore") == 0)
      mode = 2;
    else {
      reject(name, value, on_invalid_range);
      return false;
    }
    g_options.on_invalid.store(mode, std::memory_order_relaxed);
  } else {
    char msg[160];
    std::snprintf(msg, sizeof msg, "unknown option name \"%.64s\"", name);
    report_error(RAM_ERROR_BAD_OPTION, nullptr, msg);
    return false;
  }
  return true;
}

bool apply_options(const ramalloc::options &o) noexcept {
  // Every field is checked (and each bad one reported) before anything is stored, so a
  // rejected struct changes nothing.
  bool ok = field_ok(o.purge_delay_ms <= max_purge_delay_ms, "RAMALLOC_PURGE_DELAY_MS",
                     o.purge_delay_ms, purge_delay_range);
  ok &= field_ok(o.purge_budget >= min_purge_budget, "RAMALLOC_PURGE_BUDGET", o.purge_budget,
                 purge_budget_range);
  ok &= field_ok(o.reserve <= max_reserve, "RAMALLOC_RESERVE", o.reserve, reserve_range);
  ok &= field_ok(o.page_cache <= max_page_cache, "RAMALLOC_PAGE_CACHE", o.page_cache,
                 page_cache_range);
  ok &= field_ok(o.debt_slice >= min_debt_slice && o.debt_slice <= max_debt_slice,
                 "RAMALLOC_DEBT_SLICE", o.debt_slice, debt_slice_range);
  ok &= field_ok(o.debt_interval >= min_debt_interval && o.debt_interval <= max_debt_interval,
                 "RAMALLOC_DEBT_INTERVAL", o.debt_interval, debt_interval_range);
  ok &= field_ok(o.remote_cache <= max_remote_cache, "RAMALLOC_REMOTE_CACHE", o.remote_cache,
                 remote_cache_range);
  const auto mode = static_cast<std::uint8_t>(o.on_invalid);
  ok &= field_ok(mode <= 2, "RAMALLOC_ON_INVALID", mode, on_invalid_range);
  if (!ok)
    return false;
  g_options.purge_delay_ms.store(o.purge_delay_ms, std::memory_order_relaxed);
  g_options.purge_budget.store(o.purge_budget, std::memory_order_relaxed);
  g_options.reserve.store(o.reserve, std::memory_order_relaxed);
  g_options.page_cache.store(o.page_cache, std::memory_order_relaxed);
  g_options.debt_slice.store(o.debt_slice, std::memory_order_relaxed);
  g_options.debt_interval.store(o.debt_interval, std::memory_order_relaxed);
  g_options.remote_cache.store(o.remote_cache, std::memory_order_relaxed);
  g_options.verbose.store(o.verbose, std::memory_order_relaxed);
  g_options.auto_purge.store(o.auto_purge, std::memory_order_relaxed);
  g_options.checked.store(o.checked, std::memory_order_relaxed);
  g_options.on_invalid.store(mode, std::memory_order_relaxed);
  return true;
}

void load_options_once() noexcept {
  int state = g_options.load_state.load(std::memory_order_acquire);
  if (RAMALLOC_LIKELY(state == options_loaded))
    return;
  if (state == options_unloaded &&
      g_options.load_state.compare_exchange_strong(
          state, options_loading, std::memory_order_acquire, std::memory_order_acquire)) {
    // This thread reads the environment; the defaults (on_invalid included) are already
    // in place, so nothing is reset here.
    t_loading_options = true;
    for (const char *name : option_names)
      if (const char *v = std::getenv(name))
        apply_option(name, v);
    t_loading_options = false;
    g_options.load_state.store(options_loaded, std::memory_order_release);
    wake_all(g_options.load_state);
    return;
  }
  if (t_loading_options)
    return; // re-entered from a report made while this thread reads the environment
  // Another thread is reading it (a handful of getenv calls): wait until it is done.
  while ((state = g_options.load_state.load(std::memory_order_acquire)) != options_loaded)
    wait_while(g_options.load_state, state);
}

std::uint64_t now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000u +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000u;
}

#if defined(RAMALLOC_DEBUG)
thread_local std::uint64_t t_steps = 0;
namespace {
constinit std::atomic<std::uint64_t> g_max_acquire{0}, g_max_discard{0};
void raise_to(std::atomic<std::uint64_t> &m, std::uint64_t v) noexcept {
  std::uint64_t cur = m.load(std::memory_order_relaxed);
  while (v > cur && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}
} // namespace
void steps_begin() noexcept {
  t_steps = 0;
}
void steps_end_acquire() noexcept {
  raise_to(g_max_acquire, t_steps);
}
void steps_end_discard() noexcept {
  raise_to(g_max_discard, t_steps);
}
void read_max_steps(std::uint64_t &a, std::uint64_t &d) noexcept {
  a = g_max_acquire.load(std::memory_order_relaxed);
  d = g_max_discard.load(std::memory_order_relaxed);
}
void clear_max_steps() noexcept {
  g_max_acquire.store(0, std::memory_order_relaxed);
  g_max_discard.store(0, std::memory_order_relaxed);
}
#endif

} // namespace ramalloc::detail
