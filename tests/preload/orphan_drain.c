/* A program that never calls reclaim (it knows nothing of ramalloc) and whose worker
 * threads exit with everything they allocated still live: the main thread frees those
 * blocks, then goes on with ordinary work. Under LD_PRELOAD=libramalloc.so the exited
 * threads' heaps (orphans) must be drained by the allocator's own bounded slow-path
 * steps, so resident memory comes back and no orphan is left, without any new thread
 * adopting them.
 *
 *   orphan_drain            exit 0: converged; 1: did not within the bounds; 77: not
 *                           running under libramalloc.so (nothing to check)
 *
 * Run with the default options: orphans that no thread adopts are drained by slow paths
 * once no thread has exited for purge_delay (250 ms).
 *
 * Bounded: at most max_rounds rounds of work, and at most 20 s, whichever comes first.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ramalloc/ramalloc.h"

enum { threads = 4, blocks_per_thread = 262144, block_size = 64, max_rounds = 200000 };

static void *blocks[threads][blocks_per_thread];

static size_t resident_bytes(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  fclose(f);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *worker(void *arg) {
  void **mine = arg;
  for (int i = 0; i < blocks_per_thread; ++i) {
    mine[i] = malloc(block_size);
    if (mine[i] == NULL)
      abort();
    memset(mine[i], 0x5A, block_size);
  }
  return NULL; /* exits with every block live */
}

int main(void) {
  void (*get_stats)(ram_stats *) = (void (*)(ram_stats *))dlsym(RTLD_DEFAULT, "ram_get_stats");
  if (get_stats == NULL) {
    printf("orphan_drain: not running under libramalloc.so; nothing to check\n");
    return 77;
  }
  /* The baseline includes this program's own table of pointers and the main thread's
   * heap, warmed up. */
  memset(blocks, 0, sizeof blocks);
  void *warm[4096];
  for (int i = 0; i < 4096; ++i)
    warm[i] = malloc(block_size);
  for (int i = 0; i < 4096; ++i)
    free(warm[i]);
  const size_t baseline = resident_bytes();

  pthread_t t[threads];
  for (int i = 0; i < threads; ++i)
    if (pthread_create(&t[i], NULL, worker, blocks[i]) != 0)
      return 1;
  for (int i = 0; i < threads; ++i)
    pthread_join(t[i], NULL);
  const size_t peak = resident_bytes();
  ram_stats s;
  get_stats(&s);
  printf("orphan_drain: baseline %zu KiB, after the workers %zu KiB, %llu orphaned heaps\n",
         baseline >> 10, peak >> 10, (unsigned long long)s.heaps_orphaned);

  for (int i = 0; i < threads; ++i)
    for (int j = 0; j < blocks_per_thread; ++j)
      free(blocks[i][j]);

  /* Ordinary work on the main thread: a working set of 4096 blocks of mixed sizes in
   * which the oldest block is replaced by a new one, so pages empty and refill and the
   * allocator takes its slow paths now and then, as real programs make it do. */
  memset(warm, 0, sizeof warm);
  const size_t margin = 8u << 20;
  const double deadline = seconds() + 20.0;
  unsigned x = 12345;
  int rounds = 0;
  size_t now = resident_bytes();
  for (; rounds < max_rounds && seconds() < deadline; ++rounds) {
    get_stats(&s);
    now = resident_bytes();
    if (s.heaps_orphaned == 0 && now < baseline + margin)
      break;
    for (int i = 0; i < 4096; ++i) {
      x = x * 1103515245u + 12345u;
      free(warm[i]);
      warm[i] = malloc(16 + (x >> 16) % 2048);
    }
  }
  for (int i = 0; i < 4096; ++i)
    free(warm[i]);
  get_stats(&s);
  now = resident_bytes();
  printf("orphan_drain: after %d rounds of work: %zu KiB resident, %llu orphaned heaps, "
         "%llu live blocks\n",
         rounds, now >> 10, (unsigned long long)s.heaps_orphaned,
         (unsigned long long)s.live_blocks);
  if (s.heaps_orphaned != 0 || now >= baseline + margin) {
    printf("orphan_drain: FAILED: the exited threads' memory did not come back "
           "(resident %zu KiB, baseline %zu KiB, margin %zu KiB)\n",
           now >> 10, baseline >> 10, margin >> 10);
    return 1;
  }
  return 0;
}
