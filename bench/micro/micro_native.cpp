// Micro-benchmarks of ramalloc's native API (Google Benchmark).
//
//   native_pair/<size>        acquire + discard of one block, per size class (local)
//   native_batch/<size>       100 acquires then 100 discards (local); time per pair
//   native_remote_discard/<size>
//                             discard of blocks another thread's heap owns (the remote
//                             path: one CAS, plus one inbox push per page)
//   native_reclaim_partial/<units>
//                             reclaim cost per unit of debt: each unit is an inbox page
//                             that got one remote free and stays in use
//   native_reclaim_empty/<units>
//                             each unit is an inbox page whose every block was freed
//                             remotely, so settling it retires the page
//   native_query_*            query() of our block start, an interior pointer, a foreign
//                             heap pointer (glibc's), a stack address and a wild value
//
// Linked with ramalloc::ramalloc only; malloc stays glibc's.
#include <ramalloc/ramalloc.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "handoff.hpp"

namespace {

void size_args(benchmark::internal::Benchmark *b) {
  for (long s :
       {4, 8, 16, 32, 48, 64, 96, 128, 160, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144})
    b->Arg(s);
}

void native_pair(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void *p = ramalloc::acquire(n);
    benchmark::DoNotOptimize(p);
    ramalloc::discard(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(native_pair)->Apply(size_args);

void native_batch(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  void *v[100];
  for (auto _ : state) {
    for (auto &p : v) {
      p = ramalloc::acquire(n);
      benchmark::DoNotOptimize(p);
    }
    for (auto p : v)
      ramalloc::discard(p);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(native_batch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);

constexpr std::size_t remote_batch = 4096;

using bench_clock = std::chrono::steady_clock;
double seconds(bench_clock::time_point a, bench_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Set-up happens between timed regions, so these use manual timing (PauseTiming costs
// more than some of what they measure).
void native_remote_discard(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  bench::helper_thread owner;
  std::vector<void *> blocks(remote_batch);
  for (auto _ : state) {
    owner.run([&] {
      ramalloc::reclaim(1u << 20); // settle the previous batch's debt: the owner starts clean
      for (auto &p : blocks)
        p = ramalloc::acquire(n);
    });
    const auto t0 = bench_clock::now();
    for (auto p : blocks)
      ramalloc::discard(p);
    state.SetIterationTime(seconds(t0, bench_clock::now()));
  }
  owner.run([] { ramalloc::flush(); });
  state.SetItemsProcessed(state.iterations() * remote_batch);
}
BENCHMARK(native_remote_discard)->Arg(16)->Arg(64)->Arg(1024)->UseManualTime()->Iterations(300);

/// Builds `units` pages of debt on the calling thread's heap: blocks of 1 KiB (64 per
/// page), of which the helper frees one per page (partial) or all (empty).
void reclaim_bench(benchmark::State &state, bool empty) {
  const std::size_t units = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t block = 1024, per_page = 65536 / block;
  bench::helper_thread freer;
  std::vector<void *> blocks(units * per_page);
  std::size_t leftover = 0;
  for (auto _ : state) {
    ramalloc::reclaim(1u << 20); // no debt left from the previous round
    for (auto &p : blocks)
      p = ramalloc::acquire(block);
    freer.run([&] {
      for (std::size_t i = 0; i < blocks.size(); ++i)
        if (empty || i % per_page == 0)
          ramalloc::discard(blocks[i]);
    });
    const auto t0 = bench_clock::now();
    leftover += ramalloc::reclaim(units);
    state.SetIterationTime(seconds(t0, bench_clock::now()));
    if (!empty)
      for (std::size_t i = 0; i < blocks.size(); ++i)
        if (i % per_page != 0)
          ramalloc::discard(blocks[i]);
  }
  ramalloc::flush();
  state.SetItemsProcessed(state.iterations() * units);
  // Units still pending after reclaim(units), averaged: 0 when every unit was one page.
  state.counters["pending_after"] = double(leftover) / double(state.iterations());
}
void native_reclaim_partial(benchmark::State &state) {
  reclaim_bench(state, false);
}
void native_reclaim_empty(benchmark::State &state) {
  reclaim_bench(state, true);
}
void reclaim_args(benchmark::internal::Benchmark *b) {
  b->Arg(1)->Arg(16)->Arg(256)->UseManualTime()->Iterations(400);
}
BENCHMARK(native_reclaim_partial)->Apply(reclaim_args);
BENCHMARK(native_reclaim_empty)->Apply(reclaim_args);

void query_bench(benchmark::State &state, const void *p) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(p);
    auto info = ramalloc::query(p);
    benchmark::DoNotOptimize(info);
  }
  state.SetItemsProcessed(state.iterations());
}
void native_query_start(benchmark::State &state) {
  void *p = ramalloc::acquire(64);
  query_bench(state, p);
  ramalloc::discard(p);
}
void native_query_interior(benchmark::State &state) {
  char *p = static_cast<char *>(ramalloc::acquire(64));
  query_bench(state, p + 24);
  ramalloc::discard(p);
}
void native_query_foreign_heap(benchmark::State &state) {
  void *p = std::malloc(64); // glibc's: the program does not override malloc
  query_bench(state, p);
  std::free(p);
}
void native_query_stack(benchmark::State &state) {
  int local = 0;
  query_bench(state, &local);
}
void native_query_wild(benchmark::State &state) {
  query_bench(state, reinterpret_cast<const void *>(std::uintptr_t{0xdeadbeef000}));
}
BENCHMARK(native_query_start);
BENCHMARK(native_query_interior);
BENCHMARK(native_query_foreign_heap);
BENCHMARK(native_query_stack);
BENCHMARK(native_query_wild);

} // namespace

BENCHMARK_MAIN();
