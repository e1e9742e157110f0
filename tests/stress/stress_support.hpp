// Helpers shared by the stress tests: the scale knob, sanitizer detection, resident-memory
// measurement, deterministic random numbers, a bounded blocking queue and a set of live
// addresses.
//
// The stress tests link the core only, never the malloc override: everything here (and
// every std:: container in the tests) allocates through glibc's malloc, so the test's own
// bookkeeping never disturbs the allocator under test.
#pragma once

#include "../common/test_common.hpp"

#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace ramalloc_stress {

inline constexpr std::size_t KiB = std::size_t{1} << 10;
inline constexpr std::size_t MiB = std::size_t{1} << 20;

/// Bytes as MiB, for the [ stats ] lines the tests print.
inline double mib(std::uint64_t bytes) {
  return static_cast<double>(bytes) / double(MiB);
}

// --- sanitizers (tests/common/test_common.hpp) -----------------------------------------

using ramalloc_test_common::under_asan;
using ramalloc_test_common::under_sanitizer;
using ramalloc_test_common::under_tsan;

// --- the scale knob ---------------------------------------------------------------------

/// RAMALLOC_STRESS_SCALE: a positive number; 1 (the default) is the moderate CI scale,
/// 10 the full scale the issue names. A bad value aborts with a message naming it.
inline double scale() {
  static const double value = [] {
    const char *s = std::getenv("RAMALLOC_STRESS_SCALE");
    if (s == nullptr || *s == '\0')
      return 1.0;
    char *end = nullptr;
    const double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0) || !std::isfinite(v)) {
      std::fprintf(stderr, "RAMALLOC_STRESS_SCALE='%s' is not a positive number\n", s);
      std::abort();
    }
    return v;
  }();
  return value;
}

/// `n` multiplied by `tsan` or `asan` under that sanitizer (to offset its slow-down),
/// never below `minimum`. Does not depend on the scale knob.
inline std::size_t sanitizer_reduced(std::size_t n, double tsan, double asan,
                                     std::size_t minimum = 1) {
  double v = static_cast<double>(n);
  if (under_tsan())
    v *= tsan;
  else if (under_asan())
    v *= asan;
  return std::max(minimum, static_cast<std::size_t>(v));
}

/// A count that is `at_scale_1` at the CI scale and grows linearly with the knob, then
/// reduced under a sanitizer as sanitizer_reduced() does.
inline std::size_t scaled(std::size_t at_scale_1, double tsan, double asan,
                          std::size_t minimum = 1) {
  return sanitizer_reduced(static_cast<std::size_t>(static_cast<double>(at_scale_1) * scale()),
                           tsan, asan, minimum);
}

// --- shared with the unit tests (tests/common/test_common.hpp) ------------------------

using ramalloc_test_common::fill_pattern;
using ramalloc_test_common::mix;
using ramalloc_test_common::pattern_intact;
using ramalloc_test_common::pattern_word;
using ramalloc_test_common::resident_bytes;
using ramalloc_test_common::rng;

// --- a bounded blocking queue -----------------------------------------------------------

/// For tests that race bad frees and queries on purpose: while alive, reports are only
/// counted (on_invalid=ignore, a counting callback); the previous options and the default
/// handler come back on destruction.
class counted_bad_frees {
public:
  counted_bad_frees() : saved_(ramalloc::get_options()) {
    count_.store(0, std::memory_order_relaxed);
    ram_set_error_handler([](ram_error, const void *, const char *,
                             void *) { count_.fetch_add(1, std::memory_order_relaxed); },
                          nullptr);
    ramalloc::options o = saved_;
    o.on_invalid = ramalloc::options::on_invalid_mode::ignore;
    ramalloc::set_options(o);
  }
  ~counted_bad_frees() {
    ramalloc::set_options(saved_);
    ram_set_error_handler(nullptr, nullptr);
  }
  counted_bad_frees(const counted_bad_frees &) = delete;
  counted_bad_frees &operator=(const counted_bad_frees &) = delete;
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

private:
  static inline std::atomic<std::uint64_t> count_{0};
  ramalloc::options saved_;
};

/// A fixed-capacity FIFO between threads (mutex + condition variables; test-only). Its
/// storage is allocated once, in the constructor, so a test can measure resident memory
/// after constructing it and see only the allocator's memory move.
template <typename T>
class bounded_queue {
public:
  explicit bounded_queue(std::size_t capacity) : ring_(capacity) {}

  /// Blocks while the queue is full.
  void push(const T &item) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return count_ < ring_.size(); });
    ring_[(head_ + count_) % ring_.size()] = item;
    if (count_++ == 0)
      not_empty_.notify_one();
  }

  /// No more pushes: wakes the consumer for good once everything has been taken.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    not_empty_.notify_all();
  }

  /// Moves every queued item (at most out.capacity()) into `out`, blocking while the
  /// queue is empty and open; false once it is closed and drained.
  bool take_all(std::vector<T> &out) {
    out.clear();
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return count_ != 0 || closed_; });
    if (count_ == 0)
      return false;
    const bool was_full = count_ == ring_.size();
    const std::size_t n = std::min(count_, out.capacity());
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(ring_[(head_ + i) % ring_.size()]);
    head_ = (head_ + n) % ring_.size();
    count_ -= n;
    if (was_full)
      not_full_.notify_one();
    return true;
  }

private:
  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
  std::vector<T> ring_;
  std::size_t head_ = 0, count_ = 0;
  bool closed_ = false;
};

// --- live addresses ---------------------------------------------------------------------

/// The set of addresses currently handed out. The allocating thread inserts right after
/// acquire; whoever frees erases *before* discard. An address can therefore reappear only
/// after its erase, and an insert that finds it present means the allocator handed out a
/// block that was still live. Sharded so the threads under test rarely wait on each other.
class live_set {
public:
  explicit live_set(std::size_t expected) {
    for (auto &s : shards_)
      s.addresses.reserve(expected / shard_count + 16);
  }
  /// False when `p` was already live.
  bool insert(const void *p) {
    shard &s = shard_of(p);
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.addresses.insert(reinterpret_cast<std::uintptr_t>(p)).second;
  }
  /// False when `p` was not live.
  bool erase(const void *p) {
    shard &s = shard_of(p);
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.addresses.erase(reinterpret_cast<std::uintptr_t>(p)) == 1;
  }
  std::size_t size() {
    std::size_t n = 0;
    for (auto &s : shards_) {
      std::lock_guard<std::mutex> lock(s.mutex);
      n += s.addresses.size();
    }
    return n;
  }

private:
  static constexpr std::size_t shard_count = 64;
  struct shard {
    std::mutex mutex;
    std::unordered_set<std::uintptr_t> addresses;
  };
  shard &shard_of(const void *p) {
    return shards_[mix(reinterpret_cast<std::uintptr_t>(p)) % shard_count];
  }
  shard shards_[shard_count];
};

} // namespace ramalloc_stress
