// Helpers shared by the ramalloc::io tests: bounded waits on conditions (never a sleep
// standing in for synchronisation), a scale knob, loopback helpers.
#pragma once

#include "../common/test_common.hpp"

#include <ramalloc/io.hpp>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace kit_test {

using namespace std::chrono_literals;
using ramalloc_test_common::under_asan;
using ramalloc_test_common::under_sanitizer;
using ramalloc_test_common::under_tsan;

/// Polls `condition` (every millisecond) until it holds or `limit` passes; returns its
/// last value. The limit only bounds a failing test: passing tests return as soon as the
/// condition holds.
template <typename Condition>
bool wait_until(Condition condition, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return condition();
    std::this_thread::sleep_for(1ms);
  }
}

/// RAMALLOC_STRESS_SCALE (the suites' common knob): 1 = moderate CI scale.
inline double scale() {
  const char *s = std::getenv("RAMALLOC_STRESS_SCALE");
  const double v = s != nullptr ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

/// Slack for deadlines that depend on the scheduler (sanitizers run 5-20x slower).
inline std::chrono::milliseconds slack() {
  return under_sanitizer() ? 1500ms : 400ms;
}

/// The heap snapshot the registry has for `id` (the test fails when it has none).
inline ramalloc::io::heap_info info_of(ramalloc::io::heap_registry &r, const void *id) {
  auto i = r.find(id);
  if (!i) {
    ADD_FAILURE() << "the registry does not know heap " << id;
    return {};
  }
  return *i;
}

} // namespace kit_test
