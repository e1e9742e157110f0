// A helper thread that runs one job at a time for a benchmark thread, so a benchmark
// can set up cross-thread state (blocks owned by another heap, remote frees into ours)
// outside its timed region. Used by both micro-benchmark programs.
#pragma once

#include <atomic>
#include <functional>
#include <thread>

namespace bench {

class helper_thread {
public:
  helper_thread()
      : thread_([this] {
          for (;;) {
            unsigned s;
            while ((s = state_.load(std::memory_order_acquire)) == idle)
              std::this_thread::yield();
            if (s == stop)
              return;
            job_();
            state_.store(idle, std::memory_order_release);
          }
        }) {}
  ~helper_thread() {
    state_.store(stop, std::memory_order_release);
    thread_.join();
  }
  helper_thread(const helper_thread &) = delete;
  helper_thread &operator=(const helper_thread &) = delete;

  /// Runs `job` on the helper thread and waits for it to finish.
  void run(std::function<void()> job) {
    job_ = std::move(job);
    state_.store(busy, std::memory_order_release);
    while (state_.load(std::memory_order_acquire) != idle)
      std::this_thread::yield();
  }

private:
  static constexpr unsigned idle = 0, busy = 1, stop = 2;
  std::function<void()> job_;
  std::atomic<unsigned> state_{idle};
  std::thread thread_;
};

} // namespace bench
