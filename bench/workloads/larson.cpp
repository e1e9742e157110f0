// (a) Larson-style server simulation.
//
// A shared pool of object slots stands for a server's live sessions. Each thread first
// fills its share of the pool, then, over and over, picks a random slot anywhere in the
// pool, allocates a new object of random size (8..1000 bytes), initialises its first
// cache line and swaps it into the slot, then frees the object it displaced. Slots are
// shared, so with T threads about (T-1)/T of the frees release a block that another
// thread allocated: the cross-thread churn of a server whose requests are served by
// whichever worker is free.
//
//   bench_larson [--threads T] [--slots S] [--scale X] [--native] [--latency] [--hist F]
//
// --latency times every allocation and every free with the TSC (bench/common/bench.hpp)
// and reports percentiles; without it nothing is timed per operation.
#include "../common/bench.hpp"

#include <memory>

namespace {

struct config {
  unsigned threads;
  std::size_t slots_per_thread;
  std::uint64_t ops_per_thread;
  std::size_t min_size = 8, max_size = 1000;
  std::string hist_path;
};

struct thread_hist {
  bench::histogram alloc, free, reclaim;
};

template <class Mode, bool Latency>
int run(const config &cfg) {
  const std::size_t pool_size = cfg.slots_per_thread * cfg.threads;
  auto pool = std::make_unique<std::atomic<void *>[]>(pool_size);
  std::vector<std::unique_ptr<thread_hist>> hists;
  for (unsigned t = 0; t < cfg.threads; ++t)
    hists.push_back(std::make_unique<thread_hist>());
  if constexpr (Latency)
    bench::tsc_per_ns(); // calibrate before the clock starts

  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < cfg.threads; ++t) {
    workers.emplace_back([&, t] {
      Mode mode;
      bench::rng r(t + 1);
      thread_hist &h = *hists[t];
      for (std::size_t i = t * cfg.slots_per_thread; i < (t + 1) * cfg.slots_per_thread; ++i) {
        std::size_t n = r.range(cfg.min_size, cfg.max_size);
        void *p = mode.alloc(n);
        bench::touch(p, n);
        pool[i].store(p, std::memory_order_relaxed);
      }
      ready.fetch_add(1);
      bench::backoff b;
      while (!go.load(std::memory_order_acquire))
        b.pause();
      for (std::uint64_t k = 0; k < cfg.ops_per_thread; ++k) {
        const std::size_t slot = r.below(pool_size);
        const std::size_t n = r.range(cfg.min_size, cfg.max_size);
        void *p;
        if constexpr (Latency) {
          std::uint64_t t0 = bench::tsc_begin();
          p = mode.alloc(n);
          h.alloc.record(bench::tsc_end() - t0);
        } else {
          p = mode.alloc(n);
        }
        bench::touch(p, n);
        void *old = pool[slot].exchange(p, std::memory_order_acq_rel);
        if constexpr (Latency) {
          std::uint64_t t0 = bench::tsc_begin();
          mode.release(old);
          h.free.record(bench::tsc_end() - t0);
          mode.template step<true>(&h.reclaim);
        } else {
          mode.release(old);
          mode.step();
        }
      }
      mode.finish();
    });
  }
  while (ready.load() != cfg.threads)
    std::this_thread::yield();
  const double t0 = bench::now_s();
  go.store(true, std::memory_order_release);
  for (auto &w : workers)
    w.join();
  const double wall = bench::now_s() - t0;

  Mode mode;
  const double t1 = bench::now_s();
  for (std::size_t i = 0; i < pool_size; ++i)
    mode.release(pool[i].load());
  mode.finish();
  const double teardown = bench::now_s() - t1;

  const std::uint64_t ops = cfg.ops_per_thread * cfg.threads;
  bench::result res("larson", Mode::name);
  res.num("threads", cfg.threads).num("pool", double(pool_size)).num("ops", double(ops));
  res.num("wall_s", wall).num("mops_per_s", double(ops) / wall / 1e6);
  res.num("teardown_s", teardown);
  if constexpr (Latency) {
    bench::histogram alloc, free, rec;
    for (auto &h : hists) {
      alloc.merge(h->alloc);
      free.merge(h->free);
      rec.merge(h->reclaim);
    }
    bench::report_latency(res, alloc, free, rec, Mode::native, cfg.hist_path);
  }
  res.print();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(argc, argv,
                   {"threads", "slots", "scale", "native", "latency", "hist", "reclaim-every",
                    "reclaim-budget"});
  const double scale = bench::scale_of(o);
  config cfg;
  cfg.threads = static_cast<unsigned>(o.num("threads", bench::default_threads()));
  cfg.slots_per_thread = static_cast<std::size_t>(o.num("slots", 5000));
  cfg.ops_per_thread = bench::scaled(4e6, scale, 1000);
  cfg.hist_path = o.str("hist", "");
  const bool latency = o.has("latency");
  return bench::dispatch(
      o, [&]<class Mode>() { return latency ? run<Mode, true>(cfg) : run<Mode, false>(cfg); });
}
