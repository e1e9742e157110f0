// (g) Burst free: drop 1 GiB at once, then keep serving small requests.
//
// A server keeps a small working set (a ring of 1024 objects, 16..256 bytes) while it
// builds a large cache: 1 GiB in objects of 32..4096 bytes, every page written. Then it
// drops the whole cache in one go (freeing in allocation order) and goes on serving:
// each serve operation frees the oldest ring object and allocates a new one.
//
// Every free of the burst and every serve operation is timed with the TSC (this
// workload is about latency): an allocator that pays for the burst later (coalescing,
// trimming, returning memory in a single call) shows it in the tail of one of the two.
// RSS is read after the fill, after the burst and after the serving, to show whether
// the memory went back to the OS.
//
//   bench_burst [--burst-mb M] [--scale X] [--native] [--hist F] [--burst-hist F]
#include "../common/bench.hpp"

#include <memory>
#include <sys/mman.h>

namespace {

struct config {
  std::uint64_t burst_bytes;
  std::uint64_t serve_ops;
  std::string hist_path, burst_hist_path;
};

constexpr std::size_t ring_size = 1024;

template <class Mode>
int run(const config &cfg) {
  const std::size_t max_objects = cfg.burst_bytes / 32 + 1;
  void *m = mmap(nullptr, max_objects * sizeof(void *), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  auto **objs = static_cast<void **>(m);
  auto serve_hist = std::make_unique<bench::histogram>();
  auto burst_hist = std::make_unique<bench::histogram>();
  auto reclaim_hist = std::make_unique<bench::histogram>();
  bench::tsc_per_ns();

  Mode mode;
  bench::rng r(7);
  void *ring[ring_size];
  std::size_t ring_pos = 0;
  for (auto &p : ring) {
    const std::size_t n = r.range(16, 256);
    p = mode.alloc(n);
    bench::touch(p, n);
  }
  auto serve_one = [&](bench::histogram &h) {
    const std::size_t n = r.range(16, 256);
    std::uint64_t t0 = bench::tsc_begin();
    mode.release(ring[ring_pos]);
    std::uint64_t t1 = bench::tsc_end();
    h.record(t1 - t0);
    t0 = bench::tsc_begin();
    void *p = mode.alloc(n);
    t1 = bench::tsc_end();
    h.record(t1 - t0);
    bench::touch(p, n);
    ring[ring_pos] = p;
    ring_pos = (ring_pos + 1) % ring_size;
    mode.template step<true>(reclaim_hist.get());
  };

  // Fill: the cache grows to burst_bytes; the server keeps serving (untimed) meanwhile.
  const double t0 = bench::now_s();
  bench::histogram untimed;
  std::size_t count = 0;
  std::uint64_t bytes = 0;
  while (bytes < cfg.burst_bytes) {
    const std::size_t n = r.range(32, 4096);
    void *p = mode.alloc(n);
    bench::touch(p, n);
    objs[count++] = p;
    bytes += n;
    mode.step();
    if (count % 16 == 0)
      serve_one(untimed);
  }
  const double t_fill = bench::now_s() - t0;
  const std::uint64_t rss_filled = bench::rss_kb();

  // Burst: free it all, timing each free.
  const double t1 = bench::now_s();
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t c0 = bench::tsc_begin();
    mode.release(objs[i]);
    burst_hist->record(bench::tsc_end() - c0);
    mode.template step<true>(reclaim_hist.get());
  }
  const double t_burst = bench::now_s() - t1;
  const std::uint64_t rss_burst = bench::rss_kb();

  // Serve: small requests after the burst, every one timed.
  const double t2 = bench::now_s();
  for (std::uint64_t k = 0; k < cfg.serve_ops; ++k)
    serve_one(*serve_hist);
  const double t_serve = bench::now_s() - t2;
  const std::uint64_t rss_served = bench::rss_kb();
  for (auto p : ring)
    mode.release(p);
  mode.finish();

  bench::result res("burst", Mode::name);
  res.num("burst_mb", double(cfg.burst_bytes >> 20)).num("objects", double(count));
  res.num("serve_ops", double(cfg.serve_ops));
  res.num("wall_s", t_fill + t_burst + t_serve);
  res.num("fill_s", t_fill).num("burst_s", t_burst).num("serve_s", t_serve);
  res.num("rss_filled_kb", double(rss_filled)).num("rss_after_burst_kb", double(rss_burst));
  res.num("rss_after_serve_kb", double(rss_served));
  res.num("timer_overhead_ns", bench::timer_overhead_ns());
  serve_hist->report(res, "lat_");
  burst_hist->report(res, "burstfree_");
  if (Mode::native)
    reclaim_hist->report(res, "reclaim_");
  if (!cfg.hist_path.empty())
    serve_hist->dump(cfg.hist_path.c_str());
  if (!cfg.burst_hist_path.empty())
    burst_hist->dump(cfg.burst_hist_path.c_str());
  res.print();
  munmap(m, max_objects * sizeof(void *));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(
      argc, argv,
      {"burst-mb", "scale", "native", "hist", "burst-hist", "reclaim-every", "reclaim-budget"});
  config cfg;
  cfg.burst_bytes = static_cast<std::uint64_t>(o.num("burst-mb", 1024)) << 20;
  cfg.serve_ops = bench::scaled(1e7, bench::scale_of(o), 1000);
  cfg.hist_path = o.str("hist", "");
  cfg.burst_hist_path = o.str("burst-hist", "");
  return bench::dispatch(o, [&]<class Mode>() { return run<Mode>(cfg); });
}
