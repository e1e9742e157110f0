// Heaps and static-buffer heaps under memcheck (tests/valgrind/CMakeLists.txt): one known
// bug per run (argv[1]); "clean" has none and must report nothing.
#include <cstdio>
#include <cstring>
#include <vector>

#include "ramalloc/ramalloc.h"
#include "ramalloc/ramalloc.hpp"

namespace {

unsigned char peek(const void *p, std::size_t i) {
  return static_cast<const volatile unsigned char *>(p)[i];
}

alignas(65536) unsigned char g_buffer[1 << 20]; // a static buffer, as embedded users have

int clean() {
  int sum = 0;
  {
    ramalloc::heap h;
    for (int round = 0; round < 3; ++round) {
      std::vector<void *> blocks;
      for (std::size_t n : {1u, 4u, 8u, 30u, 500u, 9000u, 100000u}) {
        auto *p = static_cast<unsigned char *>(h.acquire(n));
        std::memset(p, round, n);
        blocks.push_back(p);
      }
      sum += peek(blocks[3], 29);
      if (round == 1) {
        h.release_all(); // every block at once: nothing leaks, nothing is freed twice
      } else {
        for (void *p : blocks)
          ramalloc::discard(p);
      }
    }
    ramalloc::heap_scope scope(h);
    void *a = ramalloc::acquire(100, 256);
    std::memset(a, 1, 100);
    ramalloc::discard(a);
  }
  {
    ramalloc::heap s(g_buffer, sizeof g_buffer);
    auto *p = static_cast<unsigned char *>(s.acquire(200));
    std::memset(p, 3, 200);
    sum += peek(p, 199);
    ramalloc::discard(p);
    auto *q = static_cast<unsigned char *>(s.acquire(40));
    q[0] = 1;
    s.release_all();
  }
  // The buffer is the program's again once its heap is gone.
  std::memset(g_buffer, 0, sizeof g_buffer);
  sum += peek(g_buffer, 1000);
  std::printf("clean: %d\n", sum);
  return 0;
}

int heap_use_after_release_all() {
  ramalloc::heap h;
  void *p = h.acquire(64);
  std::memset(p, 1, 64);
  h.release_all();
  return peek(p, 0); // bug: release_all freed it
}

int heap_leak() {
  ramalloc::heap h;
  void *p = h.acquire(72);
  std::memset(p, 1, 72);
  return p == nullptr; // bug: never discarded; the heap goes, the block stays live
}

int static_use_after_discard() {
  ramalloc::heap s(g_buffer, sizeof g_buffer);
  void *p = s.acquire(100);
  std::memset(p, 1, 100);
  ramalloc::discard(p);
  return peek(p, 10); // bug
}

int static_read_past_end() {
  ramalloc::heap s(g_buffer, sizeof g_buffer);
  void *p = s.acquire(24);
  std::memset(p, 1, 24);
  const int r = peek(p, 24); // bug
  ramalloc::discard(p);
  return r;
}

int g_reports = 0;
void count_report(ram_error, const void *, const char *, void *) {
  ++g_reports; // the program's callback: memcheck checks it as the program's code
}

int report_then_use_after_free() {
  // Reports reach the program's callback from inside ramalloc (a bad free) and from
  // outside any allocation (a bad option): memcheck must report the program's bugs after
  // both, as before.
  ram_set_error_handler(count_report, nullptr);
  ramalloc::set_option("RAMALLOC_ON_INVALID", "warn");
  ramalloc::set_option("RAMALLOC_PURGE_DELAY_MS", "not a number");
  void *p = ramalloc::acquire(32);
  std::memset(p, 1, 32);
  ramalloc::discard(p);
  ramalloc::discard(p); // reported through the callback (and by memcheck: Invalid free)
  ram_set_error_handler(nullptr, nullptr);
  return g_reports + peek(p, 8); // bug: the block is free
}

} // namespace

int main(int argc, char **argv) {
  const struct {
    const char *name;
    int (*run)();
  } cases[] = {{"clean", clean},
               {"heap-use-after-release-all", heap_use_after_release_all},
               {"heap-leak", heap_leak},
               {"static-use-after-discard", static_use_after_discard},
               {"static-read-past-end", static_read_past_end},
               {"report-then-use-after-free", report_then_use_after_free}};
  for (const auto &c : cases)
    if (argc == 2 && std::strcmp(argv[1], c.name) == 0)
      return c.run() == 42 ? 42 : 0;
  std::fprintf(stderr,
               "usage: %s clean|heap-use-after-release-all|heap-leak|"
               "static-use-after-discard|static-read-past-end|report-then-use-after-free\n",
               argv[0]);
  return 2;
}
