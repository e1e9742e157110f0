/* The bad-input shapes of issue 12 against the preloaded libramalloc.so, as an external
 * program sees them: plain malloc/free/realloc, run with LD_PRELOAD, RAMALLOC_CHECKED=1
 * and RAMALLOC_ON_INVALID=warn. Each shape must produce exactly the expected report
 * (collected through ram_set_error_handler, found with dlsym as any program would) at
 * 8 B, 4 KiB and 256 KiB; the default handler's lines also go to stderr (the test prints
 * them). Exit 0 when every shape was reported as documented in docs/hardening.md, 77 when
 * ramalloc is not preloaded. */
#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*error_fn)(int error, const void *pointer, const char *message, void *context);
typedef void (*set_handler_fn)(error_fn, void *);

enum { invalid_free = 1, interior_free = 2, double_free = 3, size_mismatch = 7 };

static int last_error, reports;
static char last_message[512];

static void record(int error, const void *pointer, const char *message, void *context) {
  (void)pointer;
  (void)context;
  last_error = error;
  ++reports;
  snprintf(last_message, sizeof last_message, "%s", message);
}

static int failures;

static void expect(const char *shape, size_t size, int error) {
  if (reports != 1 || last_error != error) {
    fprintf(stderr, "FAIL %s at %zu B: %d reports, last %d (%s), expected one of kind %d\n",
            shape, size, reports, last_error, last_message, error);
    ++failures;
  } else {
    printf("ok   %-34s %7zu B: %s\n", shape, size, last_message);
  }
  reports = 0;
  last_error = 0;
}

static void *volatile sink;
static void *keep(void *p) {
  sink = p;
  return sink;
}

int main(void) {
  set_handler_fn set_handler = (set_handler_fn)dlsym(RTLD_DEFAULT, "ram_set_error_handler");
  if (set_handler == NULL) {
    fprintf(stderr, "libramalloc.so is not preloaded\n");
    return 77;
  }
  set_handler(record, NULL);
  const size_t sizes[] = {8, 4096, 256 * 1024};
  for (int k = 0; k < 3; ++k) {
    const size_t n = sizes[k];
    char *a = keep(malloc(n)), *b = keep(malloc(n));
    free(a);
    free(a);
    expect("double free, immediate", n, double_free);
    void *others[100];
    char *c = keep(malloc(n));
    for (int i = 0; i < 100; ++i)
      others[i] = keep(malloc(n));
    free(c);
    for (int i = 0; i < 100; ++i)
      free(others[i]);
    free(c);
    expect("double free, delayed", n, double_free);
    char *d = keep(malloc(n));
    free(d);
    free(b);
    free(d);
    expect("double free, interleaved", n, double_free);
    char *e = keep(malloc(n));
    free(e);
    char *f = keep(malloc(n)); /* the next block: not e, which the quarantine holds */
    free(e);
    expect("double free after a single reuse", n, double_free);
    free(f);
    char *g = keep(malloc(n));
    if (realloc(g, n * 2) != NULL) {
      /* g moved or grew: the old pointer is freed or the same block */
    }
    int on_stack = 0;
    free(&on_stack);
    expect("free of a stack address", n, invalid_free);
    free(alloca(n));
    expect("free of an alloca block", n, invalid_free);
    char *h = keep(malloc(n));
    free(h + 1);
    expect("free of an unaligned pointer", n, interior_free);
    free(h + n / 2);
    expect("free of an interior pointer", n, interior_free);
    free((void *)(uintptr_t)0x10000000deadull);
    expect("free far from any block", n, invalid_free);
    char *i2 = keep(malloc(n));
    free(i2);
    if (realloc(i2, 10) != NULL)
      ++failures;
    expect("realloc of a freed block", n, double_free);
    free(h);
    if (reports != 0) {
      fprintf(stderr, "FAIL a valid free was reported: %s\n", last_message);
      ++failures;
      reports = 0;
    }
  }
  void (*free_sized)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
  if (free_sized != NULL) {
    void *p = keep(malloc(100));
    free_sized(p, 5000);
    expect("free_sized with another class's size", 100, size_mismatch);
  }
  printf("%s\n", failures == 0 ? "every shape reported" : "some shapes were not reported");
  return failures == 0 ? 0 : 1;
}
