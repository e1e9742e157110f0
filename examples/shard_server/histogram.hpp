// A fixed-size log-linear latency histogram with atomic counters: any thread may record
// into it without a lock and without allocating (recording happens inside zone ticks and
// network handlers). Exact below 64 ns, then 16 buckets per power of two (<= 6.25%
// bucket width); a percentile reads as its bucket's upper bound, clamped to the exact max.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace shard {

class histogram {
public:
  static constexpr int sub_bits = 4;
  static constexpr std::uint64_t linear = 64;
  static constexpr std::size_t buckets = linear + (64 - 6) * (1u << sub_bits);

  /// Records one value (nanoseconds). Wait-free, O(1), any thread.
  void record(std::uint64_t ns) noexcept {
    counts_[index(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t m = max_.load(std::memory_order_relaxed);
    while (ns > m && !max_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {
    }
  }

  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  std::uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }

  /// Value at quantile q in [0, 1] (0 when empty).
  std::uint64_t percentile(double q) const noexcept {
    std::uint64_t n = count();
    if (n == 0)
      return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n) + 0.5);
    rank = std::clamp<std::uint64_t>(rank, 1, n);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets; ++i) {
      seen += counts_[i].load(std::memory_order_relaxed);
      if (seen >= rank)
        return std::min(upper(i), max());
    }
    return max();
  }

  /// Non-empty buckets as (upper bound ns, count), for CDF plots.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> dump() const {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
    for (std::size_t i = 0; i < buckets; ++i)
      if (auto c = counts_[i].load(std::memory_order_relaxed))
        out.emplace_back(std::min(upper(i), max()), c);
    return out;
  }

  void merge_from(const histogram &o) noexcept {
    for (std::size_t i = 0; i < buckets; ++i)
      if (auto c = o.counts_[i].load(std::memory_order_relaxed))
        counts_[i].fetch_add(c, std::memory_order_relaxed);
    count_.fetch_add(o.count(), std::memory_order_relaxed);
    std::uint64_t m = max_.load(std::memory_order_relaxed);
    std::uint64_t om = o.max();
    while (om > m && !max_.compare_exchange_weak(m, om, std::memory_order_relaxed)) {
    }
  }

private:
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < linear)
      return static_cast<std::size_t>(v);
    int log = 63 - std::countl_zero(v); // >= 6
    std::uint64_t sub = (v >> (log - sub_bits)) & ((1u << sub_bits) - 1);
    return linear + static_cast<std::size_t>(log - 6) * (1u << sub_bits) +
           static_cast<std::size_t>(sub);
  }
  static std::uint64_t upper(std::size_t i) noexcept {
    if (i < linear)
      return i;
    std::size_t k = i - linear;
    int log = static_cast<int>(k >> sub_bits) + 6;
    std::uint64_t sub = k & ((1u << sub_bits) - 1);
    std::uint64_t base = std::uint64_t{1} << log;
    std::uint64_t step = base >> sub_bits;
    return base + (sub + 1) * step - 1;
  }

  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> max_{0};
};

/// {"count":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..} with microseconds.
inline std::string histogram_json(const histogram &h) {
  auto us = [](std::uint64_t ns) { return std::to_string(static_cast<double>(ns) / 1000.0); };
  return "{\"count\":" + std::to_string(h.count()) + ",\"p50_us\":" + us(h.percentile(0.5)) +
         ",\"p99_us\":" + us(h.percentile(0.99)) + ",\"p999_us\":" + us(h.percentile(0.999)) +
         ",\"max_us\":" + us(h.max()) + "}";
}

/// [[upper_ns, count], ...]
inline std::string histogram_buckets_json(const histogram &h) {
  std::string s = "[";
  bool first = true;
  for (auto [ns, c] : h.dump()) {
    if (!first)
      s += ',';
    first = false;
    s += "[" + std::to_string(ns) + "," + std::to_string(c) + "]";
  }
  return s + "]";
}

} // namespace shard
