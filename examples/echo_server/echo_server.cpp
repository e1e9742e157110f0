// The smallest complete server on ramalloc::io: a TCP echo server.
//
//   a worker_pool runs the kit's loop (bounded batches, debt paid between them, idle
//   flush); every connection belongs to one of --groups heap strands (a connection
//   group owns a heap: its sessions, buffers and operation memory come from it); every
//   asynchronous operation carries a handler_allocator; a stats_reporter logs the
//   allocator's figures through ramalloc::io::logger().
//
//   echo_server [--port P] [--threads N] [--groups G] [--stats-ms MS]
//   echo_server --self-test [--connections C] [--messages M]   (loopback clients, exits)
#include <ramalloc/io.hpp>

#include <asio.hpp>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace io = ramalloc::io;
using group = io::heap_strand<asio::io_context::executor_type>;

namespace {

/// One connection. Lives in its group's heap (allocate_shared with a handler_allocator
/// inside the group's strand) and only ever runs on that strand.
class session : public std::enable_shared_from_this<session> {
public:
  explicit session(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  void start() { read(); }

private:
  void read() {
    socket_.async_read_some(asio::buffer(data_),
                            asio::bind_allocator(io::handler_allocator<void>(),
                                                 [self = shared_from_this()](
                                                     const asio::error_code &ec, std::size_t n) {
                                                   if (!ec)
                                                     self->write(n);
                                                 }));
  }

  void write(std::size_t n) {
    asio::async_write(
        socket_, asio::buffer(data_, n),
        asio::bind_allocator(io::handler_allocator<void>(),
                             [self = shared_from_this()](const asio::error_code &ec, std::size_t) {
                               if (!ec)
                                 self->read();
                             }));
  }

  asio::ip::tcp::socket socket_; // constructed on the group's strand
  std::array<char, 4096> data_;
};

/// Accepts connections and deals them out to the groups, round robin.
class server {
public:
  server(asio::io_context &ctx, unsigned short port, std::size_t groups)
      : acceptor_(ctx, {asio::ip::make_address("127.0.0.1"), port}) {
    for (std::size_t i = 0; i < groups; ++i)
      groups_.push_back(io::make_heap_strand(ctx));
    accept();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  void close() {
    asio::post(acceptor_.get_executor(), [this] { acceptor_.close(); });
  }

private:
  void accept() {
    group &g = groups_[next_++ % groups_.size()];
    // The accepted socket is constructed on the group's strand: its completions run there.
    acceptor_.async_accept(g, [this, g](const asio::error_code &ec, asio::ip::tcp::socket s) {
      if (ec == asio::error::operation_aborted)
        return;
      if (!ec) {
        asio::dispatch(g, [s = std::move(s)]() mutable {
          // On the strand: the session comes from the group's heap.
          std::allocate_shared<session>(io::handler_allocator<session>(), std::move(s))->start();
        });
      }
      accept();
    });
  }

  asio::ip::tcp::acceptor acceptor_;
  std::vector<group> groups_;
  std::size_t next_ = 0;
};

/// Loopback clients for --self-test: each sends `messages` messages and checks every echo.
bool self_test(unsigned short port, int connections, int messages) {
  asio::io_context ctx;
  std::atomic<int> ok{0}, bad{0};
  struct client : std::enable_shared_from_this<client> {
    asio::ip::tcp::socket socket;
    int left;
    std::string out, in;
    std::atomic<int> &ok, &bad;
    client(asio::io_context &c, int m, std::atomic<int> &o, std::atomic<int> &b)
        : socket(c), left(m), ok(o), bad(b) {}
    void send() {
      if (left-- == 0) {
        ok.fetch_add(1);
        return;
      }
      out.assign(1 + static_cast<std::size_t>(left * 37 % 1000), char('a' + left % 26));
      in.resize(out.size());
      asio::async_write(
          socket, asio::buffer(out), [self = shared_from_this()](auto ec, std::size_t) {
            if (ec)
              return void(self->bad.fetch_add(1));
            asio::async_read(self->socket, asio::buffer(self->in), [self](auto e, std::size_t) {
              if (e || self->in != self->out)
                return void(self->bad.fetch_add(1));
              self->send();
            });
          });
    }
  };
  for (int i = 0; i < connections; ++i) {
    auto c = std::make_shared<client>(ctx, messages, ok, bad);
    c->socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, [c](auto ec) {
      if (ec)
        return void(c->bad.fetch_add(1));
      c->send();
    });
  }
  ctx.run_for(std::chrono::seconds(60)); // bounded: a broken server cannot hang the test
  std::printf("echo_server self-test: %d/%d clients echoed %d messages each, %d failed\n",
              ok.load(), connections, messages, bad.load());
  return ok.load() == connections && bad.load() == 0;
}

long arg(int argc, char **argv, const char *name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) {
      char *end = nullptr;
      const long v = std::strtol(argv[i + 1], &end, 10);
      if (end == argv[i + 1] || *end != '\0' || v < 0) {
        std::fprintf(stderr, "echo_server: %s needs a non-negative number, not '%s'\n", name,
                     argv[i + 1]);
        std::exit(2);
      }
      return v;
    }
  return fallback;
}

bool flag(int argc, char **argv, const char *name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0)
      return true;
  return false;
}

} // namespace

int main(int argc, char **argv) {
  const bool testing = flag(argc, argv, "--self-test");
  const auto port = static_cast<unsigned short>(arg(argc, argv, "--port", testing ? 0 : 7777));
  const auto threads = static_cast<std::size_t>(arg(argc, argv, "--threads", 2));
  const auto groups = static_cast<std::size_t>(arg(argc, argv, "--groups", 4));
  const long stats_ms = arg(argc, argv, "--stats-ms", testing ? 0 : 5000);
  if (threads == 0 || groups == 0) {
    std::fprintf(stderr, "echo_server: --threads and --groups must be at least 1\n");
    return 2;
  }

  // The kit logs to its own logger only: give it a sink (stdout here).
  io::set_logger(std::make_shared<spdlog::logger>(
      "ramalloc", std::make_shared<spdlog::sinks::stdout_sink_mt>()));
  io::route_core_errors_to_logger();

  asio::io_context ctx;
  server srv(ctx, port, groups);
  std::unique_ptr<io::stats_reporter> reporter;
  if (stats_ms > 0)
    reporter = std::make_unique<io::stats_reporter>(ctx, std::chrono::milliseconds(stats_ms));
  io::worker_pool pool(ctx, threads);

  int status = 0;
  if (testing) {
    status = self_test(srv.port(), static_cast<int>(arg(argc, argv, "--connections", 16)),
                       static_cast<int>(arg(argc, argv, "--messages", 200)))
                 ? 0
                 : 1;
    io::logger()->info("{}", io::stats_reporter(ctx, std::chrono::hours(1)).format_report());
    pool.stop();
  } else {
    std::printf("echo_server: listening on 127.0.0.1:%u with %zu workers, %zu groups\n", srv.port(),
                threads, groups);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { pool.stop(); });
    pool.join(); // returns on a signal; rethrows a handler's exception
    return 0;
  }
  pool.join();
  return status;
}
