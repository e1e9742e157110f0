// (e) Thread churn: threads come and go with live objects.
//
// The program runs waves of T short-lived threads. Each thread frees the objects the
// thread in its slot of the previous wave left behind (that thread has exited, so these
// are frees into a dead thread's memory), allocates K objects (operator new, 16..512
// bytes), frees half of them, and exits with the other half still live, for the next
// wave. The pattern of a server that spawns a thread per job or resizes its pool: it
// exercises thread-exit hand-off, adoption of a dead thread's memory, and per-thread
// bookkeeping that must not leak.
//
//   bench_thread_churn [--threads T] [--objects K] [--scale X] [--native]
#include "../common/bench.hpp"

namespace {

struct config {
  unsigned threads;
  std::uint64_t waves;
  std::size_t objects;
  std::size_t min_size = 16, max_size = 512;
};

template <class Mode>
int run(const config &cfg) {
  // handoff[slot] holds what the thread in that slot left live; each slot is touched by
  // one thread per wave, and waves are separated by join().
  std::vector<std::vector<void *>> handoff(cfg.threads);
  for (auto &h : handoff)
    h.reserve(cfg.objects);

  const double t0 = bench::now_s();
  for (std::uint64_t w = 0; w < cfg.waves; ++w) {
    std::vector<std::thread> threads;
    threads.reserve(cfg.threads);
    for (unsigned t = 0; t < cfg.threads; ++t) {
      threads.emplace_back([&, t, w] {
        Mode mode;
        bench::rng r(w * 1000003 + t);
        std::vector<void *> &mine = handoff[t];
        for (void *p : mine) {
          mode.release_new(p);
          mode.step();
        }
        mine.clear();
        void *local[4096];
        const std::size_t k = std::min<std::size_t>(cfg.objects, 4096);
        for (std::size_t i = 0; i < k; ++i) {
          const std::size_t n = r.range(cfg.min_size, cfg.max_size);
          local[i] = mode.alloc_new(n);
          bench::touch(local[i], n);
          mode.step();
        }
        for (std::size_t i = 0; i < k; ++i) {
          if (i % 2 == 0) {
            mode.release_new(local[i]);
            mode.step();
          } else {
            mine.push_back(local[i]);
          }
        }
        mode.finish();
      });
    }
    for (auto &t : threads)
      t.join();
  }
  const double wall = bench::now_s() - t0;
  Mode mode;
  for (auto &h : handoff)
    for (void *p : h)
      mode.release_new(p);
  mode.finish();

  bench::result res("thread-churn", Mode::name);
  res.num("threads_per_wave", cfg.threads).num("waves", double(cfg.waves));
  res.num("objects", double(cfg.objects)).num("wall_s", wall);
  res.num("threads_per_s", double(cfg.waves * cfg.threads) / wall);
  res.print();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(argc, argv,
                   {"threads", "objects", "scale", "native", "reclaim-every", "reclaim-budget"});
  config cfg;
  cfg.threads = static_cast<unsigned>(o.num("threads", 2 * bench::default_threads()));
  cfg.objects = static_cast<std::size_t>(o.num("objects", 2000));
  cfg.waves = bench::scaled(4000, bench::scale_of(o), 10);
  return bench::dispatch(o, [&]<class Mode>() { return run<Mode>(cfg); });
}
