// Helpers for the POSIX/C edge-case tests. These tests link the static override
// (ramalloc::override), so ::malloc, ::free, operator new and delete in this program,
// in GoogleTest and in libstdc++ are ramalloc's.
//
// Nothing here allocates while a report is being made: the error callback must not
// allocate through ramalloc (ramalloc.h), and under the override every allocation does.
#pragma once

#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ramalloc_posix_test {

inline constexpr std::size_t KiB = std::size_t{1} << 10;
inline constexpr std::size_t MiB = std::size_t{1} << 20;
/// The smallest size C says cannot be allocated (object sizes are limited to PTRDIFF_MAX).
inline constexpr std::size_t above_ptrdiff_max = static_cast<std::size_t>(PTRDIFF_MAX) + 1;

/// Hides a pointer from the optimizer, so a malloc/free or new/delete pair whose result
/// is only compared is still really called (the compiler may otherwise elide the pair or
/// fold the comparison).
template <class T>
T *keep(T *p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

/// A size the optimizer cannot see (so `malloc(huge())` is not folded to NULL).
inline std::size_t opaque(std::size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}

/// The alignment malloc, calloc, realloc and the plain operator new promise for `size`
/// bytes (docs/api.md): what any object of that size needs, 8 for sizes 0..8 and
/// alignof(max_align_t) = 16 above.
inline std::size_t malloc_alignment(std::size_t size) {
  return size <= 8 ? 8 : alignof(std::max_align_t);
}

/// Whether ramalloc says `p` is the start of one of its live blocks.
inline bool is_ramalloc_block(const void *p) {
  ram_block_info info{};
  return ram_query(p, &info) != 0 && info.is_start != 0;
}

inline std::uint64_t live_blocks() {
  ram_stats s{};
  ram_get_stats(&s);
  return s.live_blocks;
}

inline std::uint64_t invalid_frees() {
  ram_stats s{};
  ram_get_stats(&s);
  return s.invalid_frees;
}

/// Fills `n` bytes with a pattern derived from `seed`; `intact` checks it.
inline void fill(void *p, std::size_t n, unsigned seed) {
  auto *b = static_cast<unsigned char *>(p);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<unsigned char>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

inline bool intact(const void *p, std::size_t n, unsigned seed) {
  const auto *b = static_cast<const unsigned char *>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<unsigned char>((i * 131 + seed * 7 + (i >> 8)) & 0xff))
      return false;
  return true;
}

/// Records the reports made through ram_set_error_handler while alive, without
/// allocating, and sets RAMALLOC_ON_INVALID=warn for its lifetime (debug builds default
/// to abort). Restores the default handler and the previous options on destruction.
class report_recorder {
public:
  static constexpr std::size_t capacity = 16;
  struct report {
    ram_error error;
    const void *pointer;
    char message[160];
  };

  report_recorder() : saved_(ramalloc::get_options()) {
    ramalloc::options o = saved_;
    o.on_invalid = ramalloc::options::on_invalid_mode::warn;
    ramalloc::set_options(o);
    ram_set_error_handler(&report_recorder::callback, this);
  }
  ~report_recorder() {
    ram_set_error_handler(nullptr, nullptr);
    ramalloc::set_options(saved_);
  }
  report_recorder(const report_recorder &) = delete;
  report_recorder &operator=(const report_recorder &) = delete;

  /// Reports made so far (those beyond `capacity` are counted, not kept).
  std::size_t count() const { return count_.load(std::memory_order_acquire); }
  const report &operator[](std::size_t i) const { return reports_[i]; }

private:
  static void callback(ram_error error, const void *pointer, const char *message, void *ctx) {
    auto *self = static_cast<report_recorder *>(ctx);
    const std::size_t i = self->count_.fetch_add(1, std::memory_order_acq_rel);
    if (i >= capacity)
      return;
    report &r = self->reports_[i];
    r.error = error;
    r.pointer = pointer;
    r.message[0] = '\0';
    if (message != nullptr) {
      std::strncpy(r.message, message, sizeof r.message - 1);
      r.message[sizeof r.message - 1] = '\0';
    }
  }

  ramalloc::options saved_;
  std::atomic<std::size_t> count_{0};
  report reports_[capacity]{};
};

} // namespace ramalloc_posix_test
