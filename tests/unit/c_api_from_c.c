/* Compiled as C: proves <ramalloc/ramalloc.h> is a valid C header and that the C
 * interface works from C. Called by test_c_api.cpp. */
#include <ramalloc/ramalloc.h>

#include <string.h>

/* Returns 0 on success, or the number of the first check that failed. */
int ramalloc_c_round_trip(void) {
  ram_block_info info;
  ram_stats stats;
  char *p = (char *)ram_malloc(100);
  if (p == NULL)
    return 1;
  if (((uintptr_t)p) % 16 != 0)
    return 2;
  memset(p, 'x', 100);
  if (!ram_query(p + 50, &info))
    return 3;
  if (info.start != p || info.is_start || info.usable_size < 100)
    return 4;
  p = (char *)ram_realloc(p, 5000);
  if (p == NULL || p[99] != 'x')
    return 5;
  ram_free(p);
  p = (char *)ram_calloc(10, 10);
  if (p == NULL || p[0] != 0 || p[99] != 0)
    return 6;
  ram_free(p);
  p = (char *)ram_acquire(4);
  if (p == NULL || ram_usable_size(p) < 4)
    return 7;
  ram_discard(p);
  ram_get_stats(&stats);
  ram_get_heap_stats(&stats);
  (void)ram_reclaim(1);
  ram_flush();
  return 0;
}
