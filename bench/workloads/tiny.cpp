// (f) Tiny objects: what a 4-byte object really costs.
//
// Allocates N objects of --size bytes (default 4) in bulk, writes each one, and reports
// the growth of the process's RSS divided by N: bytes per object, every kind of allocator
// metadata included. The pointer array lives in a mapping of our own that is written
// in full before the first reading, so it is not counted. Then frees them all.
//
// What malloc(4) costs depends first on the alignment an allocator promises for small
// sizes: glibc gives every block 16-byte alignment (alignof max_align_t), so 16 bytes is
// its floor; mimalloc, jemalloc, tcmalloc, oneTBB and ramalloc's malloc give requests of
// up to 8 bytes 8-byte alignment (enough for any object that fits, which is what C
// requires), so 8 is theirs. --native calls ramalloc::acquire(4), which packs 4-byte
// objects 4 bytes apart (the 4.1 bytes-per-object target is for that mode).
//
//   bench_tiny [--size B] [--scale X] [--native]
#include "../common/bench.hpp"

#include <sys/mman.h>

namespace {

struct config {
  std::size_t size;
  std::uint64_t count;
};

template <class Mode>
int run(const config &cfg) {
  const std::size_t bytes = cfg.count * sizeof(void *);
  void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  auto **ptrs = static_cast<void **>(m);
  std::memset(ptrs, 0, bytes);
  Mode mode;
  // One allocation first, so the allocator's one-time start-up is not counted per object.
  void *warm = mode.alloc(cfg.size);
  mode.release(warm);

  const std::uint64_t rss0 = bench::rss_kb();
  const double t0 = bench::now_s();
  for (std::uint64_t i = 0; i < cfg.count; ++i) {
    void *p = mode.alloc(cfg.size);
    std::memset(p, static_cast<int>(i), cfg.size);
    ptrs[i] = p;
    mode.step();
  }
  const double t_alloc = bench::now_s() - t0;
  const std::uint64_t rss1 = bench::rss_kb();
  const double t1 = bench::now_s();
  for (std::uint64_t i = 0; i < cfg.count; ++i) {
    mode.release(ptrs[i]);
    mode.step();
  }
  mode.finish();
  const double t_free = bench::now_s() - t1;

  bench::result res("tiny", Mode::name);
  res.num("size", double(cfg.size)).num("objects", double(cfg.count));
  res.num("wall_s", t_alloc + t_free).num("alloc_s", t_alloc).num("free_s", t_free);
  res.num("rss_growth_kb", double(rss1 - rss0));
  res.num("bytes_per_object", double(rss1 - rss0) * 1024.0 / double(cfg.count));
  res.print();
  munmap(m, bytes);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(argc, argv, {"size", "scale", "native", "reclaim-every", "reclaim-budget"});
  config cfg;
  cfg.size = static_cast<std::size_t>(o.num("size", 4));
  cfg.count = bench::scaled(2e7, bench::scale_of(o), 1000);
  return bench::dispatch(o, [&]<class Mode>() { return run<Mode>(cfg); });
}
