// The kit's spdlog logger and the allocation-free queue of the core's error reports.
#include <ramalloc/io/logger.hpp>

#include <ramalloc/ramalloc.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>

#include <spdlog/sinks/null_sink.h>

namespace ramalloc::io {

namespace {

std::shared_ptr<spdlog::logger> make_null_logger() {
  return std::make_shared<spdlog::logger>("ramalloc",
                                          std::make_shared<spdlog::sinks::null_sink_mt>());
}

struct logger_slot {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> current = make_null_logger();
};

logger_slot &slot() {
  static logger_slot s; // first use, never at an allocation path
  return s;
}

// --- the error ring: a bounded MPMC queue (Vyukov) of fixed-size reports ---------------

constexpr std::size_t ring_size = 64; // power of two
constexpr std::size_t message_size = 240;

struct report_cell {
  std::atomic<std::uint64_t> sequence;
  ram_error error;
  const void *pointer;
  char message[message_size];
};

struct error_ring {
  std::array<report_cell, ring_size> cells;
  std::atomic<std::uint64_t> head{0}; // next to read
  std::atomic<std::uint64_t> tail{0}; // next to write
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<bool> draining{false};

  error_ring() noexcept {
    for (std::size_t i = 0; i < ring_size; ++i)
      cells[i].sequence.store(i, std::memory_order_relaxed);
  }

  /// Called from inside malloc/free: no allocation, no lock, bounded retries.
  void push(ram_error error, const void *pointer, const char *message) noexcept {
    std::uint64_t pos = tail.load(std::memory_order_relaxed);
    for (int attempt = 0; attempt < 64; ++attempt) {
      report_cell &c = cells[pos & (ring_size - 1)];
      const std::uint64_t seq = c.sequence.load(std::memory_order_acquire);
      const auto diff = static_cast<std::int64_t>(seq - pos);
      if (diff == 0) {
        if (tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.error = error;
          c.pointer = pointer;
          std::size_t n = message != nullptr ? std::strlen(message) : 0;
          if (n >= message_size)
            n = message_size - 1;
          if (n != 0)
            std::memcpy(c.message, message, n);
          c.message[n] = '\0';
          c.sequence.store(pos + 1, std::memory_order_release);
          return;
        }
      } else if (diff < 0) {
        break; // full
      } else {
        pos = tail.load(std::memory_order_relaxed);
      }
    }
    dropped.fetch_add(1, std::memory_order_relaxed);
  }

  /// One reader at a time (the caller holds `draining`).
  bool pop(ram_error &error, const void *&pointer, char (&message)[message_size]) noexcept {
    const std::uint64_t pos = head.load(std::memory_order_relaxed);
    report_cell &c = cells[pos & (ring_size - 1)];
    if (c.sequence.load(std::memory_order_acquire) != pos + 1)
      return false;
    error = c.error;
    pointer = c.pointer;
    std::memcpy(message, c.message, message_size);
    head.store(pos + 1, std::memory_order_relaxed);
    c.sequence.store(pos + ring_size, std::memory_order_release);
    return true;
  }
};

error_ring g_ring; // constant-initialisable apart from the sequence numbers

void queue_report(ram_error error, const void *pointer, const char *message, void *) {
  g_ring.push(error, pointer, message);
}

} // namespace

std::shared_ptr<spdlog::logger> logger() {
  logger_slot &s = slot();
  std::lock_guard lock(s.mutex);
  return s.current;
}

void set_logger(std::shared_ptr<spdlog::logger> replacement) {
  if (!replacement)
    replacement = make_null_logger();
  std::shared_ptr<spdlog::logger> old;
  logger_slot &s = slot();
  std::lock_guard lock(s.mutex);
  old = std::exchange(s.current, std::move(replacement));
}

void route_core_errors_to_logger() noexcept {
  ram_set_error_handler(&queue_report, nullptr);
}

void restore_default_error_handler() noexcept {
  ram_set_error_handler(nullptr, nullptr);
}

std::size_t drain_error_reports() {
  if (g_ring.draining.exchange(true, std::memory_order_acquire))
    return 0;
  struct release {
    ~release() { g_ring.draining.store(false, std::memory_order_release); }
  } done;
  std::size_t n = 0;
  ram_error error{};
  const void *pointer = nullptr;
  char message[message_size];
  std::shared_ptr<spdlog::logger> log;
  while (n < ring_size && g_ring.pop(error, pointer, message)) {
    if (!log)
      log = logger();
    const auto level = error == RAM_ERROR_BAD_OPTION ? spdlog::level::warn : spdlog::level::err;
    log->log(level, "ramalloc: {} (pointer {})", message, pointer);
    ++n;
  }
  return n;
}

std::uint64_t dropped_error_reports() noexcept {
  return g_ring.dropped.load(std::memory_order_relaxed);
}

} // namespace ramalloc::io
