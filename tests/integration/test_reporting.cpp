// stats_reporter and the kit's logger: N periods give N reports with the documented
// fields, JSON lines parse, the logger is the library's own, core errors reach it.
#include <gtest/gtest.h>

#include "kit_test_support.hpp"

#include <asio.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

using namespace kit_test;
namespace io = ramalloc::io;

/// A sink that keeps every message.
class collecting_sink : public spdlog::sinks::base_sink<std::mutex> {
public:
  std::vector<std::string> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }

protected:
  void sink_it_(const spdlog::details::log_msg &msg) override {
    messages_.emplace_back(msg.payload.data(), msg.payload.size());
    levels_.push_back(msg.level);
  }
  void flush_() override {}

private:
  std::vector<std::string> messages_;
  std::vector<spdlog::level::level_enum> levels_;
};

/// Gives the kit's logger a collecting sink for the test's duration.
struct logger_fixture : ::testing::Test {
  std::shared_ptr<collecting_sink> sink = std::make_shared<collecting_sink>();
  void SetUp() override {
    auto l = std::make_shared<spdlog::logger>("ramalloc", sink);
    l->set_level(spdlog::level::trace);
    io::set_logger(l);
  }
  void TearDown() override { io::set_logger(nullptr); }
};

// --- a small JSON parser: enough to validate the reporter's lines ---------------------------

struct json_value {
  enum kind_t { null, boolean, number, string, array, object } kind = null;
  double num = 0;
  bool flag = false;
  std::string str;
  std::vector<json_value> items;
  std::map<std::string, json_value> fields;
  bool has(const std::string &k) const { return fields.count(k) != 0; }
  const json_value &operator[](const std::string &k) const { return fields.at(k); }
};

class json_parser {
public:
  explicit json_parser(const std::string &t) : text_(t) {}
  bool parse(json_value &out) {
    if (!value(out))
      return false;
    skip();
    return pos_ == text_.size();
  }

private:
  void skip() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_])))
      ++pos_;
  }
  bool eat(char c) {
    skip();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool literal(const char *word) {
    const std::size_t n = std::strlen(word);
    if (text_.compare(pos_, n, word) != 0)
      return false;
    pos_ += n;
    return true;
  }
  bool string_value(std::string &s) {
    if (!eat('"'))
      return false;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\' || static_cast<unsigned char>(text_[pos_]) < 0x20)
        return false; // the reporter never needs escapes
      s += text_[pos_++];
    }
    return eat('"');
  }
  bool value(json_value &v) {
    skip();
    if (pos_ >= text_.size())
      return false;
    const char c = text_[pos_];
    if (c == '{') {
      v.kind = json_value::object;
      ++pos_;
      if (eat('}'))
        return true;
      do {
        std::string key;
        json_value item;
        if (!string_value(key) || !eat(':') || !value(item) || v.fields.count(key))
          return false;
        v.fields.emplace(std::move(key), std::move(item));
      } while (eat(','));
      return eat('}');
    }
    if (c == '[') {
      v.kind = json_value::array;
      ++pos_;
      if (eat(']'))
        return true;
      do {
        json_value item;
        if (!value(item))
          return false;
        v.items.push_back(std::move(item));
      } while (eat(','));
      return eat(']');
    }
    if (c == '"') {
      v.kind = json_value::string;
      return string_value(v.str);
    }
    if (literal("true")) {
      v.kind = json_value::boolean;
      v.flag = true;
      return true;
    }
    if (literal("false")) {
      v.kind = json_value::boolean;
      return true;
    }
    if (literal("null"))
      return true;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) ||
                                   text_[pos_] == '-' || text_[pos_] == '.'))
      ++pos_;
    if (start == pos_)
      return false;
    v.kind = json_value::number;
    v.num = std::stod(text_.substr(start, pos_ - start));
    return true;
  }
  const std::string &text_;
  std::size_t pos_ = 0;
};

const char *const process_fields[] = {
    "live_bytes",      "live_blocks",      "committed_bytes", "reserved_bytes", "pending_debt",
    "remote_frees",    "pages_purged",     "bytes_purged",    "heaps_live",     "heaps_orphaned",
    "orphans_adopted", "orphans_serviced", "invalid_frees"};
const char *const heap_fields[] = {"kind",         "serial",        "id",
                                   "handlers",     "reclaim_steps", "flushes",
                                   "live_bytes",   "live_blocks",   "committed_bytes",
                                   "pending_debt", "remote_frees"};

// --- the logger ------------------------------------------------------------------------------

TEST(Logger, IsTheLibrarysOwnNamedRamallocWithANullSinkAndNotTheDefault) {
  auto l = io::logger();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->name(), "ramalloc");
  ASSERT_EQ(l->sinks().size(), 1u);
  EXPECT_TRUE(std::dynamic_pointer_cast<spdlog::sinks::null_sink_mt>(l->sinks()[0]) != nullptr);
  EXPECT_NE(spdlog::default_logger().get(), l.get()) << "never set as spdlog's default logger";
  EXPECT_EQ(spdlog::get("ramalloc"), nullptr) << "not registered in spdlog's registry";
}

// --- stats_reporter --------------------------------------------------------------------------

TEST_F(logger_fixture, StatsReporterWritesOneTextReportPerPeriodWithTheDocumentedFields) {
  asio::io_context ctx;
  auto strand = io::make_heap_strand(ctx);
  asio::post(strand, [] { ramalloc::discard(ramalloc::acquire(10)); });
  constexpr std::uint64_t n = 5;
  const auto period = 20ms;
  io::worker_pool pool(ctx, 1);
  const auto t0 = std::chrono::steady_clock::now();
  io::stats_reporter reporter(ctx, period);
  ASSERT_TRUE(wait_until([&] { return reporter.reports() >= n; }, 30s));
  reporter.stop();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  const std::uint64_t written = reporter.reports();
  pool.stop();
  pool.join();
  const auto messages = sink->messages();
  ASSERT_EQ(messages.size(), written) << "one message per report";
  EXPECT_GE(written, n);
  EXPECT_GE(elapsed, period * n) << "one report per period, the first after one period";
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string &m = messages[i];
    EXPECT_EQ(m.rfind("ramalloc stats #" + std::to_string(i + 1) + ": ", 0), 0u) << m;
    for (const char *f : process_fields)
      EXPECT_NE(m.find(std::string(" ") + f + "="), std::string::npos) << f << " in " << m;
    EXPECT_NE(m.find("; heap worker#"), std::string::npos) << m;
    EXPECT_NE(m.find("; heap strand#"), std::string::npos) << m;
  }
}

TEST_F(logger_fixture, StatsReporterJsonLinesParseAndCarryEveryHeap) {
  asio::io_context ctx;
  auto a = io::make_heap_strand(ctx);
  auto b = io::make_heap_strand(ctx);
  io::reporter_options ro;
  ro.format = io::report_format::json;
  io::worker_pool pool(ctx, 2);
  // Every report must carry both workers: the first one may not have been written
  // before both threads registered their heaps (a busy machine starts one late).
  auto &registry = asio::use_service<io::heap_registry>(ctx);
  ASSERT_TRUE(wait_until([&] { return registry.worker_count() == 2; }, 30s));
  io::stats_reporter reporter(ctx, 10ms, ro);
  ASSERT_TRUE(wait_until([&] { return reporter.reports() >= 3; }, 30s));
  reporter.stop();
  const std::uint64_t written = reporter.reports();
  pool.stop();
  pool.join();
  const auto messages = sink->messages();
  ASSERT_EQ(messages.size(), written);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    json_value v;
    ASSERT_TRUE(json_parser(messages[i]).parse(v)) << "not JSON: " << messages[i];
    ASSERT_EQ(v.kind, json_value::object);
    EXPECT_EQ(v["report"].num, double(i + 1));
    ASSERT_TRUE(v.has("process") && v.has("heaps") && v.has("under_pressure"));
    for (const char *f : process_fields) {
      ASSERT_TRUE(v["process"].has(f)) << f;
      EXPECT_EQ(v["process"][f].kind, json_value::number);
    }
    EXPECT_GE(v["process"]["heaps_live"].num, 2.0);
    const auto &heaps = v["heaps"].items;
    int strands = 0, workers = 0;
    for (const auto &h : heaps) {
      for (const char *f : heap_fields)
        ASSERT_TRUE(h.has(f)) << f;
      strands += h["kind"].str == "strand";
      workers += h["kind"].str == "worker";
    }
    EXPECT_EQ(strands, 2);
    EXPECT_EQ(workers, 2);
  }
  EXPECT_THROW(io::stats_reporter(ctx, 0ms), std::invalid_argument);
}

// --- the core's errors -----------------------------------------------------------------------

TEST_F(logger_fixture, CoreErrorReportsAreQueuedWithoutLoggingAndDrainedToTheLogger) {
  ramalloc::options o = ramalloc::get_options();
  o.on_invalid = ramalloc::options::on_invalid_mode::warn;
  ramalloc::set_options(o);
  io::route_core_errors_to_logger();
  int on_stack = 0;
  ramalloc::discard(&on_stack); // not ours: reported from inside discard
  EXPECT_EQ(sink->count(), 0u) << "nothing is logged on the free path";
  EXPECT_EQ(io::drain_error_reports(), 1u);
  auto messages = sink->messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("ramalloc: "), std::string::npos) << messages[0];

  // More reports than the ring holds: the overflow is counted, never blocks.
  const std::uint64_t dropped0 = io::dropped_error_reports();
  for (int i = 0; i < 100; ++i)
    ramalloc::discard(&on_stack);
  EXPECT_EQ(io::drain_error_reports(), 64u);
  EXPECT_EQ(io::dropped_error_reports() - dropped0, 36u);

  // A worker's service tick drains them too.
  asio::io_context ctx;
  io::pool_options po;
  po.loop.service_tick = 5ms;
  io::worker_pool pool(ctx, 1, po);
  const std::size_t before = sink->count();
  ramalloc::discard(&on_stack);
  EXPECT_TRUE(wait_until([&] { return sink->count() == before + 1; }));
  pool.stop();
  pool.join();
  io::restore_default_error_handler();
}

} // namespace
