// ramalloc C++ API.
//
// The allocator's whole interface is five operations: acquire, discard, reclaim(budget),
// flush and query. Every operation is bounded in time except flush. Blocks may be
// discarded from any thread; work caused by frees from other threads is queued as debt
// on the owning heap and paid by its owner in reclaim steps (or, a small fixed slice at
// a time, on the acquire slow path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "ramalloc/ramalloc.h"

// Every function and class below is exported from libramalloc.so (RAMALLOC_API, from
// ramalloc.h: default visibility); the library's own symbols are hidden.
namespace ramalloc {

namespace detail {
struct heap_state;
struct heap_access;
} // namespace detail

class heap;

/// What `query` reports about a pointer that falls inside one of ramalloc's blocks.
struct block_info {
  enum class block_kind : std::uint8_t { small, medium, large, huge };
  void *start = nullptr;       ///< start of the block containing the pointer
  std::size_t usable_size = 0; ///< bytes usable from `start`
  bool is_start = false;       ///< the pointer is exactly `start`
  const void *owner = nullptr; ///< the owning heap's identity (compare with heap::id())
  block_kind kind = block_kind::small;
};

/// Allocator statistics; see docs/tuning.md for the meaning of each field.
using stats = ram_stats;

/// Tunables. Read from the environment at first use (RAMALLOC_*), changeable through
/// `set_options` at any time; new values apply from the next reclaim step.
struct options {
  std::uint64_t purge_delay_ms = 250;    ///< RAMALLOC_PURGE_DELAY_MS: idle time before purge
  std::uint64_t purge_budget = 1u << 20; ///< RAMALLOC_PURGE_BUDGET: max bytes purged per step
  std::uint64_t reserve = 0;             ///< RAMALLOC_RESERVE: bytes kept pre-faulted per heap
  std::uint32_t page_cache = 4;          ///< RAMALLOC_PAGE_CACHE: empty pages kept per heap
  std::uint32_t debt_slice = 2;          ///< RAMALLOC_DEBT_SLICE: units paid per acquire slow path
  /// RAMALLOC_DEBT_INTERVAL: acquire slow paths per back-pressure slice (1 to 1024). One
  /// slow path in this many settles `debt_slice` inbox pages for an owner that never
  /// reclaims; a slow path about to grow its class settles regardless. Settling a page
  /// makes its next remote free queue it again, so settling less often lets each page
  /// collect more remote frees per trip through the inbox.
  std::uint32_t debt_interval = 4;
  /// RAMALLOC_REMOTE_CACHE: blocks of each size class from 16 B to 1 KiB (0 to 16) that a
  /// thread's heap keeps when it frees them for another thread's heap, to hand out again
  /// itself; 0 turns the cache off. A kept block counts as live in its owner's heap until
  /// the thread reuses it or gives it back: at a reclaim step once it went unused for
  /// purge_delay, at flush, and when the thread exits.
  std::uint32_t remote_cache = 16;
  bool verbose = false;                  ///< RAMALLOC_VERBOSE: report OS failures
  /// RAMALLOC_AUTO_PURGE: a heap whose owner has never called reclaim, or not for
  /// purge_delay, pays one purge step (at most purge_budget bytes) on its acquire slow
  /// paths, so programs that never call reclaim (e.g. under LD_PRELOAD) still return
  /// memory; free memory beyond 4 purge budgets (or twice the heap's other committed
  /// memory) goes back without waiting for purge_delay. A free never purges: one that
  /// finds a purge owed sends the heap's next acquires to their slow path, which pays.
  bool auto_purge = true;
  /// RAMALLOC_CHECKED: checked mode (docs/hardening.md). Pages a heap formats while it is
  /// on are checked pages: every double free (4-byte class included, local or remote),
  /// free of a never-allocated block and sized-delete size mismatch is detected in O(1)
  /// and reported with the block's start, size class and owning heap; free-list links are
  /// encoded and freed blocks are quarantined and pattern-filled (write-after-free
  /// detection). Switching it changes the mode of pages formatted from then on; pages in
  /// use keep the mode they were formatted in. Off: the fast mode, whose speed it does not
  /// change.
  bool checked = false;
  enum class on_invalid_mode : std::uint8_t { abort, warn, ignore };
  /// RAMALLOC_ON_INVALID: what a bad free does after it is reported. Default: abort in
  /// debug builds (NDEBUG unset), warn in release builds.
  on_invalid_mode on_invalid =
#ifdef NDEBUG
      on_invalid_mode::warn;
#else
      on_invalid_mode::abort;
#endif
};

/// Current options. Thread-safe.
RAMALLOC_API options get_options() noexcept;
/// Replaces all options. Thread-safe; takes effect from the next slow path or reclaim.
/// Every field must lie in the range its environment variable accepts (docs/tuning.md):
/// otherwise nothing changes, each bad field is reported (RAM_ERROR_BAD_OPTION, the
/// message names its variable) and false is returned. Returns true when applied.
RAMALLOC_API bool set_options(const options &opts) noexcept;
/// Sets one option by its environment-variable name; returns false (and reports a
/// message naming the variable through the error callback) when the name or value is bad.
RAMALLOC_API bool set_option(const char *name, const char *value) noexcept;

/// A heap: the unit of ownership. Pages belong to a heap; the thread that has a heap
/// *current* (see heap_scope) owns it and allocates from it without atomics. A heap must
/// be current on at most one thread at a time.
class RAMALLOC_API heap {
public:
  /// A heap that takes memory from the operating system.
  heap();
  /// A heap that allocates only from `buffer` (at least 256 KiB); exhaustion returns
  /// nullptr. Every whole 64 KiB-aligned slice of the buffer holds blocks: the heap's
  /// bookkeeping lives in allocator metadata, so constructing it writes nothing into the
  /// buffer and query never reads it. The buffer must outlive every block allocated from
  /// it. Throws std::invalid_argument (with the reason) when the buffer cannot be used;
  /// the buffer is then left untouched.
  heap(void *buffer, std::size_t size);
  /// Pays the heap's debt and returns its free memory. Blocks still live stay valid and
  /// may be discarded later from any thread: the heap is then orphaned and drained by
  /// other threads' reclaim steps.
  ~heap();
  heap(const heap &) = delete;
  heap &operator=(const heap &) = delete;

  /// Allocates from this heap (the caller must be its owner). O(1).
  void *acquire(std::size_t size) noexcept;
  void *acquire(std::size_t size, std::size_t align) noexcept;
  /// Pays at most `budget` units of this heap's debt; returns units still pending.
  std::size_t reclaim(std::size_t budget) noexcept;
  /// Pays all debt and returns all free memory the policy allows. Unbounded.
  void flush() noexcept;
  /// Frees every block of this heap at once by returning its pages, without visiting a
  /// block: O(pages), not O(objects) — the teardown of an arena-style zone whose objects
  /// need no destructors. Afterwards the heap is as good as new (its address space stays
  /// reserved and is reused by its next allocations); its resident memory is given back
  /// to the OS at once. Every pointer into a released block is invalid: freeing one
  /// later is reported as an invalid free (RAM_ERROR_INVALID_FREE) and changes nothing,
  /// until the heap hands that address out again. Huge blocks (above 32 MiB, each its own
  /// mapping) are not released: they stay valid and are freed one by one. The caller must
  /// be the heap's owner (it is current on the calling thread, or on no thread), and no
  /// thread may free one of its blocks while the call runs. Returns the number of spans
  /// (pages, large blocks, free ranges) it visited.
  std::size_t release_all() noexcept;
  /// This heap's statistics. Safe from any thread (values are relaxed snapshots).
  stats get_stats() const noexcept;
  /// Identity compared against block_info::owner.
  const void *id() const noexcept;

private:
  friend struct detail::heap_access;
  struct borrowed_tag {};
  heap(borrowed_tag, detail::heap_state *state) noexcept;
  detail::heap_state *state_;
  bool owned_;
};

/// RAII: makes `h` the calling thread's current heap for the scope's lifetime, then
/// restores the previous one. O(1).
class RAMALLOC_API heap_scope {
public:
  explicit heap_scope(heap &h) noexcept;
  ~heap_scope();
  heap_scope(const heap_scope &) = delete;
  heap_scope &operator=(const heap_scope &) = delete;

private:
  detail::heap_state *previous_;
};

/// The calling thread's current heap (its own heap unless a heap_scope is active).
RAMALLOC_API heap &current_heap() noexcept;

/// Allocates `size` bytes from the current heap, aligned to the largest power of two
/// <= min(size, 16) (so 4-byte objects pack 4 bytes apart). nullptr on failure. O(1).
RAMALLOC_API void *acquire(std::size_t size) noexcept;
/// Allocates `size` bytes aligned to `align` (a power of two; otherwise nullptr, EINVAL).
RAMALLOC_API void *acquire(std::size_t size, std::size_t align) noexcept;
/// Frees a block; any thread may free any block. nullptr is ignored. O(1).
RAMALLOC_API void discard(void *p) noexcept;
/// Pays at most `budget` units of the current heap's debt (then of orphaned heaps: an
/// exited thread's heap once no thread has exited for purge_delay, so that a thread
/// starting meanwhile adopts it); returns units still pending. O(budget).
RAMALLOC_API std::size_t reclaim(std::size_t budget) noexcept;
/// Pays all of the current heap's debt and returns its free memory. Unbounded.
RAMALLOC_API void flush() noexcept;
/// Tells whether `p` is inside a ramalloc block. Safe for any value. O(1).
RAMALLOC_API std::optional<block_info> query(const void *p) noexcept;
/// Process-wide statistics.
RAMALLOC_API stats get_stats() noexcept;

/// Debug builds count loop iterations inside acquire and discard (to show they are
/// bounded). In release builds both values stay 0.
struct step_counts {
  std::uint64_t max_acquire_steps = 0;
  std::uint64_t max_discard_steps = 0;
};
RAMALLOC_API step_counts max_steps() noexcept;
RAMALLOC_API void reset_max_steps() noexcept;

} // namespace ramalloc
