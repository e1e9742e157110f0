/* A few hundred mallocs of mixed small sizes, all live at exit, plus stdio: the
 * fixed cost of an allocator to a small C utility. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  void *p[400];
  unsigned x = 1;
  for (int i = 0; i < 400; ++i) {
    x = x * 1103515245u + 12345u;
    size_t n = 1 + (x >> 16) % 512;
    p[i] = malloc(n);
    if (p[i] == NULL)
      return 1;
    memset(p[i], i, n);
  }
  for (int i = 0; i < 400; i += 2)
    free(p[i]);
  printf("%p\n", p[1] != NULL ? (void *)1 : NULL);
  return 0;
}
