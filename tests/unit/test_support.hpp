// Helpers shared by the unit tests: resident-memory measurement, the size classes the
// design promises, deterministic random numbers, fill patterns and an error-callback
// recorder.
//
// The tests are built twice: with the core only (::malloc is glibc's) and with the malloc
// override linked in (::malloc, operator new and GoogleTest's allocations are ramalloc's).
// A test that needs memory which is certainly not ramalloc's uses glibc_malloc.
#pragma once

#include "../common/test_common.hpp"

#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <new>
#include <string>
#include <vector>

// glibc's own entry points, exported (GLIBC_2.2.5) next to the malloc the override
// replaces: memory from them is glibc's in both builds.
extern "C" void *__libc_malloc(std::size_t size);
extern "C" void __libc_free(void *p);

namespace ramalloc_test {

/// `size` bytes from glibc's malloc, never ramalloc's (even with the override linked in).
inline void *glibc_malloc(std::size_t size) {
  return ::__libc_malloc(size);
}
/// Frees memory from glibc_malloc.
inline void glibc_free(void *p) {
  ::__libc_free(p);
}

/// A standard allocator over glibc_malloc, for the test harness's own containers when a
/// test counts blocks: their nodes then never show up in ramalloc's statistics.
template <class T>
struct glibc_allocator {
  using value_type = T;
  glibc_allocator() = default;
  template <class U>
  glibc_allocator(const glibc_allocator<U> &) noexcept {}
  T *allocate(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T))
      throw std::bad_array_new_length();
    void *p = glibc_malloc(n * sizeof(T));
    if (p == nullptr)
      throw std::bad_alloc();
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t) noexcept { glibc_free(p); }
  template <class U>
  bool operator==(const glibc_allocator<U> &) const noexcept {
    return true;
  }
};

using ramalloc_test_common::fill_pattern;
using ramalloc_test_common::first_pattern_mismatch;
using ramalloc_test_common::mix;
using ramalloc_test_common::pattern_word;
using ramalloc_test_common::resident_bytes;
using ramalloc_test_common::rng;
using ramalloc_test_common::under_sanitizer;

inline constexpr std::size_t KiB = std::size_t{1} << 10;
inline constexpr std::size_t MiB = std::size_t{1} << 20;
inline constexpr std::size_t GiB = std::size_t{1} << 30;

inline constexpr std::size_t slice_size = 64 * KiB;
inline constexpr std::size_t small_max = 8 * KiB;
inline constexpr std::size_t medium_max = 256 * KiB;
inline constexpr std::size_t large_max = 32 * MiB;

/// The block sizes of the size classes DESIGN.md specifies: 4, 8, 16..128 in steps of
/// 16, then four classes per doubling up to 256 KiB (160, 192, 224, 256, 320, ...).
inline std::vector<std::size_t> size_classes() {
  std::vector<std::size_t> classes{4, 8};
  for (std::size_t s = 16; s <= 128; s += 16)
    classes.push_back(s);
  for (std::size_t base = 128; base < medium_max; base *= 2)
    for (std::size_t step = 1; step <= 4; ++step)
      classes.push_back(base + step * base / 4);
  return classes;
}

/// The size class a request of `size` bytes (1 <= size <= 256 KiB) must land in.
inline std::size_t class_for(std::size_t size) {
  for (std::size_t c : size_classes())
    if (c >= size)
      return c;
  return 0;
}

/// Request sizes that step through every class boundary (previous class + 1, class - 1,
/// class) from 1 byte to 256 KiB, followed by large (span) and huge (own mapping) sizes.
inline std::vector<std::size_t> boundary_sizes(bool with_large = true, bool with_huge = true) {
  std::vector<std::size_t> sizes;
  std::size_t previous = 0;
  for (std::size_t c : size_classes()) {
    sizes.push_back(previous + 1);
    if (c - 1 > previous + 1)
      sizes.push_back(c - 1);
    if (c > previous + 1)
      sizes.push_back(c);
    previous = c;
  }
  if (with_large)
    for (std::size_t s : {medium_max + 1, 300 * KiB, 512 * KiB - 1, 1 * MiB, 1 * MiB + 1,
                          3 * MiB + 12345, 8 * MiB, large_max - 1, large_max})
      sizes.push_back(s);
  if (with_huge)
    for (std::size_t s : {large_max + 1, 40 * MiB + 7, 64 * MiB})
      sizes.push_back(s);
  return sizes;
}

/// Largest power of two <= min(size, 16): the alignment acquire(size) promises.
inline std::size_t natural_alignment(std::size_t size) {
  std::size_t a = 1;
  while (a * 2 <= std::min<std::size_t>(size, 16))
    a *= 2;
  return a;
}

/// The alignment the malloc family promises for a request of `size` bytes (docs/api.md):
/// what any object of that size needs, 8 for sizes 0..8 and alignof(max_align_t) = 16
/// above.
inline std::size_t malloc_alignment(std::size_t size) {
  return size <= 8 ? 8 : alignof(std::max_align_t);
}

inline std::uintptr_t addr(const void *p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

/// Records the reports made through the error callback while alive; restores the
/// default handler (and the previous options) on destruction. With `mode` given, also
/// sets options::on_invalid for its lifetime.
///
/// The callback must not allocate through ramalloc (ramalloc.h), and in the override
/// build every malloc is ramalloc's: reports are copied into fixed arrays. The first
/// `capacity` reports are kept (messages truncated to `message_capacity - 1` bytes);
/// later ones are only counted.
class error_recorder {
public:
  static constexpr std::size_t capacity = 64;
  static constexpr std::size_t message_capacity = 512;

  struct report {
    ram_error error;
    const void *pointer;
    std::string message;
  };

  explicit error_recorder(
      ramalloc::options::on_invalid_mode mode = ramalloc::options::on_invalid_mode::warn)
      : saved_(ramalloc::get_options()) {
    ramalloc::options o = saved_;
    o.on_invalid = mode;
    ramalloc::set_options(o);
    ram_set_error_handler(&error_recorder::callback, this);
  }
  ~error_recorder() {
    ram_set_error_handler(nullptr, nullptr);
    ramalloc::set_options(saved_);
  }
  error_recorder(const error_recorder &) = delete;
  error_recorder &operator=(const error_recorder &) = delete;

  /// The stored reports, oldest first (allocates, so never call it from the callback).
  std::vector<report> reports() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<report> out;
    for (std::size_t i = 0; i < stored_; ++i)
      out.push_back(report{entries_[i].error, entries_[i].pointer, entries_[i].message});
    return out;
  }
  /// Every report received, stored or not.
  std::size_t count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stored_ + overflowed_;
  }
  /// Reports received after the arrays were full.
  std::size_t overflowed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return overflowed_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    stored_ = 0;
    overflowed_ = 0;
  }

private:
  struct entry {
    ram_error error;
    const void *pointer;
    char message[message_capacity];
  };

  static void callback(ram_error error, const void *pointer, const char *message, void *context) {
    auto *self = static_cast<error_recorder *>(context);
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (self->stored_ == capacity) {
      ++self->overflowed_;
      return;
    }
    entry &e = self->entries_[self->stored_++];
    e.error = error;
    e.pointer = pointer;
    const std::size_t n = message ? ::strnlen(message, message_capacity - 1) : 0;
    if (n > 0)
      std::memcpy(e.message, message, n);
    e.message[n] = '\0';
  }

  ramalloc::options saved_;
  mutable std::mutex mutex_;
  entry entries_[capacity];
  std::size_t stored_ = 0;
  std::size_t overflowed_ = 0;
};

inline const char *error_name(ram_error e) {
  switch (e) {
  case RAM_ERROR_INVALID_FREE:
    return "RAM_ERROR_INVALID_FREE";
  case RAM_ERROR_INTERIOR_FREE:
    return "RAM_ERROR_INTERIOR_FREE";
  case RAM_ERROR_DOUBLE_FREE:
    return "RAM_ERROR_DOUBLE_FREE";
  case RAM_ERROR_BAD_OPTION:
    return "RAM_ERROR_BAD_OPTION";
  case RAM_ERROR_OUT_OF_MEMORY:
    return "RAM_ERROR_OUT_OF_MEMORY";
  case RAM_ERROR_WRITE_AFTER_FREE:
    return "RAM_ERROR_WRITE_AFTER_FREE";
  case RAM_ERROR_SIZE_MISMATCH:
    return "RAM_ERROR_SIZE_MISMATCH";
  }
  return "unknown ram_error";
}

/// Allocates `n` blocks of `size` through ram_malloc and checks that none of them is
/// live twice (distinct, non-overlapping) — what a corrupted free list would break.
inline void expect_distinct_blocks(std::size_t size, std::size_t n, const void *still_live = nullptr,
                            std::size_t still_live_size = 0) {
  std::vector<void *> blocks;
  std::set<std::uintptr_t> starts;
  for (std::size_t i = 0; i < n; ++i) {
    void *p = ram_malloc(size);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(starts.insert(addr(p)).second) << p << " handed out twice";
    if (still_live != nullptr) {
      const bool overlaps =
          addr(p) < addr(still_live) + still_live_size && addr(still_live) < addr(p) + size;
      EXPECT_FALSE(overlaps) << p << " overlaps the live block " << still_live;
    }
    fill_pattern(p, size, i);
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < n; ++i)
    EXPECT_EQ(first_pattern_mismatch(blocks[i], size, i), size) << "block " << i;
  for (void *p : blocks)
    ram_free(p);
}


} // namespace ramalloc_test
