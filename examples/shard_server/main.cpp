// shard_server: command line, logging, worker threads, signals, the final report.
#include "shard.hpp"

#include <asio/signal_set.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <string_view>
#include <thread>

namespace {

constexpr const char *usage = R"(usage: shard_server [options]

An MMO-style shard server on ramalloc::io: persistent zones and instance zones (dungeons)
updated on a fixed tick by a worker pool, sessions over TCP speaking the protocol in
docs/shard-protocol.md. Prints "listening HOST:PORT" on stdout once it accepts sessions,
and "quiescent ..." each time it has been left without sessions and instances (after
measuring its memory). SIGINT/SIGTERM shut it down gracefully.

Network:
  --bind ADDR               address to listen on (default 127.0.0.1)
  --port N                  TCP port, 0 = any free port (default 0)
  --port-file FILE          write the chosen port to FILE once listening
World:
  --workers N               worker threads (default 2)
  --zones N                 persistent zones (default 4)
  --npcs N                  NPCs per persistent zone (default 150)
  --tick-hz N               zone tick rate (default 20)
  --dungeons N              dungeon templates players may enter (default 3)
  --instance-npcs N         NPCs per instance (default 40)
  --max-instances N         open instances at most (default 32)
  --instance-capacity N     players per instance (default 5)
  --instance-linger-ms N    an empty instance closes after this long (default 300)
  --instance-lifetime-ms N  time limit of an instance; players are sent home (default 30000)
Sessions:
  --session-groups N        session strands (heap strands in the kit mode; default 4)
  --max-sessions N          sessions at once; more are closed with server_full (default 2000)
  --idle-timeout-ms N       close a session that sent nothing (or left a frame
                            incomplete) for this long (default 5000)
  --write-timeout-ms N      close a session whose write has not completed (default 3000)
  --send-queue-cap BYTES    close a session with more queued for it (default 262144)
  --socket-sndbuf BYTES     SO_SNDBUF of session sockets, 0 = kernel autotuning
                            (default 65536)
  --flood-rate N            messages/s a session may sustain (default 200)
  --flood-burst N           messages it may send at once (default 400)
Operations:
  --plain                   no heap strands, no handler allocators, no reclaim in the
                            loop: plain Asio strands and the std allocator, so the same
                            binary runs under any malloc with LD_PRELOAD
  --strand-budget N         kit mode: debt units a zone or session-group strand pays
                            per step (default 64)
  --strand-step N           ... after every N of its handlers (default 1: each tick,
                            each session read pays a bounded step)
  --stats-period-ms N       log ramalloc::io::stats_reporter output every N ms (0 = off)
  --stats-json              ... as one JSON object per line
  --sample-ms N             RSS sampling period for the report (default 200)
  --duration S              shut down by itself after S seconds (default: run until signalled)
  --report-json FILE        write the final report (tick histograms, sessions, closes,
                            bytes, RSS over time, allocator stats) to FILE
  --log-level LEVEL         trace, debug, info, warn, error, off (default info)
  --help                    this text
)";

bool parse_number(std::string_view s, double &out) {
  if (s.empty())
    return false;
  char *end = nullptr;
  std::string tmp(s);
  out = std::strtod(tmp.c_str(), &end);
  return end != nullptr && *end == '\0' && out >= 0;
}

/// Parses argv into opts; returns an error message, or empty on success.
std::string parse_args(int argc, char **argv, shard::server_options &o, bool &help) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      help = true;
      return {};
    }
    if (a == "--plain") {
      o.plain = true;
      continue;
    }
    if (a == "--stats-json") {
      o.stats_json = true;
      continue;
    }
    if (i + 1 >= argc)
      return "option " + std::string(a) + " needs a value (or is unknown; try --help)";
    std::string_view v = argv[++i];
    auto str = [&](std::string &dst) { dst = std::string(v); };
    double d = 0;
    auto num = [&](auto &dst, double lo, double hi) -> std::string {
      if (!parse_number(v, d) || d < lo || d > hi)
        return "bad value '" + std::string(v) + "' for " + std::string(a) + " (expected " +
               std::to_string(static_cast<long long>(lo)) + ".." +
               std::to_string(static_cast<long long>(hi)) + ")";
      dst = static_cast<std::remove_reference_t<decltype(dst)>>(d);
      return {};
    };
    std::string err;
    if (a == "--bind")
      str(o.bind);
    else if (a == "--port")
      err = num(o.port, 0, 65535);
    else if (a == "--port-file")
      str(o.port_file);
    else if (a == "--workers")
      err = num(o.workers, 1, 256);
    else if (a == "--zones")
      err = num(o.zones, 1, 1000);
    else if (a == "--npcs")
      err = num(o.npcs, 0, 100000);
    else if (a == "--tick-hz")
      err = num(o.tick_hz, 1, 1000);
    else if (a == "--dungeons")
      err = num(o.dungeons, 0, 1000);
    else if (a == "--instance-npcs")
      err = num(o.instance_npcs, 0, 100000);
    else if (a == "--max-instances")
      err = num(o.max_instances, 0, 100000);
    else if (a == "--instance-capacity")
      err = num(o.instance_capacity, 1, 1000);
    else if (a == "--instance-linger-ms")
      err = num(o.instance_linger_ms, 0, 3600000);
    else if (a == "--instance-lifetime-ms")
      err = num(o.instance_lifetime_ms, 1, 86400000);
    else if (a == "--session-groups")
      err = num(o.session_groups, 1, 1024);
    else if (a == "--max-sessions")
      err = num(o.max_sessions, 1, 1000000);
    else if (a == "--idle-timeout-ms")
      err = num(o.idle_timeout_ms, 10, 86400000);
    else if (a == "--write-timeout-ms")
      err = num(o.write_timeout_ms, 10, 86400000);
    else if (a == "--send-queue-cap")
      err = num(o.send_queue_cap, 1024, 1ull << 32);
    else if (a == "--socket-sndbuf")
      err = num(o.socket_sndbuf, 0, 1ull << 30);
    else if (a == "--flood-rate")
      err = num(o.flood_rate, 1, 1e9);
    else if (a == "--flood-burst")
      err = num(o.flood_burst, 1, 1e9);
    else if (a == "--strand-budget")
      err = num(o.strand_budget, 1, 1e6);
    else if (a == "--strand-step")
      err = num(o.strand_step, 1, 1e6);
    else if (a == "--stats-period-ms")
      err = num(o.stats_period_ms, 0, 86400000);
    else if (a == "--sample-ms")
      err = num(o.sample_ms, 10, 60000);
    else if (a == "--duration")
      err = num(o.duration_s, 0, 1e7);
    else if (a == "--report-json")
      str(o.report_json);
    else if (a == "--log-level")
      str(o.log_level);
    else
      return "unknown option " + std::string(a) + " (try --help)";
    if (!err.empty())
      return err;
  }
  auto lvl = spdlog::level::from_str(o.log_level);
  if (lvl == spdlog::level::off && o.log_level != "off")
    return "bad --log-level '" + o.log_level + "'";
  return {};
}

} // namespace

int main(int argc, char **argv) {
  shard::server_options opts;
  bool help = false;
  if (auto err = parse_args(argc, argv, opts, help); !err.empty()) {
    std::fprintf(stderr, "shard_server: %s\n", err.c_str());
    return 2;
  }
  if (help) {
    std::fputs(usage, stdout);
    return 0;
  }

  // Logging: the server's own logger and the kit's both go to stderr (stdout carries
  // the machine-readable "listening"/"quiescent" lines).
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto log = std::make_shared<spdlog::logger>("shard", sink);
  log->set_level(spdlog::level::from_str(opts.log_level));
  log->set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
  if (!opts.plain) {
    auto kit_log = std::make_shared<spdlog::logger>("ramalloc", sink);
    kit_log->set_level(log->level());
    kit_log->set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
    ramalloc::io::set_logger(kit_log);
    ramalloc::io::route_core_errors_to_logger();
  }

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto srv = std::make_unique<shard::shard_server>(io, opts, log);

  // Workers: the kit's pool (each thread runs ramalloc::io::run: bounded batches, reclaim
  // between them, idle flush) or, with --plain, threads running io_context::run.
  std::unique_ptr<ramalloc::io::worker_pool> pool;
  std::vector<std::thread> plain_threads;
  std::atomic<int> failures{0};
  if (opts.plain) {
    for (std::size_t i = 0; i < opts.workers; ++i)
      plain_threads.emplace_back([&] {
        try {
          io.run();
        } catch (const std::exception &e) {
          log->critical("worker: {}", e.what());
          failures.fetch_add(1);
          io.stop();
        }
      });
  } else {
    pool = std::make_unique<ramalloc::io::worker_pool>(io, opts.workers);
  }

  std::promise<void> finished;
  std::once_flag once;
  auto stop = [&] { std::call_once(once, [&] { srv->shutdown([&] { finished.set_value(); }); }); };

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const std::error_code &ec, int sig) {
    if (ec)
      return;
    log->info("signal {}: shutting down", sig);
    stop();
  });
  asio::steady_timer duration_timer(io);

  std::promise<std::uint16_t> listening;
  try {
    srv->start([&](std::uint16_t port) { listening.set_value(port); });
  } catch (const std::exception &e) {
    log->critical("cannot listen on {}:{}: {}", opts.bind, opts.port, e.what());
    work.reset();
    io.stop();
    if (pool)
      pool->join();
    for (auto &t : plain_threads)
      t.join();
    return 1;
  }
  std::uint16_t port = listening.get_future().get();
  if (!opts.port_file.empty()) {
    std::string tmp = opts.port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), opts.port_file.c_str()); // readers never see a partial file
  }
  std::printf("listening %s:%u\n", opts.bind.c_str(), static_cast<unsigned>(port));
  std::fflush(stdout);
  log->info("shard up on {}:{} ({} mode, {} workers, {} zones at {} Hz)", opts.bind, port,
            opts.plain ? "plain" : "kit", opts.workers, opts.zones, opts.tick_hz);
  if (opts.duration_s > 0) {
    duration_timer.expires_after(
        std::chrono::milliseconds(static_cast<long long>(opts.duration_s * 1000)));
    duration_timer.async_wait([&](const std::error_code &ec) {
      if (!ec)
        stop();
    });
  }

  finished.get_future().wait();
  signals.cancel();
  duration_timer.cancel();
  std::string report = srv->report_json();
  work.reset();
  io.stop();
  int rc = 0;
  try {
    if (pool)
      pool->join();
  } catch (const std::exception &e) {
    log->critical("a worker failed: {}", e.what());
    rc = 1;
  }
  for (auto &t : plain_threads)
    t.join();
  if (failures.load() > 0)
    rc = 1;
  if (!opts.report_json.empty()) {
    std::ofstream f(opts.report_json);
    f << report << "\n";
    if (!f) {
      log->error("cannot write {}", opts.report_json);
      rc = 1;
    }
  }
  shard::set_tearing_down();
  srv.reset();
  log->info("stopped");
  return rc;
}
