// ramalloc demo: the five operations (acquire, discard, reclaim, flush, query) across two
// threads, using only the public API.
//
// Thread A (the main thread) acquires blocks of mixed sizes and hands them through a
// queue to thread B, which discards them. Each of those frees is *remote* (B does not
// own the blocks), so the work of taking the memory back lands on A's heap as debt. A
// then pays that debt in small budgeted reclaim steps, printing what is still pending
// after each one, and finally flushes. The process-wide statistics are printed at the
// start, once B is done, and after the flush.
//
// Exits non-zero if anything the allocator promises does not hold.
#include <ramalloc/ramalloc.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr std::size_t block_count = 100'000; // blocks thread A acquires
constexpr std::size_t batch_size = 256;      // blocks per hand-off to thread B
constexpr std::size_t reclaim_budget = 8;    // debt units paid per reclaim step
constexpr std::size_t max_reclaim_steps = 100'000;

int failures = 0;

void check(bool ok, const char *what) {
  if (!ok) {
    std::printf("  !! FAILED: %s\n", what);
    ++failures;
  }
}

/// Size of the i-th block: mostly small objects, some medium, a few large and huge.
std::size_t size_for(std::size_t i) {
  static constexpr std::array<std::size_t, 14> small = {4,   8,   16,  24,  40,   64,   100,
                                                        128, 200, 256, 512, 1000, 2048, 4000};
  if (i % 50'000 == 49'999)
    return std::size_t{40} << 20; // 40 MiB
  if (i % 10'000 == 4'999)
    return std::size_t{3} << 20; // 3 MiB
  if (i % 2'000 == 1'999)
    return std::size_t{400} << 10; // 400 KiB
  if (i % 97 == 96)
    return 20'000 + (i % 7) * 10'000; // 20 KB .. 80 KB
  return small[i % small.size()];
}

const char *kind_name(ramalloc::block_info::block_kind kind) {
  switch (kind) {
  case ramalloc::block_info::block_kind::small:
    return "small";
  case ramalloc::block_info::block_kind::medium:
    return "medium";
  case ramalloc::block_info::block_kind::large:
    return "large";
  case ramalloc::block_info::block_kind::huge:
    return "huge";
  }
  return "?";
}

/// A mutex-protected queue of pointer batches: the simplest way to hand blocks from
/// one thread to another. (Its own storage comes from the C library's malloc.)
class handoff_queue {
public:
  void push(std::vector<void *> batch) {
    {
      std::lock_guard lock(mutex_);
      batches_.push_back(std::move(batch));
    }
    ready_.notify_one();
  }

  /// Waits for the next batch; returns false once the queue is closed and empty.
  bool pop(std::vector<void *> &out) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [this] { return closed_ || !batches_.empty(); });
    if (batches_.empty())
      return false;
    out = std::move(batches_.front());
    batches_.pop_front();
    return true;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::vector<void *>> batches_;
  bool closed_ = false;
};

// --- printing ---------------------------------------------------------------------

std::string human_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char *, 5> units = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < units.size()) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  if (unit == 0)
    std::snprintf(text, sizeof text, "%" PRIu64 " B", bytes);
  else
    std::snprintf(text, sizeof text, "%.1f %s", value, units[unit]);
  return text;
}

struct stat_field {
  const char *name;
  std::uint64_t ramalloc::stats::*member;
  bool is_bytes;
};

constexpr std::array<stat_field, 13> stat_fields = {{
    {"live_bytes", &ramalloc::stats::live_bytes, true},
    {"live_blocks", &ramalloc::stats::live_blocks, false},
    {"committed_bytes", &ramalloc::stats::committed_bytes, true},
    {"reserved_bytes", &ramalloc::stats::reserved_bytes, true},
    {"pending_debt", &ramalloc::stats::pending_debt, false},
    {"remote_frees", &ramalloc::stats::remote_frees, false},
    {"pages_purged", &ramalloc::stats::pages_purged, false},
    {"bytes_purged", &ramalloc::stats::bytes_purged, true},
    {"heaps_live", &ramalloc::stats::heaps_live, false},
    {"heaps_orphaned", &ramalloc::stats::heaps_orphaned, false},
    {"orphans_adopted", &ramalloc::stats::orphans_adopted, false},
    {"orphans_serviced", &ramalloc::stats::orphans_serviced, false},
    {"invalid_frees", &ramalloc::stats::invalid_frees, false},
}};

std::string stat_text(const ramalloc::stats &s, const stat_field &field) {
  std::uint64_t value = s.*field.member;
  if (field.is_bytes)
    return human_bytes(value);
  return std::to_string(value);
}

void print_stats(const ramalloc::stats &start, const ramalloc::stats &middle,
                 const ramalloc::stats &end) {
  std::printf("\n== process-wide statistics (ramalloc::get_stats) ==\n");
  std::printf("  %-18s %14s %20s %14s\n", "field", "at start", "after B's discards", "after flush");
  for (const stat_field &field : stat_fields)
    std::printf("  %-18s %14s %20s %14s\n", field.name, stat_text(start, field).c_str(),
                stat_text(middle, field).c_str(), stat_text(end, field).c_str());
}

void print_query(const char *label, const void *p) {
  std::optional<ramalloc::block_info> info = ramalloc::query(p);
  if (!info) {
    std::printf("  %-24s %18p -> not ours\n", label, p);
    return;
  }
  std::printf("  %-24s %18p -> ours: %s block at %p, usable %zu bytes, %s\n", label, p,
              kind_name(info->kind), info->start, info->usable_size,
              info->is_start ? "is the block start" : "interior pointer");
}

} // namespace

int main() {
  using clock = std::chrono::steady_clock;

  // Line-buffered even into a pipe, so the story stays in order with any error report.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const ramalloc::options opts = ramalloc::get_options();
  std::printf("ramalloc demo: acquire / discard / reclaim / flush / query across two threads\n");
  std::printf("options: purge_delay_ms=%" PRIu64 " purge_budget=%s reserve=%s page_cache=%u "
              "debt_slice=%u debt_interval=%u\n",
              opts.purge_delay_ms, human_bytes(opts.purge_budget).c_str(),
              human_bytes(opts.reserve).c_str(), opts.page_cache, opts.debt_slice,
              opts.debt_interval);

  const ramalloc::stats at_start = ramalloc::get_stats();
  ramalloc::heap &heap_a = ramalloc::current_heap();
  std::printf("\nthread A (main) owns heap %p\n", heap_a.id());

  // --- thread B: discards whatever A hands it -----------------------------------
  handoff_queue queue;
  std::size_t b_discarded = 0;
  std::size_t b_owned_by_a = 0;
  std::thread thread_b([&] {
    std::vector<void *> batch;
    while (queue.pop(batch)) {
      for (void *p : batch) {
        std::optional<ramalloc::block_info> info = ramalloc::query(p);
        if (info && info->owner == heap_a.id())
          ++b_owned_by_a;
        ramalloc::discard(p); // remote free: B is not the owner
        ++b_discarded;
      }
    }
  });

  // --- thread A: acquire mixed sizes, hand them to B ----------------------------
  std::array<std::size_t, 4> per_kind{};
  std::uint64_t acquired_bytes = 0;
  std::vector<void *> batch;
  batch.reserve(batch_size);
  for (std::size_t i = 0; i < block_count; ++i) {
    const std::size_t size = size_for(i);
    void *p = ramalloc::acquire(size);
    if (p == nullptr) {
      std::printf("  !! acquire(%zu) returned nullptr\n", size);
      ++failures;
      break;
    }
    std::memset(p, static_cast<int>(i & 0xFF), std::min<std::size_t>(size, 64));
    std::optional<ramalloc::block_info> info = ramalloc::query(p);
    check(info && info->is_start && info->usable_size >= size,
          "query of a fresh block reports its start and a usable size >= the request");
    if (info)
      ++per_kind[static_cast<std::size_t>(info->kind)];
    acquired_bytes += size;
    batch.push_back(p);
    if (batch.size() == batch_size) {
      queue.push(std::move(batch));
      batch = {};
      batch.reserve(batch_size);
    }
  }
  if (!batch.empty())
    queue.push(std::move(batch));
  queue.close();
  std::printf("thread A: acquired %zu blocks (%s requested): %zu small, %zu medium, "
              "%zu large, %zu huge; handed all of them to thread B\n",
              block_count, human_bytes(acquired_bytes).c_str(), per_kind[0], per_kind[1],
              per_kind[2], per_kind[3]);

  thread_b.join();
  std::printf("thread B: discarded %zu blocks, %zu of them owned by A's heap "
              "(remote frees: one atomic each, the rest is debt for A)\n",
              b_discarded, b_owned_by_a);
  check(b_discarded == block_count, "thread B discarded every block");
  check(b_owned_by_a == block_count, "every block B discarded belonged to A's heap");
  const ramalloc::stats after_discards = ramalloc::get_stats();

  // --- thread A pays its debt in budgeted steps -----------------------------------
  std::printf("\nthread A: pending debt on its heap: %" PRIu64 " units\n",
              heap_a.get_stats().pending_debt);
  std::printf("thread A: reclaim(%zu) step by step:\n", reclaim_budget);
  std::size_t steps = 0;
  std::size_t pending = 0;
  clock::duration slowest{};
  do {
    const clock::time_point t0 = clock::now();
    pending = ramalloc::reclaim(reclaim_budget);
    slowest = std::max(slowest, clock::now() - t0);
    ++steps;
    // Every step up to 10, then every 25th, and the last one.
    if (steps <= 10 || steps % 25 == 0 || pending == 0)
      std::printf("  step %4zu: pending debt %zu\n", steps, pending);
    else if (steps == 11)
      std::printf("  ...\n");
  } while (pending > 0 && steps < max_reclaim_steps);
  std::printf("thread A: %zu reclaim steps, slowest %.1f us%s\n", steps,
              std::chrono::duration<double, std::micro>(slowest).count(),
              pending == 0 ? ", no debt left" : " (step cap reached; flush pays the rest)");

  // --- query: anything may be asked about ---------------------------------------
  std::printf("\nquery(p) on assorted pointers (safe on any value):\n");
  int on_stack = 42;
  void *block = ramalloc::acquire(100);
  void *libc_block = std::malloc(100);
  check(block != nullptr, "acquire(100) after reclaim");
  print_query("stack variable", &on_stack);
  print_query("ramalloc block", block);
  print_query("ramalloc block + 37", static_cast<char *>(block) + 37);
  print_query("C library malloc block", libc_block);
  print_query("wild value 0xdeadbeef", reinterpret_cast<void *>(std::uintptr_t{0xdeadbeef}));
  print_query("nullptr", nullptr);
  check(!ramalloc::query(&on_stack), "a stack pointer is not ours");
  check(!ramalloc::query(libc_block), "a C library block is not ours");
  {
    std::optional<ramalloc::block_info> start = ramalloc::query(block);
    std::optional<ramalloc::block_info> inner = ramalloc::query(static_cast<char *>(block) + 37);
    check(start && start->is_start && start->start == block, "block start is recognised");
    check(inner && !inner->is_start && inner->start == block,
          "an interior pointer leads back to its block's start");
    check(start && start->owner == heap_a.id(), "the block belongs to A's heap");
  }
  std::free(libc_block);
  ramalloc::discard(block); // local free: A owns it, no atomic read-modify-write

  // --- flush: pay everything, give free memory back -------------------------------
  const clock::time_point t0 = clock::now();
  ramalloc::flush();
  std::printf("\nthread A: flush() took %.1f us; pending debt now %" PRIu64 "\n",
              std::chrono::duration<double, std::micro>(clock::now() - t0).count(),
              heap_a.get_stats().pending_debt);
  const ramalloc::stats after_flush = ramalloc::get_stats();

  print_stats(at_start, after_discards, after_flush);
  check(after_flush.live_blocks == at_start.live_blocks,
        "every block acquired by the demo has been discarded");
  check(after_flush.invalid_frees == at_start.invalid_frees, "no invalid frees");

  if (failures != 0) {
    std::printf("\ndemo: %d check(s) FAILED\n", failures);
    return 1;
  }
  std::printf("\ndemo: all checks passed\n");
  return 0;
}
