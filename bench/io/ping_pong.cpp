// Asio loopback ping-pong: many connections, small messages, a timer per session.
//
// One binary, two server modes:
//   --mode plain  Asio as shipped: asio::strand per connection group, the default
//                 allocators, threads running io_context::run(). The allocator is
//                 whatever malloc is: glibc, or a peer preloaded with LD_PRELOAD
//                 (mimalloc, jemalloc, tcmalloc, tbb, ramalloc's libramalloc.so).
//   --mode kit    ramalloc::io: a heap strand per connection group, handler_allocator on
//                 every operation, sessions and replies from the group's heap, a
//                 worker_pool running the kit's loop (debt paid between batches).
//   --mode kit-loop  heap strands and worker_pool, but Asio's default allocators (what
//                 the loop and the strands cost without handler_allocator).
// The clients (same process, their own io_context and thread) are identical in both.
// Each message: the server's session allocates a reply buffer (freed when the write
// completes) and re-arms an idle timer (a wait operation per message, the old one
// cancelled), as servers do. Prints one JSON line: messages/s and round-trip
// percentiles (p50/p99/p99.9/max, microseconds, measured after a warm-up).
#include <ramalloc/io.hpp>

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace io = ramalloc::io;
using clock_type = std::chrono::steady_clock;

namespace {

struct config {
  bool kit = false;  // heap strands + worker_pool
  bool kit_allocator = true; // with handler_allocator (mode kit) or Asio's defaults (kit-loop)
  int connections = 256;
  int groups = 8;
  int threads = 2;
  double seconds = 3.0;
  double warmup = 0.5;
  std::size_t size = 64;
};

// --- server ------------------------------------------------------------------------------

/// Where a session takes memory from: the default allocator (plain) or the current heap
/// through handler_allocator (kit).
template <bool Kit>
struct memory {
  template <typename T>
  using allocator = std::conditional_t<Kit, io::handler_allocator<T>, std::allocator<T>>;
  template <typename Handler>
  static auto bind(Handler &&h) {
    if constexpr (Kit)
      return asio::bind_allocator(io::handler_allocator<void>(), std::forward<Handler>(h));
    else
      return std::forward<Handler>(h);
  }
};

template <bool Kit, typename Socket>
class session : public std::enable_shared_from_this<session<Kit, Socket>> {
public:
  session(Socket s, std::size_t size)
      : socket_(std::move(s)), timer_(socket_.get_executor()), size_(size) {}
  void start() { read(); }

private:
  using mem = memory<Kit>;
  using reply = std::vector<char, typename mem::template allocator<char>>;

  void read() {
    asio::async_read(
        socket_, asio::buffer(in_, size_),
        mem::bind([self = this->shared_from_this()](const asio::error_code &ec, std::size_t) {
          if (!ec)
            self->answer();
        }));
  }

  void answer() {
    // The idle timeout, pushed back on every message.
    timer_.expires_after(std::chrono::seconds(30));
    timer_.async_wait(mem::bind([](const asio::error_code &) {}));
    auto out =
        std::allocate_shared<reply>(typename mem::template allocator<reply>(), in_, in_ + size_);
    asio::async_write(
        socket_, asio::buffer(*out),
        mem::bind([self = this->shared_from_this(), out](const asio::error_code &ec, std::size_t) {
          if (!ec)
            self->read();
        }));
  }

  Socket socket_;
  asio::steady_timer timer_;
  std::size_t size_;
  char in_[1024];
};

template <bool Kit, typename Group>
class server {
public:
  server(asio::io_context &ctx, std::vector<Group> groups, std::size_t size)
      : acceptor_(ctx, {asio::ip::make_address("127.0.0.1"), 0}), groups_(std::move(groups)),
        size_(size) {
    accept();
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  void close() {
    asio::post(acceptor_.get_executor(), [this] { acceptor_.close(); });
  }

private:
  void accept() {
    Group g = groups_[next_++ % groups_.size()];
    acceptor_.async_accept(g, [this, g](const asio::error_code &ec, auto socket) {
      if (ec == asio::error::operation_aborted)
        return;
      if (!ec) {
        asio::dispatch(g, [s = std::move(socket), size = size_]() mutable {
          using socket_t = decltype(s);
          using mem = memory<Kit>;
          std::allocate_shared<session<Kit, socket_t>>(
              typename mem::template allocator<session<Kit, socket_t>>(), std::move(s), size)
              ->start();
        });
      }
      accept();
    });
  }
  asio::ip::tcp::acceptor acceptor_;
  std::vector<Group> groups_;
  std::size_t size_;
  std::size_t next_ = 0;
};

// --- clients -----------------------------------------------------------------------------

struct results {
  std::vector<std::uint32_t> rtt_ns; // reserved up front: no allocation while measuring
  std::uint64_t messages = 0;
};

struct client : std::enable_shared_from_this<client> {
  asio::ip::tcp::socket socket;
  std::vector<char> out, in;
  clock_type::time_point sent;
  results &res;
  const std::atomic<int> &phase; // 0 warm-up, 1 measuring, 2 done
  client(asio::io_context &c, std::size_t size, results &r, const std::atomic<int> &p)
      : socket(c), out(size, 'p'), in(size), res(r), phase(p) {}

  void ping() {
    if (phase.load(std::memory_order_relaxed) == 2)
      return;
    sent = clock_type::now();
    asio::async_write(socket, asio::buffer(out), [self = shared_from_this()](auto ec, std::size_t) {
      if (ec)
        return;
      asio::async_read(self->socket, asio::buffer(self->in), [self](auto e, std::size_t) {
        if (e)
          return;
        if (self->phase.load(std::memory_order_relaxed) == 1) {
          const auto ns =
              std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - self->sent)
                  .count();
          if (self->res.rtt_ns.size() < self->res.rtt_ns.capacity())
            self->res.rtt_ns.push_back(
                static_cast<std::uint32_t>(std::min<long long>(ns, UINT32_MAX)));
          ++self->res.messages;
        }
        self->ping();
      });
    });
  }
};

double percentile(const std::vector<std::uint32_t> &sorted, double q) {
  if (sorted.empty())
    return 0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1));
  return sorted[i] / 1000.0;
}

long rss_kib() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    std::fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

template <bool Kit, typename Group>
int run_bench(const config &cfg, asio::io_context &server_ctx, std::vector<Group> groups,
              const std::function<void()> &start_server, const std::function<void()> &stop_server,
              const char *mode) {
  server<Kit, Group> srv(server_ctx, std::move(groups), cfg.size);
  start_server();

  asio::io_context client_ctx;
  results res;
  res.rtt_ns.reserve(static_cast<std::size_t>(cfg.seconds * 2e6));
  std::atomic<int> phase{0};
  const asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), srv.port());
  std::vector<std::shared_ptr<client>> clients;
  for (int i = 0; i < cfg.connections; ++i) {
    auto c = std::make_shared<client>(client_ctx, cfg.size, res, phase);
    c->socket.connect(ep);
    c->socket.set_option(asio::ip::tcp::no_delay(true));
    clients.push_back(c);
  }
  for (auto &c : clients)
    c->ping();
  std::thread client_thread([&] { client_ctx.run(); });
  std::this_thread::sleep_for(std::chrono::duration<double>(cfg.warmup));
  phase = 1;
  const auto t0 = clock_type::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(cfg.seconds));
  phase = 2;
  const double elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  // In flight round trips finish; then everything closes.
  asio::post(client_ctx, [&] {
    for (auto &c : clients) {
      asio::error_code ignored;
      c->socket.close(ignored);
    }
  });
  client_thread.join();
  const long rss = rss_kib();
  srv.close();
  stop_server();
  // The remote path: ramalloc blocks freed by a thread that did not own them (in kit
  // mode, operation memory Asio frees on the completing worker, outside the strand).
  const ram_stats st = ramalloc::get_stats();

  std::vector<std::uint32_t> sorted = std::move(res.rtt_ns);
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"mode\":\"%s\",\"connections\":%d,\"groups\":%d,\"threads\":%d,\"size\":%zu,"
              "\"seconds\":%.3f,\"messages\":%llu,\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
              "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"rss_kib\":%ld,\"ramalloc_remote_"
              "frees\":%llu}\n",
              mode, cfg.connections, cfg.groups, cfg.threads, cfg.size, elapsed,
              static_cast<unsigned long long>(res.messages), res.messages / elapsed,
              percentile(sorted, 0.5), percentile(sorted, 0.99), percentile(sorted, 0.999),
              sorted.empty() ? 0.0 : sorted.back() / 1000.0, rss,
              static_cast<unsigned long long>(st.remote_frees));
  return res.messages > 0 ? 0 : 1;
}

[[noreturn]] void usage(const char *why) {
  std::fprintf(
      stderr,
      "bench_io_ping_pong: %s\nusage: bench_io_ping_pong [--mode plain|kit] "
      "[--connections N] [--groups N] [--threads N] [--seconds S] [--warmup S] [--size B]\n",
      why);
  std::exit(2);
}

} // namespace

int main(int argc, char **argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc)
      usage(("missing value after " + a).c_str());
    const char *v = argv[++i];
    if (a == "--mode") {
      if (std::strcmp(v, "kit") == 0) {
        cfg.kit = true;
      } else if (std::strcmp(v, "kit-loop") == 0) {
        cfg.kit = true;
        cfg.kit_allocator = false;
      } else if (std::strcmp(v, "plain") != 0) {
        usage("--mode is plain, kit or kit-loop");
      }
    } else if (a == "--connections") {
      cfg.connections = std::atoi(v);
    } else if (a == "--groups") {
      cfg.groups = std::atoi(v);
    } else if (a == "--threads") {
      cfg.threads = std::atoi(v);
    } else if (a == "--seconds") {
      cfg.seconds = std::atof(v);
    } else if (a == "--warmup") {
      cfg.warmup = std::atof(v);
    } else if (a == "--size") {
      cfg.size = static_cast<std::size_t>(std::atol(v));
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  if (cfg.connections < 1 || cfg.groups < 1 || cfg.threads < 1 || cfg.seconds <= 0 ||
      cfg.size < 1 || cfg.size > 1024)
    usage("counts must be positive, --size at most 1024");

  asio::io_context server_ctx;
  if (cfg.kit) {
    std::vector<io::heap_strand<asio::io_context::executor_type>> groups;
    for (int g = 0; g < cfg.groups; ++g)
      groups.push_back(io::make_heap_strand(server_ctx));
    std::unique_ptr<io::worker_pool> pool;
    const auto start = [&] { pool = std::make_unique<io::worker_pool>(server_ctx, cfg.threads); };
    const auto stop = [&] {
      pool->stop();
      pool->join();
    };
    if (!cfg.kit_allocator) // heap strands and the kit's loop, Asio's default allocators
      return run_bench<false>(cfg, server_ctx, std::move(groups), start, stop, "kit-loop");
    return run_bench<true>(cfg, server_ctx, std::move(groups), start, stop, "kit");
  }
  std::vector<asio::strand<asio::io_context::executor_type>> groups;
  for (int g = 0; g < cfg.groups; ++g)
    groups.push_back(asio::make_strand(server_ctx));
  std::vector<std::thread> threads;
  auto guard = asio::make_work_guard(server_ctx);
  return run_bench<false>(
      cfg, server_ctx, std::move(groups),
      [&] {
        for (int t = 0; t < cfg.threads; ++t)
          threads.emplace_back([&] { server_ctx.run(); });
      },
      [&] {
        guard.reset();
        server_ctx.stop();
        for (auto &t : threads)
          t.join();
      },
      "plain");
}
