// One known memory bug per run, for memcheck to report (tests/valgrind/CMakeLists.txt).
// Built twice: with RAMALLOC_VG_NATIVE, against ramalloc's native C API (ram_acquire /
// ram_discard / ram_realloc, linked statically); without, against plain malloc/free, run
// with LD_PRELOAD=libramalloc.so. argv[1] names the bug; "clean" has none and must
// report nothing (no error, no leak), while exercising every path the annotations touch.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef RAMALLOC_VG_NATIVE
#include "ramalloc/ramalloc.h"
#define vg_alloc(n) ram_acquire(n)
#define vg_free(p) ram_discard(p)
#define vg_realloc(p, n) ram_realloc(p, n)
#define vg_calloc(c, n) ram_calloc(c, n)
#define vg_usable(p) ram_usable_size(p)
#define vg_aligned(a, n) ram_acquire_aligned(n, a)
#else
#include <malloc.h>
#define vg_alloc(n) malloc(n)
#define vg_free(p) free(p)
#define vg_realloc(p, n) realloc(p, n)
#define vg_calloc(c, n) calloc(c, n)
#define vg_usable(p) malloc_usable_size(p)
#define vg_aligned(a, n) aligned_alloc(a, n)
#endif

// Reads through a volatile pointer so the compiler keeps every access it is told to make.
static unsigned char peek(const void *p, size_t i) {
  return ((const volatile unsigned char *)p)[i];
}

// Every block is stored here (a volatile store is never removed), so the compiler cannot
// prove a malloc/free pair dead and remove it, as GCC does with plain malloc.
static void *volatile hidden;

static int use_after_free(void) {
  char *p = vg_alloc(32);
  hidden = p;
  memset(p, 1, 32);
  vg_free(p);
  return peek(p, 8); // bug: the block is free
}

static int read_past_end(void) {
  char *p = vg_alloc(10); // a 16-byte block: bytes 10..15 are slack, not the program's
  hidden = p;
  memset(p, 1, 10);
  const int r = peek(p, 10); // bug: one past the end
  vg_free(p);
  return r;
}

static int overflow_into_neighbour(void) {
  char *a = vg_alloc(64), *b = vg_alloc(64); // 64-byte blocks: no slack after a
  hidden = a;
  memset(a, 1, 64);
  hidden = b;
  vg_free(b);                // a's neighbour is b (free now) or a block never handed out
  const int r = peek(a, 64); // bug: the first byte after a
  vg_free(a);
  return r;
}

static int leak(void) {
  char *p = vg_alloc(40);
  hidden = p;
  memset(p, 2, 40);
  hidden = NULL;
  return peek(p, 0) == 3; // bug: p is never freed and no pointer to it survives main
}

static int uninitialised(void) {
  char *p = vg_alloc(16);
  hidden = p;
  if (peek(p, 3) == 7) // bug: p[3] was never written
    puts("seven");
  vg_free(p);
  return 0;
}

static int double_free(void) {
  char *p = vg_alloc(48);
  hidden = p;
  vg_free(p);
  vg_free(p); // bug (ramalloc reports it too)
  return 0;
}

static int realloc_shrunk_read(void) {
  char *p = vg_alloc(100); // a 112-byte block
  hidden = p;
  memset(p, 1, 100);
  p = vg_realloc(p, 60);     // stays in place: 60 >= 112 / 2
  const int r = peek(p, 70); // bug: past the new size
  vg_free(p);
  return r;
}

static void *free_remotely(void *p) {
  vg_free(p); // the block belongs to the main thread's heap: a remote free
  return NULL;
}

static int clean(void) {
  int sum = 0;
  // Sizes from tiny to huge (a huge block is a mapping of its own).
  static const size_t sizes[] = {0, 1, 4, 8, 15, 16, 100, 4096, 70000, 300000, 40u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    char *p = vg_alloc(sizes[i]);
    hidden = p;
    memset(p, (int)i, sizes[i]);
    sum += sizes[i] != 0 ? peek(p, sizes[i] - 1) : 0;
    vg_free(p);
  }
  // Reuse of a freed block, LIFO.
  for (int round = 0; round < 1000; ++round) {
    char *p = vg_alloc(24);
    hidden = p;
    p[0] = (char)round;
    sum += p[0];
    vg_free(p);
  }
  // calloc is defined everywhere, also a large one that needs no memset.
  unsigned char *z = vg_calloc(1000, 100);
  for (size_t i = 0; i < 100000; i += 999)
    sum += z[i];
  vg_free(z);
  // realloc: in place (shrink and grow within the block) and moving; contents kept.
  char *r = vg_alloc(100);
  memset(r, 5, 100);
  r = vg_realloc(r, 70);
  sum += peek(r, 69);
  r = vg_realloc(r, 110);
  r[109] = 1;
  r = vg_realloc(r, 5000);
  sum += peek(r, 50) + peek(r, 109);
  vg_free(r);
  // The usable size is the program's to use.
  char *u = vg_alloc(10);
  const size_t n = vg_usable(u);
  memset(u, 1, n);
  sum += peek(u, n - 1);
  vg_free(u);
  // Aligned blocks.
  char *a = vg_aligned(4096, 100);
  memset(a, 1, 100);
  vg_free(a);
  // Remote frees: another thread frees this thread's blocks.
  for (int t = 0; t < 4; ++t) {
    void *b = vg_alloc(256);
    memset(b, 1, 256);
    pthread_t th;
    if (pthread_create(&th, NULL, free_remotely, b) != 0)
      return 1;
    pthread_join(th, NULL);
  }
  void *again = vg_alloc(256); // may be one of them, handed out again
  memset(again, 2, 256);
  vg_free(again);
  printf("clean: %d\n", sum);
  return 0;
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(void);
  } cases[] = {{"clean", clean},
               {"use-after-free", use_after_free},
               {"read-past-end", read_past_end},
               {"overflow-into-neighbour", overflow_into_neighbour},
               {"leak", leak},
               {"uninitialised", uninitialised},
               {"double-free", double_free},
               {"realloc-shrunk-read", realloc_shrunk_read}};
  for (size_t i = 0; argc == 2 && i < sizeof cases / sizeof cases[0]; ++i)
    if (strcmp(argv[1], cases[i].name) == 0)
      return cases[i].run() == 42 ? 42 : 0; // the result only keeps the reads alive
  fprintf(stderr,
          "usage: %s clean|use-after-free|read-past-end|overflow-into-neighbour|leak|"
          "uninitialised|double-free|realloc-shrunk-read\n",
          argv[0]);
  return 2;
}
