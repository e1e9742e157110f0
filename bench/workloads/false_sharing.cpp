// (c) False-sharing probes, the two classic shapes:
//
//   --shape thrash   (active false sharing) every thread repeatedly allocates a small
//                    object, writes it many times and frees it. An allocator that hands
//                    neighbouring blocks of one cache line to different threads makes
//                    those writes bounce the line between cores.
//   --shape scratch  (passive false sharing) the main thread allocates one small object
//                    per thread, back to back, and hands them out; each thread frees the
//                    one it received, then runs the thrash loop. An allocator that reuses
//                    a freed block for the thread that freed it gives threads neighbouring
//                    blocks of the main thread's line.
//
//   bench_false_sharing --shape thrash|scratch [--threads T] [--size B] [--scale X]
//                       [--native]
//
// The allocator calls are few; the time is the writes, fast when every thread's object
// sits on a line of its own.
#include "../common/bench.hpp"

namespace {

struct config {
  bool scratch;
  unsigned threads;
  std::size_t size;
  std::uint64_t iterations;
  std::uint64_t writes = 100; // passes over the object per iteration
};

template <class Mode>
void write_loop(Mode &mode, const config &cfg) {
  for (std::uint64_t i = 0; i < cfg.iterations; ++i) {
    auto *p = static_cast<volatile unsigned char *>(mode.alloc(cfg.size));
    for (std::uint64_t w = 0; w < cfg.writes; ++w)
      for (std::size_t j = 0; j < cfg.size; ++j)
        p[j] = static_cast<unsigned char>(p[j] + 1);
    mode.release(const_cast<unsigned char *>(p));
    mode.step();
  }
}

template <class Mode>
int run(const config &cfg) {
  std::vector<void *> handed(cfg.threads, nullptr);
  Mode main_mode;
  if (cfg.scratch)
    for (auto &p : handed) {
      p = main_mode.alloc(cfg.size);
      bench::touch(p, cfg.size);
    }
  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < cfg.threads; ++t) {
    threads.emplace_back([&, t] {
      Mode mode;
      ready.fetch_add(1);
      bench::backoff b;
      while (!go.load(std::memory_order_acquire))
        b.pause();
      if (handed[t])
        mode.release(handed[t]);
      write_loop(mode, cfg);
      mode.finish();
    });
  }
  while (ready.load() != cfg.threads)
    std::this_thread::yield();
  const double t0 = bench::now_s();
  go.store(true, std::memory_order_release);
  for (auto &t : threads)
    t.join();
  const double wall = bench::now_s() - t0;

  bench::result res(cfg.scratch ? "cache-scratch" : "cache-thrash", Mode::name);
  res.num("threads", cfg.threads).num("size", double(cfg.size));
  res.num("iterations", double(cfg.iterations)).num("wall_s", wall);
  res.print();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(
      argc, argv,
      {"shape", "threads", "size", "scale", "native", "reclaim-every", "reclaim-budget"});
  config cfg;
  const std::string shape = o.str("shape", "thrash");
  if (shape != "thrash" && shape != "scratch") {
    std::fprintf(stderr, "--shape must be thrash or scratch\n");
    return 2;
  }
  cfg.scratch = shape == "scratch";
  cfg.threads = static_cast<unsigned>(o.num("threads", bench::default_threads()));
  cfg.size = static_cast<std::size_t>(o.num("size", 8));
  cfg.iterations = bench::scaled(2e5, bench::scale_of(o), 100);
  return bench::dispatch(o, [&]<class Mode>() { return run<Mode>(cfg); });
}
