/* ramalloc C API.
 *
 * Every function here is thread-safe and bounded in time unless its comment says
 * otherwise (only ram_flush is unbounded). Blocks may be freed from any thread.
 */
#ifndef RAMALLOC_RAMALLOC_H
#define RAMALLOC_RAMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RAMALLOC_API __attribute__((visibility("default")))
#else
#define RAMALLOC_API
#endif

/** What ram_query reports about a pointer. */
typedef struct ram_block_info {
  void *start;        /**< start of the block that contains the pointer */
  size_t usable_size; /**< bytes usable from `start` */
  int is_start;       /**< non-zero when the pointer is the block's start */
  void *owner;        /**< opaque owner heap (ramalloc::heap_id) */
  int kind;           /**< 0 small, 1 medium, 2 large, 3 huge */
} ram_block_info;

/** Allocator statistics (see docs/tuning.md for every field). */
typedef struct ram_stats {
  uint64_t live_bytes;       /**< bytes in blocks handed out and not yet freed (block sizes) */
  uint64_t live_blocks;      /**< blocks handed out and not yet freed */
  uint64_t committed_bytes;  /**< bytes of address space that may be resident */
  uint64_t reserved_bytes;   /**< bytes of address space reserved from the OS */
  uint64_t pending_debt;     /**< reclaim units known to be pending */
  uint64_t remote_frees;     /**< frees made by a thread that did not own the block */
  uint64_t pages_purged;     /**< 64 KiB slices returned to the OS with MADV_DONTNEED */
  uint64_t bytes_purged;     /**< bytes returned to the OS (purges and huge unmaps) */
  uint64_t heaps_live;       /**< heap descriptors in use (owned or orphaned) */
  uint64_t heaps_orphaned;   /**< heaps whose owner thread exited, not yet drained */
  uint64_t orphans_adopted;  /**< orphaned heaps taken over by a new thread */
  uint64_t orphans_serviced; /**< reclaim steps spent on orphaned heaps */
  uint64_t invalid_frees;    /**< frees of pointers that were not live blocks */
} ram_stats;

/** Kinds of bad input reported through the error callback. */
typedef enum ram_error {
  RAM_ERROR_INVALID_FREE = 1,     /**< pointer is not from ramalloc */
  RAM_ERROR_INTERIOR_FREE = 2,    /**< pointer is inside a block, not its start */
  RAM_ERROR_DOUBLE_FREE = 3,      /**< block was already free */
  RAM_ERROR_BAD_OPTION = 4,       /**< an option value was rejected */
  RAM_ERROR_OUT_OF_MEMORY = 5,    /**< the OS refused memory (reported only when verbose) */
  RAM_ERROR_WRITE_AFTER_FREE = 6, /**< checked mode: a freed block was written to */
  RAM_ERROR_SIZE_MISMATCH = 7     /**< checked mode: sized delete/free_sized with a size the
                                       block was not allocated with */
} ram_error;

/** Receives error reports. `message` is a NUL-terminated, human-readable line. The
 *  callback must not allocate through ramalloc. */
typedef void (*ram_error_fn)(ram_error error, const void *pointer, const char *message,
                             void *context);

/* --- native interface ------------------------------------------------------------ */

/** Allocates `size` bytes aligned to the largest power of two <= min(size, 16).
 *  size 0 is treated as 1. Returns NULL with errno ENOMEM on failure. O(1). */
RAMALLOC_API void *ram_acquire(size_t size);
/** Allocates `size` bytes aligned to `align` (a power of two, else NULL/EINVAL). */
RAMALLOC_API void *ram_acquire_aligned(size_t size, size_t align);
/** Frees a block from any thread. NULL is ignored; foreign pointers are reported. O(1). */
RAMALLOC_API void ram_discard(void *p);
/** Pays at most `budget` units of the calling thread's debt; returns units still pending.
 *  O(budget). */
RAMALLOC_API size_t ram_reclaim(size_t budget);
/** Pays all of the calling thread's debt and returns all free memory policy allows.
 *  Unbounded. */
RAMALLOC_API void ram_flush(void);
/** Fills `info` if `p` points into a ramalloc block; returns 0 when it does not.
 *  Safe on any pointer value. O(1). */
RAMALLOC_API int ram_query(const void *p, ram_block_info *info);

/* --- malloc-style interface (C rules) -------------------------------------------
 * A block of `size` bytes is aligned for any object of that size: to
 * alignof(max_align_t) = 16 when size > 8, to 8 when size <= 8 (malloc(0) included). */

RAMALLOC_API void *ram_malloc(size_t size);
RAMALLOC_API void *ram_calloc(size_t count, size_t size);
/** realloc(NULL, n) == malloc(n); realloc(p, 0) frees p and returns a new minimum-size
 *  block (never NULL on success, like glibc's behaviour for malloc(0)); on failure p is
 *  left intact and NULL/ENOMEM is returned. */
RAMALLOC_API void *ram_realloc(void *p, size_t size);
RAMALLOC_API void ram_free(void *p);
/** Frees a block from ram_malloc/ram_calloc/ram_realloc of `size` bytes (C23 free_sized).
 *  In checked mode a size of another size class is reported (RAM_ERROR_SIZE_MISMATCH)
 *  and the block is still freed; fast mode ignores the size. */
RAMALLOC_API void ram_free_sized(void *p, size_t size);
/** C11 aligned_alloc: `align` must be a power of two (else NULL/EINVAL); any size is
 *  accepted. */
RAMALLOC_API void *ram_aligned_alloc(size_t align, size_t size);
/** Usable size of a live block; 0 for NULL or a pointer that is not ours. */
RAMALLOC_API size_t ram_usable_size(const void *p);

/* --- heaps of one's own (ramalloc::heap in C++) ---------------------------------- */

/** An owned heap: the unit of ownership (see ramalloc::heap). */
typedef struct ram_heap ram_heap;

/** Creates a heap that takes memory from the OS; NULL with errno ENOMEM on failure. */
RAMALLOC_API ram_heap *ram_heap_create(void);
/** Pays the heap's debt and returns its free memory; blocks still live stay valid (the
 *  heap is then drained by other threads' reclaim steps). NULL is ignored. */
RAMALLOC_API void ram_heap_destroy(ram_heap *heap);
/** Allocates from `heap` (the caller must own it), like ram_acquire. O(1). */
RAMALLOC_API void *ram_heap_acquire(ram_heap *heap, size_t size);
/** Pays at most `budget` units of `heap`'s debt; returns units still pending. */
RAMALLOC_API size_t ram_heap_reclaim(ram_heap *heap, size_t budget);
/** Frees every small, medium and large block of `heap` at once, O(pages): see
 *  ramalloc::heap::release_all. Returns the spans visited. */
RAMALLOC_API size_t ram_heap_release_all(ram_heap *heap);
/** Statistics of `heap`. */
RAMALLOC_API void ram_heap_get_stats(const ram_heap *heap, ram_stats *out);

/* --- statistics, options, errors ------------------------------------------------- */

/** Process-wide statistics. Safe to call from any thread at any time. */
RAMALLOC_API void ram_get_stats(ram_stats *out);
/** Statistics of the calling thread's current heap. */
RAMALLOC_API void ram_get_heap_stats(ram_stats *out);
/** Sets an option by its environment-variable name (e.g. "RAMALLOC_PURGE_DELAY_MS").
 *  Returns 0 on success; on a bad name or value, reports RAM_ERROR_BAD_OPTION with a
 *  message naming the variable and returns -1 (errno EINVAL). */
RAMALLOC_API int ram_set_option(const char *name, const char *value);
/** Installs the error callback (NULL restores the default). `fn` and `context` are
 *  published together: a concurrent report gets the old pair or the new pair, never a
 *  mix. A report already in flight may still reach the old callback after this returns. */
RAMALLOC_API void ram_set_error_handler(ram_error_fn fn, void *context);

#ifdef __cplusplus
}
#endif

#endif /* RAMALLOC_RAMALLOC_H */
