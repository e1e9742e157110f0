// (d) Long fragmentation churn, with RSS sampled over time.
//
// One thread runs phases; each phase draws object sizes from its own log-uniform range
// (tiny, small, page-sized, medium, large...), so the live set is a mix of generations
// of different shapes:
//   grow    allocate (3 in 4 operations) or free a random live object (1 in 4) until
//           the live data reaches the high mark;
//   shrink  free random live objects until live data is down to 1/8 of the high mark:
//           the survivors are scattered over every page the phase touched;
//   steady  hold the low mark for as many operations as the shrink took: allocate
//           below it, free a random live object above it.
// A well-behaved allocator's RSS follows the live data down in each shrink/steady part;
// one that cannot reuse or return fragmented memory stays near the high mark.
//
// A sampler thread reads RSS every --sample-ms milliseconds into a preallocated buffer;
// --csv FILE writes the samples (t_s, ops, live_kb, rss_kb) at the end.
//
//   bench_frag [--scale X] [--phases N] [--csv FILE] [--sample-ms M] [--native]
#include "../common/bench.hpp"

#include <sys/mman.h>

namespace {

struct size_range {
  std::size_t lo, hi;
};
// Phase k uses ranges[k % 8].
constexpr size_range ranges[] = {{16, 128}, {64, 1024},     {256, 4096}, {1024, 32768},
                                 {32, 256}, {4096, 262144}, {16, 64},    {128, 2048}};

struct config {
  std::uint64_t high_bytes;
  unsigned phases;
  unsigned sample_ms;
  std::string csv;
};

struct sample {
  double t;
  std::uint64_t ops, live_kb, rss_kb;
};

/// Log-uniform size in [lo, hi]: as many small objects as large ones per octave.
std::size_t log_uniform(bench::rng &r, size_range s) {
  const double a = std::log2(double(s.lo)), b = std::log2(double(s.hi));
  const double x = a + (b - a) * (double(r.next() >> 11) * 0x1.0p-53);
  return std::clamp<std::size_t>(static_cast<std::size_t>(std::exp2(x)), s.lo, s.hi);
}

template <class T>
T *map_array(std::size_t n) {
  void *p =
      mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  return static_cast<T *>(p);
}

template <class Mode>
int run(const config &cfg) {
  // The live set: pointers only (each object keeps its size in its first word), in a
  // mapping of our own so the bookkeeping never goes through the allocator under test.
  const std::size_t max_objects = cfg.high_bytes / 16 + 1024;
  void **objs = map_array<void *>(max_objects);
  std::size_t count = 0;
  std::uint64_t live = 0;

  const std::size_t max_samples = 1u << 20;
  sample *samples = map_array<sample>(max_samples);
  std::atomic<std::size_t> nsamples{0};
  std::atomic<std::uint64_t> ops_now{0}, live_now{0};
  std::atomic<bool> done{false};

  Mode mode;
  bench::rng r(42);
  const double t0 = bench::now_s();
  std::thread sampler([&] {
    while (!done.load(std::memory_order_relaxed)) {
      std::size_t i = nsamples.load(std::memory_order_relaxed);
      if (i < max_samples) {
        samples[i] = {bench::now_s() - t0, ops_now.load(std::memory_order_relaxed),
                      live_now.load(std::memory_order_relaxed) / 1024, bench::statm_rss_kb()};
        nsamples.store(i + 1, std::memory_order_relaxed);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(cfg.sample_ms));
    }
  });

  std::uint64_t ops = 0;
  auto publish = [&] {
    if ((ops & 1023) == 0) {
      ops_now.store(ops, std::memory_order_relaxed);
      live_now.store(live, std::memory_order_relaxed);
    }
  };
  auto add = [&](size_range s) {
    const std::size_t n = log_uniform(r, s);
    void *p = mode.alloc(n);
    bench::touch(p, n);
    *static_cast<std::uint64_t *>(p) = n;
    objs[count++] = p;
    live += n;
    ++ops;
    mode.step();
    publish();
  };
  auto remove_random = [&] {
    const std::size_t i = r.below(count);
    void *p = objs[i];
    live -= *static_cast<std::uint64_t *>(p);
    mode.release(p);
    objs[i] = objs[--count];
    ++ops;
    mode.step();
    publish();
  };

  for (unsigned phase = 0; phase < cfg.phases; ++phase) {
    const size_range s = ranges[phase % 8];
    while (live < cfg.high_bytes && count < max_objects) {
      if (count > 0 && r.below(4) == 0)
        remove_random();
      else
        add(s);
    }
    std::uint64_t shrink_ops = 0;
    while (live > cfg.high_bytes / 8 && count > 0) {
      remove_random();
      ++shrink_ops;
    }
    for (std::uint64_t k = 0; k < shrink_ops; ++k) {
      if (live > cfg.high_bytes / 8 && count > 0)
        remove_random();
      else
        add(s);
    }
  }
  const double wall = bench::now_s() - t0;
  const std::uint64_t rss_end_of_churn = bench::rss_kb();
  while (count > 0)
    remove_random();
  mode.finish();
  done.store(true);
  sampler.join();

  // Time-weighted means over the samples (each sample stands for the interval to the next).
  const std::size_t n = nsamples.load();
  double rss_area = 0, live_area = 0, span = 0;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const double dt = samples[i + 1].t - samples[i].t;
    rss_area += double(samples[i].rss_kb) * dt;
    live_area += double(samples[i].live_kb) * dt;
    span += dt;
  }
  if (!cfg.csv.empty()) {
    if (std::FILE *f = std::fopen(cfg.csv.c_str(), "w")) {
      std::fprintf(f, "t_s,ops,live_kb,rss_kb\n");
      for (std::size_t i = 0; i < n; ++i)
        std::fprintf(f, "%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", samples[i].t, samples[i].ops,
                     samples[i].live_kb, samples[i].rss_kb);
      std::fclose(f);
    }
  }

  bench::result res("frag", Mode::name);
  res.num("high_kb", double(cfg.high_bytes / 1024)).num("phases", cfg.phases);
  res.num("ops", double(ops)).num("wall_s", wall).num("samples", double(n));
  res.num("bookkeeping_kb", double(max_objects * sizeof(void *) / 1024));
  if (span > 0) {
    res.num("mean_rss_kb", rss_area / span).num("mean_live_kb", live_area / span);
    res.num("rss_over_live", live_area > 0 ? rss_area / live_area : 0);
  }
  res.num("rss_end_of_churn_kb", double(rss_end_of_churn));
  res.print();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(
      argc, argv,
      {"scale", "phases", "csv", "sample-ms", "native", "reclaim-every", "reclaim-budget"});
  const double scale = bench::scale_of(o);
  config cfg;
  cfg.high_bytes = bench::scaled(256.0 * 1024 * 1024, scale, 1 << 20);
  cfg.phases = static_cast<unsigned>(o.num("phases", 16));
  cfg.sample_ms = static_cast<unsigned>(o.num("sample-ms", 10));
  cfg.csv = o.str("csv", "");
  return bench::dispatch(o, [&]<class Mode>() { return run<Mode>(cfg); });
}
