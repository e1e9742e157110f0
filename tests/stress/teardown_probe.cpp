// A program that uses the allocator at every awkward moment of a process's life, run by
// ctest and expected to exit 0 with nothing on stderr (RAMALLOC_ON_INVALID=abort):
//  - a thread whose later pthread-key destructor allocates and frees after ramalloc's
//    own destructor handed the thread's heap off (the allocator binds again and re-arms
//    its destructor);
//  - blocks left by exited threads, freed by a static destructor after main returns;
//  - an atexit handler that allocates, frees and flushes while exit() runs.
#include <ramalloc/ramalloc.hpp>

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

pthread_key_t late_key;
void *late_blocks[64];

void late_destructor(void *) {
  // Runs after ramalloc's own key destructor (keys run in creation order): the heap was
  // already handed off. Allocate, free some, keep some for main to free.
  for (int i = 0; i < 64; ++i) {
    late_blocks[i] = ramalloc::acquire(48 + i);
    std::memset(late_blocks[i], i, 48 + static_cast<std::size_t>(i));
  }
  for (int i = 0; i < 32; ++i) ramalloc::discard(late_blocks[i]);
}

struct leftovers {
  std::vector<void *> blocks;
  ~leftovers() { // a static destructor, after main returned
    for (void *p : blocks) ramalloc::discard(p);
    ramalloc::flush();
    const ramalloc::stats s = ramalloc::get_stats();
    if (s.live_blocks != 0) {
      std::fprintf(stderr, "teardown_probe: %llu blocks still live after the static destructor\n",
                   static_cast<unsigned long long>(s.live_blocks));
      std::_Exit(3);
    }
  }
};
leftovers g_leftovers; // constructed before main, destroyed after it

} // namespace

int main() {
  ramalloc::discard(ramalloc::acquire(16)); // ramalloc's thread key exists before ours
  if (pthread_key_create(&late_key, late_destructor) != 0) return 1;
  for (int round = 0; round < 8; ++round) {
    std::thread t([] {
      pthread_setspecific(late_key, reinterpret_cast<void *>(1));
      for (int i = 0; i < 100; ++i) g_leftovers.blocks.push_back(ramalloc::acquire(16 + 8 * i));
    });
    t.join();
    for (int i = 32; i < 64; ++i) ramalloc::discard(late_blocks[i]);
  }
  const ramalloc::stats s = ramalloc::get_stats();
  // Eight threads came and went one at a time: heaps are adopted, not accumulated.
  if (s.heaps_live > 3) {
    std::fprintf(stderr, "teardown_probe: %llu heaps live after 8 sequential threads\n",
                 static_cast<unsigned long long>(s.heaps_live));
    return 2;
  }
  std::atexit([] {
    void *p = ramalloc::acquire(100);
    ramalloc::discard(p);
    ramalloc::flush();
  });
  return 0;
}
