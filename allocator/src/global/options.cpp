// Options: parsed from RAMALLOC_* environment variables on first use, settable at run
// time by name (the same parser) or as a struct. Parsing uses getenv and hand-written
// number parsing only: it runs inside the first malloc of an LD_PRELOAD'ed program.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/runtime.hpp"

namespace ramalloc::detail {

constinit runtime_options g_options{};

namespace {

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

void reject(const char *name, const char *value, const char *expected) noexcept {
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s=\"%.64s\" rejected: expected %s; keeping %s", name, value,
                expected, "the previous value");
  report_error(RAM_ERROR_BAD_OPTION, nullptr, msg);
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
    if (!parse_count(value, n) || n > 86400000ull) {
      reject(name, value, "milliseconds from 0 to 86400000");
      return false;
    }
    g_options.purge_delay_ms.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_PURGE_BUDGET") == 0) {
    if (!parse_bytes(value, n) || n < slice_size) {
      reject(name, value, "a byte count of at least 64K (suffixes K, M, G allowed)");
      return false;
    }
    g_options.purge_budget.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_RESERVE") == 0) {
    if (!parse_bytes(value, n) || n > (std::uint64_t{512} << 20)) {
      reject(name, value, "a byte count up to 512M (suffixes K, M, G allowed)");
      return false;
    }
    g_options.reserve.store(n, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_PAGE_CACHE") == 0) {
    if (!parse_count(value, n) || n > 1024) {
      reject(name, value, "a page count from 0 to 1024");
      return false;
    }
    g_options.page_cache.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_DEBT_SLICE") == 0) {
    if (!parse_count(value, n) || n < 1 || n > 64) {
      reject(name, value, "a unit count from 1 to 64");
      return false;
    }
    g_options.debt_slice.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_VERBOSE") == 0) {
    if (!parse_bool(value, b)) {
      reject(name, value, "0/1, true/false, yes/no or on/off");
      return false;
    }
    g_options.verbose.store(b, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_AUTO_PURGE") == 0) {
    if (!parse_bool(value, b)) {
      reject(name, value, "0/1, true/false, yes/no or on/off");
      return false;
    }
    g_options.auto_purge.store(b, std::memory_order_relaxed);
  } else if (std::strcmp(name, "RAMALLOC_ON_INVALID") == 0) {
    std::uint8_t mode;
    if (std::strcmp(value, "abort") == 0)
      mode = 0;
    else if (std::strcmp(value, "warn") == 0)
      mode = 1;
    else if (std::strcmp(value, "ignore") == 0)
      mode = 2;
    else {
      reject(name, value, "abort, warn or ignore");
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

void load_options_once() noexcept {
  if (g_options.loaded.load(std::memory_order_acquire))
    return;
#ifdef NDEBUG
  g_options.on_invalid.store(1, std::memory_order_relaxed);
#else
  g_options.on_invalid.store(0, std::memory_order_relaxed);
#endif
  static constexpr const char *names[] = {"RAMALLOC_PURGE_DELAY_MS", "RAMALLOC_PURGE_BUDGET",
                                          "RAMALLOC_RESERVE",        "RAMALLOC_PAGE_CACHE",
                                          "RAMALLOC_DEBT_SLICE",     "RAMALLOC_VERBOSE",
                                          "RAMALLOC_ON_INVALID"};
  for (const char *name : names)
    if (const char *v = std::getenv(name))
      apply_option(name, v);
  g_options.loaded.store(true, std::memory_order_release);
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
