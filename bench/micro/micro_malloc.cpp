// Micro-benchmarks through malloc/free (Google Benchmark). This program links no
// allocator: run it under each one with LD_PRELOAD (bench/compare does).
//
//   malloc_pair/<size>          malloc + free of one block (the fast path)
//   malloc_batch/<size>         100 mallocs then 100 frees; time per pair
//   malloc_mixed                the shape of docs/benchmarks.md's instruction count:
//                               1000 mallocs of 64..176 bytes, then 1000 frees
//   malloc_remote_free/<size>   free of blocks malloc'd by another thread
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <vector>

#include "handoff.hpp"

namespace {

void malloc_pair(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void *p = std::malloc(n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(malloc_pair)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->Arg(512)
    ->Arg(1024)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->Arg(262144);

void malloc_batch(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  void *v[100];
  for (auto _ : state) {
    for (auto &p : v) {
      p = std::malloc(n);
      benchmark::DoNotOptimize(p);
    }
    for (auto p : v)
      std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(malloc_batch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Arg(4096);

void malloc_mixed(benchmark::State &state) {
  static void *v[1000];
  for (auto _ : state) {
    for (int i = 0; i < 1000; ++i) {
      v[i] = std::malloc(64 + (i % 8) * 16);
      benchmark::DoNotOptimize(v[i]);
    }
    for (auto p : v)
      std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(malloc_mixed);

constexpr std::size_t remote_batch = 4096;

void malloc_remote_free(benchmark::State &state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  bench::helper_thread owner;
  std::vector<void *> blocks(remote_batch);
  for (auto _ : state) {
    owner.run([&] {
      for (auto &p : blocks)
        p = std::malloc(n);
    });
    const auto t0 = std::chrono::steady_clock::now();
    for (auto p : blocks)
      std::free(p);
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  state.SetItemsProcessed(state.iterations() * remote_batch);
}
// Manual timing: the set-up between timed regions is longer than the region itself.
BENCHMARK(malloc_remote_free)->Arg(16)->Arg(64)->Arg(1024)->UseManualTime()->Iterations(300);

} // namespace

BENCHMARK_MAIN();
