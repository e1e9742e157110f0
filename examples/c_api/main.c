/* ramalloc from C: the native operations, the malloc-style functions, bad input, stats.
 * Exits non-zero if a promise of the C API does not hold. */
#include <ramalloc/ramalloc.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("  !! FAILED: %s\n", what);
    ++failures;
  }
}

/* Error reports (bad frees, rejected options) arrive here instead of the default
 * message; it must not allocate through ramalloc. */
static void on_error(ram_error error, const void *pointer, const char *message, void *context) {
  int *count = (int *)context;
  ++*count;
  printf("  error callback: code %d, pointer %p: %s\n", (int)error, pointer, message);
}

int main(void) {
  int errors_reported = 0;
  ram_set_error_handler(on_error, &errors_reported);

  /* Native interface: 4-byte objects are 4-byte aligned and pack 4 bytes apart. */
  uint32_t *a = ram_acquire(sizeof *a);
  uint32_t *b = ram_acquire(sizeof *b);
  check(a != NULL && b != NULL, "ram_acquire(4)");
  if (a != NULL && b != NULL) {
    *a = 1;
    *b = 2;
    printf("ram_acquire(4) twice: %p and %p (%td bytes apart)\n", (void *)a, (void *)b,
           (char *)b - (char *)a);
    ram_block_info info;
    check(ram_query(a, &info) && info.is_start && info.usable_size >= 4,
          "ram_query knows a 4-byte block");
  }
  ram_discard(a);
  ram_discard(b);

  /* Aligned blocks. */
  void *page = ram_acquire_aligned(1000, 4096);
  check(page != NULL && ((uintptr_t)page % 4096) == 0, "ram_acquire_aligned(1000, 4096)");
  printf("ram_acquire_aligned(1000, 4096) = %p\n", page);
  ram_discard(page);

  /* malloc-style interface. */
  char *text = ram_malloc(16);
  check(text != NULL, "ram_malloc(16)");
  if (text != NULL) {
    strcpy(text, "hello");
    char *longer = ram_realloc(text, 4000);
    check(longer != NULL && strcmp(longer, "hello") == 0, "ram_realloc keeps the contents");
    if (longer != NULL)
      text = longer;
    printf("ram_realloc to 4000 bytes: usable size %zu, text \"%s\"\n", ram_usable_size(text),
           text);
    ram_free(text);
  }
  int *zeros = ram_calloc(100, sizeof *zeros);
  check(zeros != NULL, "ram_calloc(100, sizeof(int))");
  if (zeros != NULL) {
    int all_zero = 1;
    for (int i = 0; i < 100; ++i)
      all_zero = all_zero && zeros[i] == 0;
    check(all_zero, "ram_calloc memory is zeroed");
  }
  ram_free(zeros);
  void *aligned = ram_aligned_alloc(64, 256);
  check(aligned != NULL && ((uintptr_t)aligned % 64) == 0, "ram_aligned_alloc(64, 256)");
  ram_free(aligned);
  ram_free(NULL); /* does nothing */

  /* Bad input: NULL with errno, never a crash. */
  errno = 0;
  check(ram_malloc(SIZE_MAX) == NULL && errno == ENOMEM, "ram_malloc(SIZE_MAX) -> ENOMEM");
  errno = 0;
  check(ram_calloc(SIZE_MAX, 2) == NULL && errno == ENOMEM, "ram_calloc overflow -> ENOMEM");
  errno = 0;
  check(ram_aligned_alloc(3, 16) == NULL && errno == EINVAL, "alignment 3 -> EINVAL");
  printf("bad sizes and alignments: NULL with ENOMEM / EINVAL as expected\n");
  check(ram_set_option("RAMALLOC_PURGE_DELAY_MS", "soon") != 0, "a bad option value is rejected");
  check(errors_reported == 1, "the rejected option was reported through the callback");

  /* Stack memory is not ours. */
  int local = 0;
  ram_block_info info;
  check(ram_query(&local, &info) == 0, "ram_query(stack pointer) says not ours");

  ram_flush();
  ram_stats stats;
  ram_get_stats(&stats);
  printf("stats: live_blocks=%" PRIu64 " live_bytes=%" PRIu64 " committed_bytes=%" PRIu64
         " reserved_bytes=%" PRIu64 " invalid_frees=%" PRIu64 "\n",
         stats.live_blocks, stats.live_bytes, stats.committed_bytes, stats.reserved_bytes,
         stats.invalid_frees);

  ram_set_error_handler(NULL, NULL);
  if (failures != 0) {
    printf("c_api example: %d check(s) FAILED\n", failures);
    return 1;
  }
  printf("c_api example: all checks passed\n");
  return 0;
}
