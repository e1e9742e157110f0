/* The malloc+free pair loop whose instruction count (valgrind callgrind) is the
 * fast-path figure in docs/benchmarks.md. Run as `bench_pair_count N 64` for two values
 * of N: the difference in instructions divided by 2 * (N2 - N1) is the cost of one pair,
 * averaged over a single-block loop (malloc then free) and a 1000-block batch (1000
 * mallocs of size..size+112, then 1000 frees). Includes ~12 instructions of loop. */
#include <stdlib.h>

int main(int argc, char **argv) {
  if (argc < 3)
    return 2;
  long n = atol(argv[1]);
  size_t sz = (size_t)atol(argv[2]);
  for (long i = 0; i < n; i++) {
    void *p = malloc(sz);
    __asm__ volatile("" ::"r"(p) : "memory");
    free(p);
  }
  void *v[1000];
  for (long r = 0; r < n / 1000; r++) {
    for (int i = 0; i < 1000; i++)
      v[i] = malloc(sz + (size_t)(i % 8) * 16);
    for (int i = 0; i < 1000; i++)
      free(v[i]);
  }
  return 0;
}
