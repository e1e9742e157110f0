// The error handler is one unit: a report made while another thread replaces the handler
// reaches either the old callback with the old context or the new callback with the new
// context, never a mix (issue 8 item 10).
#include "stress_support.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

using namespace ramalloc_stress;

namespace {

struct handler_context {
  int id;
};
constinit std::atomic<std::uint64_t> g_calls{0}, g_mismatches{0};

template <int Id>
void expect_context(ram_error, const void *, const char *, void *context) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  if (static_cast<handler_context *>(context)->id != Id)
    g_mismatches.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

TEST(ErrorHandler, ReportsRacingAHandlerChangeNeverPairOneCallbackWithAnothersContext) {
  static handler_context first{1}, second{2};
  ram_set_error_handler(&expect_context<1>, &first);
  const std::size_t reports = scaled(200000, 0.1, 0.25, 2000);
  std::atomic<bool> done{false};
  std::thread setter([&] {
    while (!done.load(std::memory_order_relaxed)) {
      ram_set_error_handler(&expect_context<2>, &second);
      ram_set_error_handler(&expect_context<1>, &first);
    }
  });
  std::vector<std::thread> reporters;
  for (int t = 0; t < 2; ++t)
    reporters.emplace_back([&] {
      for (std::size_t i = 0; i < reports; ++i) // a bad option name: reported, harmless
        ramalloc::set_option("RAMALLOC_NO_SUCH_OPTION", "1");
    });
  for (auto &r : reporters)
    r.join();
  done = true;
  setter.join();
  ram_set_error_handler(nullptr, nullptr);
  std::printf("[ stats ] %llu reports, %llu with another handler's context\n",
              static_cast<unsigned long long>(g_calls.load()),
              static_cast<unsigned long long>(g_mismatches.load()));
  EXPECT_EQ(g_calls.load(), 2 * reports);
  EXPECT_EQ(g_mismatches.load(), 0u);
}
