// Error reports: a callback (default: one line on stderr), then the on_invalid policy.
// Nothing here allocates: messages are formatted into a stack buffer and written with
// write(2), so reporting works inside the allocator and inside an LD_PRELOAD override.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "common/annotate.hpp"
#include "common/runtime.hpp"

namespace ramalloc::detail {

namespace {

// The callback and its context are one unit, published under a sequence lock: a report
// racing with ram_set_error_handler gets the old pair or the new pair, never the old
// callback with the new context. The sequence is odd while a writer changes the pair;
// writers take turns on it. Both words are atomics, so readers never race with writers.
constinit std::atomic<std::uint64_t> g_handler_seq{0};
constinit std::atomic<ram_error_fn> g_error_fn{nullptr};
constinit std::atomic<void *> g_error_context{nullptr};

struct handler {
  ram_error_fn fn;
  void *context;
};

/// A consistent (callback, context) pair. Retries only while a writer is mid-change.
handler current_handler() noexcept {
  for (;;) {
    const std::uint64_t before = g_handler_seq.load(std::memory_order_acquire);
    if ((before & 1) == 0) {
      const handler h{g_error_fn.load(std::memory_order_relaxed),
                      g_error_context.load(std::memory_order_relaxed)};
      std::atomic_thread_fence(std::memory_order_acquire);
      if (g_handler_seq.load(std::memory_order_relaxed) == before)
        return h;
    }
    spin_pause();
  }
}

void write_all(const char *s, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

const char *error_name(ram_error e) noexcept {
  switch (e) {
  case RAM_ERROR_INVALID_FREE:
    return "invalid free";
  case RAM_ERROR_INTERIOR_FREE:
    return "interior-pointer free";
  case RAM_ERROR_DOUBLE_FREE:
    return "double free";
  case RAM_ERROR_BAD_OPTION:
    return "bad option";
  case RAM_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  case RAM_ERROR_WRITE_AFTER_FREE:
    return "write after free";
  case RAM_ERROR_SIZE_MISMATCH:
    return "size mismatch";
  }
  return "error";
}
} // namespace

[[noreturn]] void check_failed(const char *file, int line, const char *what) noexcept {
  char buf[512];
  const int n = std::snprintf(buf, sizeof buf, "ramalloc: fatal: %s (%s:%d)\n", what, file, line);
  write_all(buf, n > 0 ? static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n)
                                                                  : sizeof buf - 1
                       : 0);
  std::abort();
}

void report_error(ram_error kind, const void *p, const char *what) noexcept {
  const bool bad_free = kind == RAM_ERROR_INVALID_FREE || kind == RAM_ERROR_INTERIOR_FREE ||
                        kind == RAM_ERROR_DOUBLE_FREE || kind == RAM_ERROR_WRITE_AFTER_FREE ||
                        kind == RAM_ERROR_SIZE_MISMATCH;
  // A bad free may come before anything else loaded the options (the first call of a
  // program under LD_PRELOAD, say): RAMALLOC_ON_INVALID must still decide what follows.
  if (bad_free)
    load_options_once();
  if (const handler h = current_handler(); h.fn != nullptr) {
    annotate_user_code program; // memcheck checks the program's callback as usual
    h.fn(kind, p, what, h.context);
  } else {
    char buf[512];
    const int n =
        p != nullptr ? std::snprintf(buf, sizeof buf, "ramalloc: %s: %s (pointer %p)\n",
                                     error_name(kind), what, p)
                     : std::snprintf(buf, sizeof buf, "ramalloc: %s: %s\n", error_name(kind), what);
    if (n > 0)
      write_all(buf, static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n)
                                                              : sizeof buf - 1);
  }
  // Options and out-of-memory reports are informational; bad frees follow on_invalid.
  if (bad_free && g_options.on_invalid.load(std::memory_order_relaxed) == 0)
    std::abort();
}

void report_block_error(ram_error kind, const void *p, const char *what, const void *start,
                        std::size_t block_size, const char *block_kind,
                        const void *owner) noexcept {
  char msg[400];
  std::snprintf(msg, sizeof msg, "%s: %p (block %p, size class %zu B, %s block, heap %p)", what, p,
                start, block_size, block_kind, owner);
  report_error(kind, p, msg);
}

void set_error_handler(ram_error_fn fn, void *context) noexcept {
  std::uint64_t seq = g_handler_seq.load(std::memory_order_relaxed);
  for (;;) {
    if ((seq & 1) == 0 && g_handler_seq.compare_exchange_weak(
                              seq, seq + 1, std::memory_order_acquire, std::memory_order_relaxed))
      break;
    spin_pause();
    seq = g_handler_seq.load(std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
  g_error_fn.store(fn, std::memory_order_relaxed);
  g_error_context.store(context, std::memory_order_relaxed);
  g_handler_seq.store(seq + 2, std::memory_order_release);
}

} // namespace ramalloc::detail
