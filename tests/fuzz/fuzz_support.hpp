// Shared by the allocator's fuzz targets: an invariant that fails aborts with its text,
// which libFuzzer reports as a crash (and saves the input that caused it).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace fuzz_support {

[[noreturn]] inline void fail(const char *target, const char *what) {
  std::fprintf(stderr, "%s: invariant violated: %s\n", target, what);
  std::abort();
}

} // namespace fuzz_support

/// Checks invariant `c` of fuzz target `target` (a string literal naming it).
#define FUZZ_REQUIRE(target, c)                                                            \
  do {                                                                                     \
    if (!(c))                                                                              \
      ::fuzz_support::fail(target, #c);                                                    \
  } while (0)
