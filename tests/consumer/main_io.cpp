// Uses the installed ramalloc::io (find_package(ramalloc CONFIG COMPONENTS io)): a worker
// pool, a heap strand whose handler allocates from the strand's heap, a handler
// allocator, a stats report. Exits non-zero on failure.
#include <ramalloc/io.hpp>

#include <asio.hpp>

#include <atomic>
#include <cstdio>

int main() {
  namespace io = ramalloc::io;
  asio::io_context ctx;
  auto strand = io::make_heap_strand(ctx);
  std::atomic<bool> owned{false};
  std::atomic<bool> done{false};
  asio::post(strand, asio::bind_allocator(io::handler_allocator<void>(), [&] {
               void *p = ramalloc::acquire(64);
               owned = p != nullptr && ramalloc::query(p)->owner == strand.heap().id();
               ramalloc::discard(p);
               done = true;
             }));
  {
    io::worker_pool pool(ctx, 1);
    pool.join();
  }
  const std::string report = io::stats_reporter(ctx, std::chrono::hours(1)).format_report();
  const bool ok = done && owned && report.find("live_bytes=") != std::string::npos &&
                  asio::use_service<io::heap_registry>(ctx).strand_count() == 1;
  if (!ok) {
    std::fprintf(stderr, "consumer_io: FAILED (done %d, owned %d)\n", int(done.load()),
                 int(owned.load()));
    return 1;
  }
  std::printf("consumer_io: installed ramalloc::io found through find_package and works\n");
  return 0;
}
