// Options come from RAMALLOC_* environment variables and a programmatic setter. Bad
// names and values are rejected, leave the option unchanged, and are reported through
// the error callback with a message naming the variable.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <cerrno>
#include <cstdio>
#include <string>

using namespace ramalloc_test;

namespace {

using mode = ramalloc::options::on_invalid_mode;

bool same(const ramalloc::options &a, const ramalloc::options &b) {
  return a.purge_delay_ms == b.purge_delay_ms && a.purge_budget == b.purge_budget &&
         a.reserve == b.reserve && a.page_cache == b.page_cache && a.debt_slice == b.debt_slice &&
         a.debt_interval == b.debt_interval && a.remote_cache == b.remote_cache &&
         a.verbose == b.verbose && a.auto_purge == b.auto_purge && a.on_invalid == b.on_invalid;
}

class Options : public testing::Test {
protected:
  // Restores every option (and the default error handler) after each test.
  error_recorder errors{ramalloc::get_options().on_invalid};

  /// Exactly one RAM_ERROR_BAD_OPTION report whose message names `name`.
  void expect_rejection_naming(const std::string &name) {
    const auto reports = errors.reports();
    ASSERT_EQ(reports.size(), 1u) << "expected one report naming " << name;
    EXPECT_EQ(reports[0].error, RAM_ERROR_BAD_OPTION) << error_name(reports[0].error);
    EXPECT_NE(reports[0].message.find(name), std::string::npos)
        << "message \"" << reports[0].message << "\" does not name " << name;
    errors.clear();
  }
};

struct bad_value {
  const char *name;
  const char *value;
};

} // namespace

TEST_F(Options, NonNumericPurgeDelayIsRejectedWithAMessageNamingTheVariable) {
  const ramalloc::options before = ramalloc::get_options();
  EXPECT_FALSE(ramalloc::set_option("RAMALLOC_PURGE_DELAY_MS", "abc"));
  expect_rejection_naming("RAMALLOC_PURGE_DELAY_MS");
  EXPECT_TRUE(same(ramalloc::get_options(), before)) << "a rejected value changed options";
}

TEST_F(Options, MalformedValuesOfEveryOptionAreRejectedAndChangeNothing) {
  const bad_value cases[] = {
      {"RAMALLOC_PURGE_DELAY_MS", ""},
      {"RAMALLOC_PURGE_DELAY_MS", "-5"},
      {"RAMALLOC_PURGE_DELAY_MS", "12abc"},
      {"RAMALLOC_PURGE_DELAY_MS", "1.5"},
      {"RAMALLOC_PURGE_DELAY_MS", "99999999999999999999999"},
      {"RAMALLOC_PURGE_BUDGET", "abc"},
      {"RAMALLOC_PURGE_BUDGET", "-1"},
      {"RAMALLOC_PURGE_BUDGET", ""},
      {"RAMALLOC_RESERVE", "lots"},
      {"RAMALLOC_RESERVE", "-4096"},
      {"RAMALLOC_PAGE_CACHE", "x"},
      {"RAMALLOC_PAGE_CACHE", "-1"},
      {"RAMALLOC_PAGE_CACHE", "4294967296"},
      {"RAMALLOC_DEBT_SLICE", "two"},
      {"RAMALLOC_DEBT_SLICE", "99999999999"},
      {"RAMALLOC_DEBT_INTERVAL", "0"},
      {"RAMALLOC_DEBT_INTERVAL", "1025"},
      {"RAMALLOC_DEBT_INTERVAL", "often"},
      {"RAMALLOC_REMOTE_CACHE", "17"},
      {"RAMALLOC_REMOTE_CACHE", "many"},
      {"RAMALLOC_VERBOSE", "maybe"},
      {"RAMALLOC_ON_INVALID", "explode"},
      {"RAMALLOC_ON_INVALID", ""},
  };
  const ramalloc::options before = ramalloc::get_options();
  for (const bad_value &c : cases) {
    SCOPED_TRACE(testing::Message() << c.name << "=\"" << c.value << "\"");
    EXPECT_FALSE(ramalloc::set_option(c.name, c.value));
    expect_rejection_naming(c.name);
    EXPECT_TRUE(same(ramalloc::get_options(), before));
  }
}

TEST_F(Options, UnknownOptionNameIsRejectedWithAMessageNamingIt) {
  EXPECT_FALSE(ramalloc::set_option("RAMALLOC_NO_SUCH_OPTION", "1"));
  expect_rejection_naming("RAMALLOC_NO_SUCH_OPTION");
}

TEST_F(Options, NullNameOrValueIsRejected) {
  const ramalloc::options before = ramalloc::get_options();
  EXPECT_FALSE(ramalloc::set_option(nullptr, "1"));
  errors.clear();
  EXPECT_FALSE(ramalloc::set_option("RAMALLOC_PURGE_DELAY_MS", nullptr));
  expect_rejection_naming("RAMALLOC_PURGE_DELAY_MS");
  EXPECT_TRUE(same(ramalloc::get_options(), before));
}

TEST_F(Options, CInterfaceRejectsABadValueWithEinvalAndAMessageNamingTheVariable) {
  errno = 0;
  EXPECT_EQ(ram_set_option("RAMALLOC_PURGE_BUDGET", "abc"), -1);
  EXPECT_EQ(errno, EINVAL);
  expect_rejection_naming("RAMALLOC_PURGE_BUDGET");
}

TEST_F(Options, WellFormedValuesAreAppliedWithoutReports) {
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_PURGE_DELAY_MS", "125"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_PURGE_BUDGET", "1048576"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_RESERVE", "0"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_PAGE_CACHE", "9"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_DEBT_SLICE", "3"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_DEBT_INTERVAL", "16"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_REMOTE_CACHE", "5"));
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_VERBOSE", "1"));
  EXPECT_EQ(ram_set_option("RAMALLOC_ON_INVALID", "ignore"), 0);
  const ramalloc::options o = ramalloc::get_options();
  EXPECT_EQ(o.purge_delay_ms, 125u);
  EXPECT_EQ(o.purge_budget, 1048576u);
  EXPECT_EQ(o.reserve, 0u);
  EXPECT_EQ(o.page_cache, 9u);
  EXPECT_EQ(o.debt_slice, 3u);
  EXPECT_EQ(o.debt_interval, 16u);
  EXPECT_EQ(o.remote_cache, 5u);
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.on_invalid, mode::ignore);
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_VERBOSE", "0"));
  EXPECT_FALSE(ramalloc::get_options().verbose);
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_ON_INVALID", "abort"));
  EXPECT_EQ(ramalloc::get_options().on_invalid, mode::abort);
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_ON_INVALID", "warn"));
  EXPECT_EQ(ramalloc::get_options().on_invalid, mode::warn);
  EXPECT_EQ(errors.count(), 0u);
}

TEST_F(Options, SetOptionsReplacesEveryOption) {
  ramalloc::options o;
  o.purge_delay_ms = 1;
  o.purge_budget = 64 * KiB;
  o.reserve = 0;
  o.page_cache = 1;
  o.debt_slice = 7;
  o.debt_interval = 9;
  o.remote_cache = 3;
  o.verbose = true;
  o.on_invalid = mode::ignore;
  ramalloc::set_options(o);
  EXPECT_TRUE(same(ramalloc::get_options(), o));
  // The allocator keeps working under the new options.
  void *p = ramalloc::acquire(100);
  ASSERT_NE(p, nullptr);
  ramalloc::discard(p);
  ramalloc::reclaim(4);
}

// Issue 8 item 6: set_options applies the ranges set_option and the environment apply (an
// unbounded debt_slice would make one acquire slow path unbounded). A struct with any
// value out of range is rejected whole: nothing changes and each bad field is reported
// with the name of its environment variable.
TEST_F(Options, SetOptionsRejectsEveryValueOutOfTheDocumentedRangeAndChangesNothing) {
  struct bad_field {
    const char *variable;
    void (*spoil)(ramalloc::options &);
  };
  const bad_field cases[] = {
      {"RAMALLOC_PURGE_DELAY_MS", [](ramalloc::options &o) { o.purge_delay_ms = 86400001; }},
      {"RAMALLOC_PURGE_BUDGET", [](ramalloc::options &o) { o.purge_budget = 0; }},
      {"RAMALLOC_PURGE_BUDGET", [](ramalloc::options &o) { o.purge_budget = 64 * KiB - 1; }},
      {"RAMALLOC_RESERVE", [](ramalloc::options &o) { o.reserve = 512 * MiB + 1; }},
      {"RAMALLOC_PAGE_CACHE", [](ramalloc::options &o) { o.page_cache = 1025; }},
      {"RAMALLOC_DEBT_SLICE", [](ramalloc::options &o) { o.debt_slice = 0; }},
      {"RAMALLOC_DEBT_SLICE", [](ramalloc::options &o) { o.debt_slice = 65; }},
      {"RAMALLOC_DEBT_SLICE", [](ramalloc::options &o) { o.debt_slice = 4000000000u; }},
      {"RAMALLOC_DEBT_INTERVAL", [](ramalloc::options &o) { o.debt_interval = 0; }},
      {"RAMALLOC_DEBT_INTERVAL", [](ramalloc::options &o) { o.debt_interval = 1025; }},
      {"RAMALLOC_REMOTE_CACHE", [](ramalloc::options &o) { o.remote_cache = 17; }},
      {"RAMALLOC_ON_INVALID", [](ramalloc::options &o) { o.on_invalid = static_cast<mode>(7); }},
  };
  const ramalloc::options before = ramalloc::get_options();
  for (const bad_field &c : cases) {
    SCOPED_TRACE(c.variable);
    ramalloc::options o = before;
    o.page_cache = before.page_cache == 3 ? 5 : 3; // a good change that must not apply
    c.spoil(o);
    EXPECT_FALSE(ramalloc::set_options(o));
    expect_rejection_naming(c.variable);
    EXPECT_TRUE(same(ramalloc::get_options(), before)) << "a rejected struct changed options";
  }
}

TEST_F(Options, SetOptionsAcceptsTheEdgesOfEveryRange) {
  ramalloc::options o;
  o.purge_delay_ms = 86400000;
  o.purge_budget = 64 * KiB;
  o.reserve = 512 * MiB;
  o.page_cache = 1024;
  o.debt_slice = 64;
  o.debt_interval = 1024;
  o.remote_cache = 16;
  EXPECT_TRUE(ramalloc::set_options(o));
  EXPECT_TRUE(same(ramalloc::get_options(), o));
  o.purge_delay_ms = 0;
  o.reserve = 0;
  o.page_cache = 0;
  o.debt_slice = 1;
  o.debt_interval = 1;
  o.remote_cache = 0;
  EXPECT_TRUE(ramalloc::set_options(o));
  EXPECT_TRUE(same(ramalloc::get_options(), o));
  EXPECT_EQ(errors.count(), 0u);
}

// --- environment ---------------------------------------------------------------------
//
// Options are read from the environment at first use, so each case runs this binary
// again as a child with the variables set, and reads what the child saw.

namespace {

constexpr const char *child_marker = "RAMALLOC_UNIT_OPTIONS_CHILD";

struct child_result {
  int status = -1;
  std::string output; // stdout and stderr
};

child_result run_child(const std::string &environment) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return {};
  exe[n] = '\0';
  const std::string command =
      "env " + std::string(child_marker) + "=1 " + environment + " '" + exe +
      "' --gtest_also_run_disabled_tests "
      "--gtest_filter=OptionsChild.DISABLED_PrintsTheOptionsItStartedWith 2>&1";
  child_result result;
  FILE *pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr)
    return result;
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0)
    result.output.append(buf, got);
  result.status = ::pclose(pipe);
  return result;
}

std::string line_for(const ramalloc::options &o) {
  return "options: purge_delay_ms=" + std::to_string(o.purge_delay_ms) +
         " purge_budget=" + std::to_string(o.purge_budget) +
         " page_cache=" + std::to_string(o.page_cache) +
         " debt_interval=" + std::to_string(o.debt_interval) +
         " remote_cache=" + std::to_string(o.remote_cache) +
         " auto_purge=" + std::to_string(o.auto_purge) + ";";
}

} // namespace

// Helper run only as the child of the environment tests below.
TEST(OptionsChild, DISABLED_PrintsTheOptionsItStartedWith) {
  if (std::getenv(child_marker) == nullptr)
    GTEST_SKIP() << "runs only as a child of the Options environment tests";
  ramalloc::discard(ramalloc::acquire(16)); // first use: options are read here at latest
  std::printf("%s\n", line_for(ramalloc::get_options()).c_str());
  std::fflush(stdout);
}

TEST(OptionsFromEnvironment, VariablesSetTheOptionsAtStartup) {
  const child_result child = run_child("RAMALLOC_PURGE_DELAY_MS=777 RAMALLOC_PURGE_BUDGET=2097152 "
                                       "RAMALLOC_PAGE_CACHE=9 RAMALLOC_DEBT_INTERVAL=32 "
                                       "RAMALLOC_REMOTE_CACHE=7");
  ramalloc::options expected;
  expected.purge_delay_ms = 777;
  expected.purge_budget = 2097152;
  expected.page_cache = 9;
  expected.debt_interval = 32;
  expected.remote_cache = 7;
  EXPECT_EQ(child.status, 0) << child.output;
  EXPECT_NE(child.output.find(line_for(expected)), std::string::npos) << child.output;
}

TEST(OptionsFromEnvironment, BadValueIsRejectedWithAMessageNamingTheVariable) {
  const child_result child = run_child("RAMALLOC_PURGE_DELAY_MS=abc RAMALLOC_PAGE_CACHE=9");
  ramalloc::options expected; // the default purge delay stays; the good variable applies
  expected.page_cache = 9;
  EXPECT_NE(child.output.find("RAMALLOC_PURGE_DELAY_MS"), std::string::npos)
      << "no message names the variable:\n"
      << child.output;
  EXPECT_NE(child.output.find(line_for(expected)), std::string::npos) << child.output;
}

// Issue 8 item 20: RAMALLOC_AUTO_PURGE is documented (docs/tuning.md) and must be read.
TEST(OptionsFromEnvironment, AutoPurgeVariableIsRead) {
  const child_result child = run_child("RAMALLOC_AUTO_PURGE=0");
  ramalloc::options expected;
  expected.auto_purge = false;
  EXPECT_EQ(child.status, 0) << child.output;
  EXPECT_NE(child.output.find(line_for(expected)), std::string::npos) << child.output;
}

// Issue 8 item 10: the environment is read exactly once even when several threads make
// their first call at the same moment, and a set_option racing with that first load is
// never undone by it. Each trial needs a process whose options were never loaded: the
// child (a fresh process) forks one grandchild per trial before it touches ramalloc.
namespace {

constexpr const char *race_marker = "RAMALLOC_UNIT_OPTIONS_RACE_CHILD";
constinit std::atomic<int> g_reports{0};

void count_report(ram_error, const void *, const char *, void *) {
  g_reports.fetch_add(1, std::memory_order_relaxed);
}

/// One trial in a fresh process: `threads` threads make their first ramalloc call at
/// once; thread 0 sets RAMALLOC_ON_INVALID=ignore. Exit code: bit 0 set when the setting
/// was lost, bits 1.. the number of reports of the (bad) RAMALLOC_PURGE_DELAY_MS value.
/// Trials per run: fewer under a sanitizer, whose fork is slow.
int first_use_trials() {
  return under_sanitizer() ? 50 : 200;
}

[[noreturn]] void first_use_trial(int threads) {
  ram_set_error_handler(&count_report, nullptr);
  std::atomic<int> arrived{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      arrived.fetch_add(1);
      while (arrived.load() < threads) {
      }
      if (t == 0)
        ramalloc::set_option("RAMALLOC_ON_INVALID", "ignore");
      else
        (void)ramalloc::get_options();
    });
  for (auto &th : pool)
    th.join();
  const bool lost = ramalloc::get_options().on_invalid != mode::ignore;
  std::_Exit((g_reports.load() << 1) | (lost ? 1 : 0));
}

} // namespace

TEST(OptionsChild, DISABLED_ForksFirstUseTrials) {
  if (std::getenv(race_marker) == nullptr)
    GTEST_SKIP() << "runs only as a child of ConcurrentFirstCallersLoadTheEnvironmentOnce";
  const int trials = first_use_trials();
  int extra_loads = 0, lost = 0, failed = 0;
  for (int i = 0; i < trials; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0)
      first_use_trial(4);
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
      ++failed;
      continue;
    }
    const int code = WEXITSTATUS(status);
    lost += code & 1;
    extra_loads += (code >> 1) != 1 ? 1 : 0;
  }
  std::printf("first-use trials: %d, more or less than one load: %d, lost set_option: %d, "
              "failed: %d;\n",
              trials, extra_loads, lost, failed);
  std::fflush(stdout);
}

TEST(OptionsFromEnvironment, ConcurrentFirstCallersLoadTheEnvironmentOnce) {
#if RAMALLOC_TEST_WITH_OVERRIDE
  GTEST_SKIP() << "with the override, the child's harness loads the options before main";
#endif
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  ASSERT_GT(n, 0);
  exe[n] = '\0';
  const std::string command = "env " + std::string(race_marker) +
                              "=1 RAMALLOC_PURGE_DELAY_MS=abc '" + std::string(exe) +
                              "' --gtest_also_run_disabled_tests "
                              "--gtest_filter=OptionsChild.DISABLED_ForksFirstUseTrials 2>&1";
  std::string output;
  FILE *pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0)
    output.append(buf, got);
  EXPECT_EQ(::pclose(pipe), 0) << output;
  const std::string expected = "first-use trials: " + std::to_string(first_use_trials()) +
                               ", more or less than one load: 0, lost set_option: 0, failed: 0;";
  EXPECT_NE(output.find(expected), std::string::npos) << output;
}
