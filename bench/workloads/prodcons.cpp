// (b) Producer/consumer: every free is remote.
//
// P producer threads each allocate messages (operator new, 16..512 bytes), write a
// header into them and pass them through a single-producer/single-consumer ring to their
// own consumer thread, which reads the header and deletes the message. No thread ever
// frees a block it allocated: the pattern of a network thread handing requests to
// workers, or of Asio freeing operation memory on the reactor thread.
//
//   bench_prodcons [--pairs P] [--scale X] [--native] [--latency] [--hist F]
//
// In native mode the producers own the blocks, so the consumers' frees become the
// producers' debt, paid by their reclaim steps (and, if those fall behind, by the
// acquire slow path's back-pressure). --latency times each allocation (producer side)
// and each free (consumer side).
#include "../common/bench.hpp"

#include <memory>

namespace {

/// Bounded single-producer/single-consumer ring of pointers. Each side publishes its
/// index only every `batch` operations (or before it waits), and caches the other side's
/// index, so the shared lines move between cores in batches rather than per message.
class spsc_ring {
public:
  static constexpr std::size_t capacity = 1024;
  static constexpr std::size_t batch = 16;

  bool push(void *p) noexcept {
    if (tail_ - head_seen_ == capacity) {
      head_seen_ = shared_head_.load(std::memory_order_acquire);
      if (tail_ - head_seen_ == capacity) {
        publish_tail();
        return false;
      }
    }
    slots_[tail_ % capacity] = p;
    if (++tail_ - tail_published_ >= batch)
      publish_tail();
    return true;
  }
  /// Makes every pushed pointer visible (the producer calls it before it stops).
  void publish_tail() noexcept {
    tail_published_ = tail_;
    shared_tail_.store(tail_, std::memory_order_release);
  }
  void *pop() noexcept {
    if (head_ == tail_seen_) {
      publish_head();
      tail_seen_ = shared_tail_.load(std::memory_order_acquire);
      if (head_ == tail_seen_)
        return nullptr;
    }
    void *p = slots_[head_ % capacity];
    if (++head_ - head_published_ >= batch)
      publish_head();
    return p;
  }

private:
  void publish_head() noexcept {
    head_published_ = head_;
    shared_head_.store(head_, std::memory_order_release);
  }
  // the producer's private line
  alignas(64) std::size_t tail_ = 0, tail_published_ = 0, head_seen_ = 0;
  // the consumer's private line
  alignas(64) std::size_t head_ = 0, head_published_ = 0, tail_seen_ = 0;
  // the shared indices, one line each
  alignas(64) std::atomic<std::size_t> shared_tail_{0};
  alignas(64) std::atomic<std::size_t> shared_head_{0};
  alignas(64) void *slots_[capacity] = {};
};

struct message_header {
  std::uint64_t seq;
  std::uint64_t size;
};

struct config {
  unsigned pairs;
  std::uint64_t messages_per_pair;
  std::size_t min_size = 16, max_size = 512;
  std::string hist_path;
};

struct thread_hist {
  bench::histogram op, reclaim;
};

template <class Mode, bool Latency>
int run(const config &cfg) {
  std::vector<std::unique_ptr<spsc_ring>> rings;
  std::vector<std::unique_ptr<thread_hist>> hists;
  for (unsigned i = 0; i < cfg.pairs; ++i)
    rings.push_back(std::make_unique<spsc_ring>());
  for (unsigned i = 0; i < 2 * cfg.pairs; ++i)
    hists.push_back(std::make_unique<thread_hist>());
  if constexpr (Latency)
    bench::tsc_per_ns();

  std::atomic<unsigned> ready{0};
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> bad{0};
  auto wait_go = [&] {
    ready.fetch_add(1);
    bench::backoff b;
    while (!go.load(std::memory_order_acquire))
      b.pause();
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < cfg.pairs; ++i) {
    threads.emplace_back([&, i] { // producer
      Mode mode;
      bench::rng r(i + 1);
      spsc_ring &ring = *rings[i];
      thread_hist &h = *hists[2 * i];
      wait_go();
      bench::backoff b;
      for (std::uint64_t k = 0; k < cfg.messages_per_pair; ++k) {
        const std::size_t n = r.range(cfg.min_size, cfg.max_size);
        void *p;
        if constexpr (Latency) {
          const std::uint64_t t0 = bench::tsc_begin();
          p = mode.alloc_new(n);
          h.op.record(bench::tsc_end() - t0);
        } else {
          p = mode.alloc_new(n);
        }
        bench::touch(p, n);
        auto *m = static_cast<message_header *>(p);
        m->seq = k;
        m->size = n;
        mode.template step<Latency>(&h.reclaim);
        b.reset();
        while (!ring.push(p)) {
          b.pause();
          // A producer waiting for room is idle: a server loop would pay debt here.
          mode.template step<Latency>(&h.reclaim);
        }
      }
      ring.publish_tail();
      mode.finish();
    });
    threads.emplace_back([&, i] { // consumer
      Mode mode;
      spsc_ring &ring = *rings[i];
      thread_hist &h = *hists[2 * i + 1];
      wait_go();
      bench::backoff b;
      for (std::uint64_t k = 0; k < cfg.messages_per_pair; ++k) {
        void *p;
        b.reset();
        while ((p = ring.pop()) == nullptr)
          b.pause();
        auto *m = static_cast<message_header *>(p);
        if (m->seq != k || m->size < cfg.min_size || m->size > cfg.max_size)
          bad.fetch_add(1);
        if constexpr (Latency) {
          const std::uint64_t t0 = bench::tsc_begin();
          mode.release_new(p);
          h.op.record(bench::tsc_end() - t0);
        } else {
          mode.release_new(p);
        }
        mode.template step<Latency>(&h.reclaim);
      }
      mode.finish();
    });
  }
  while (ready.load() != threads.size())
    std::this_thread::yield();
  const double t0 = bench::now_s();
  go.store(true, std::memory_order_release);
  for (auto &t : threads)
    t.join();
  const double wall = bench::now_s() - t0;
  if (bad.load() != 0) {
    std::fprintf(stderr, "prodcons: %llu corrupted messages\n", (unsigned long long)bad.load());
    return 1;
  }

  const std::uint64_t msgs = cfg.messages_per_pair * cfg.pairs;
  bench::result res("prodcons", Mode::name);
  res.num("pairs", cfg.pairs).num("messages", double(msgs));
  res.num("wall_s", wall).num("mmsg_per_s", double(msgs) / wall / 1e6);
  if constexpr (Latency) {
    bench::histogram alloc, free, rec;
    for (unsigned i = 0; i < cfg.pairs; ++i) {
      alloc.merge(hists[2 * i]->op);
      free.merge(hists[2 * i + 1]->op);
      rec.merge(hists[2 * i]->reclaim);
      rec.merge(hists[2 * i + 1]->reclaim);
    }
    bench::report_latency(res, alloc, free, rec, Mode::native, cfg.hist_path);
  }
  res.print();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  bench::options o(
      argc, argv,
      {"pairs", "scale", "native", "latency", "hist", "reclaim-every", "reclaim-budget"});
  const double scale = bench::scale_of(o);
  config cfg;
  cfg.pairs = static_cast<unsigned>(o.num("pairs", std::max(1u, bench::default_threads() / 2)));
  cfg.messages_per_pair = bench::scaled(1e7, scale, 1000);
  cfg.hist_path = o.str("hist", "");
  const bool latency = o.has("latency");
  return bench::dispatch(
      o, [&]<class Mode>() { return latency ? run<Mode, true>(cfg) : run<Mode, false>(cfg); });
}
