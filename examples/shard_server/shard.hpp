// The shard server: zones on heap strands, sessions on TCP, instances that open and
// close. See README.md beside this file for the tour, docs/shard-protocol.md for the
// wire format and docs/integration.md for the kit it is built on.
//
// Threads and ownership:
//   - every zone (persistent or instance) runs on its own strand; in the kit mode that
//     is a ramalloc::io::heap_strand, so the zone's world (entities, grid, per-tick
//     scratch, outgoing frames) lives in the zone's heap;
//   - sessions are spread over a few session-group strands (heap strands in the kit
//     mode): a session's buffers live in its group's heap;
//   - a message from a session to its zone, and every frame a zone sends to a session,
//     is posted from one strand to the other: the receiving side frees what the sending
//     side allocated, so remote frees happen all the time, as in any Asio server.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/recycling_allocator.hpp>
#include <asio/steady_timer.hpp>

#include <ramalloc/io.hpp>
#include <ramalloc/pmr.hpp>

#include <spdlog/logger.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "histogram.hpp"
#include "protocol.hpp"
#include "world.hpp"

namespace shard {

using steady = std::chrono::steady_clock;
using heap_strand_t = ramalloc::io::heap_strand<asio::io_context::executor_type>;

/// Every knob of the server (command-line flags; see --help and README.md).
struct server_options {
  std::string bind = "127.0.0.1";
  std::uint16_t port = 0;
  std::string port_file;
  std::size_t workers = 2;
  std::size_t zones = 4;
  std::size_t dungeons = 3;
  std::size_t session_groups = 4;
  std::uint32_t tick_hz = 20;
  std::uint32_t npcs = 150;
  std::uint32_t instance_npcs = 40;
  std::size_t max_instances = 32;
  std::size_t instance_capacity = 5;
  std::uint32_t instance_linger_ms = 300;
  std::uint32_t instance_lifetime_ms = 30000;
  std::size_t max_sessions = 2000;
  std::uint32_t idle_timeout_ms = 5000;
  std::uint32_t write_timeout_ms = 3000;
  std::size_t send_queue_cap = 256 * 1024;
  /// SO_SNDBUF of every session socket (0 = the kernel's autotuning). Bounded, so a peer
  /// that stops reading stalls our writes instead of parking megabytes in the kernel.
  std::size_t socket_sndbuf = 64 * 1024;
  double flood_rate = 200;  ///< messages per second a session may sustain
  double flood_burst = 400; ///< messages it may send at once
  /// Kit mode: a zone or session-group strand pays `strand_budget` units of its heap's
  /// debt after every `strand_step` handlers (ramalloc::io::strand_options).
  std::size_t strand_budget = 64;
  std::size_t strand_step = 1;
  std::uint32_t stats_period_ms = 0; ///< 0 = no stats_reporter
  bool stats_json = false;
  std::uint32_t sample_ms = 200; ///< RSS sampling period
  double duration_s = 0;         ///< stop by itself after this long (0 = run until signalled)
  std::string report_json;
  std::string log_level = "info";
  bool plain = false;
};

class session;
class zone;

/// An outgoing frame allocated in a zone's heap. The zone counts the frames still
/// alive and releases its heap (release_all) only when none is left, since the core
/// forbids frees into a heap while release_all runs and the frames are freed by the
/// session strands.
class zone_frame {
public:
  zone_frame(proto::bytes bytes, std::shared_ptr<zone> owner);
  zone_frame(zone_frame &&) noexcept = default;
  zone_frame &operator=(zone_frame &&) = delete;
  ~zone_frame();
  const proto::bytes &bytes() const { return *bytes_; }

private:
  std::optional<proto::bytes> bytes_;
  std::shared_ptr<zone> owner_;
};

/// Picks, at run time, the allocator Asio uses for a session's socket operations: the
/// kit's handler_allocator (the session group strand's heap) by default, Asio's own
/// recycling allocator with --plain. One type, so the session code is written once.
template <typename T>
struct io_allocator {
  using value_type = T;
  io_allocator() noexcept = default;
  template <typename U>
  io_allocator(const io_allocator<U> &) noexcept {}
  T *allocate(std::size_t n);
  void deallocate(T *p, std::size_t n) noexcept;
  template <typename U>
  bool operator==(const io_allocator<U> &) const noexcept {
    return true;
  }
};

/// One member of a zone: the session to send to, and where it returns when an
/// instance expires.
struct zone_member {
  std::shared_ptr<session> s;
  std::shared_ptr<zone> home;
};

enum class zone_kind : std::uint8_t { persistent = 0, instance = 1 };

class shard_server;

/// A zone: a world ticked at a fixed rate on the zone's strand.
class zone : public std::enable_shared_from_this<zone> {
public:
  zone(shard_server &srv, zone_kind kind, std::uint16_t index, std::uint32_t uid);
  ~zone();
  void start();
  /// Posted by sessions (all run on the zone strand).
  void join(std::shared_ptr<session> s, std::shared_ptr<zone> home, std::uint32_t player);
  void leave_and_forward(std::uint32_t player, std::shared_ptr<zone> target,
                         std::shared_ptr<session> s, std::shared_ptr<zone> home);
  void remove(std::uint32_t player);
  void move(std::uint32_t player, std::uint32_t seq, std::int32_t x, std::int32_t y);
  void chat(std::pmr::string from, std::pmr::string text);
  /// Stops the tick and tears the world down once no frame is outstanding.
  void stop();
  /// Flushes the zone's heap (kit mode) and calls `done` on the io executor.
  void flush_heap(std::function<void()> done);

  zone_kind kind() const noexcept { return kind_; }
  std::uint16_t index() const noexcept { return index_; }
  std::uint32_t uid() const noexcept { return uid_; }
  const asio::any_io_executor &executor() const noexcept { return strand_; }
  bool finalized() const noexcept { return finalized_.load(std::memory_order_acquire); }

  // Instance bookkeeping, guarded by shard_server::instances_mu_.
  std::size_t slots = 0; ///< members + joins in flight
  steady::time_point empty_since{};
  bool registered = false;

private:
  friend class zone_frame;
  void schedule();
  void on_tick();
  void frame_freed() noexcept;
  void maybe_finalize();
  void deliver(std::uint32_t player, proto::bytes frame);
  std::shared_ptr<zone> self() { return shared_from_this(); }

  shard_server &srv_;
  zone_kind kind_;
  std::uint16_t index_;
  std::uint32_t uid_;
  std::optional<heap_strand_t> heap_strand_;
  asio::any_io_executor strand_;
  asio::steady_timer timer_;
  zone_world *world_ = nullptr; ///< lives in the zone's memory (see world.hpp)
  std::unordered_map<std::uint32_t, zone_member> members_;
  steady::time_point created_{};
  steady::time_point next_tick_{};
  std::atomic<std::int64_t> outstanding_{0};
  std::atomic<bool> closing_{false};
  std::atomic<bool> finalized_{false};
  bool ticking_ = false;
};

/// One TCP connection. Lives on its session group's strand.
class session : public std::enable_shared_from_this<session> {
public:
  session(shard_server &srv, asio::ip::tcp::socket socket, asio::any_io_executor strand,
          std::uint64_t serial);
  ~session();
  void start();
  /// Runs on the session strand (posted by zones and other sessions).
  void deliver(const proto::bytes &frame);
  void on_entered(std::shared_ptr<zone> z, std::int32_t x, std::int32_t y);
  void notice(proto::notice_code code, std::string_view text);
  /// Closes with a reason (on the session strand).
  void close(proto::close_reason reason, std::string detail = {});
  const asio::any_io_executor &executor() const noexcept { return strand_; }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  std::uint32_t player() const noexcept { return player_; }

private:
  void read();
  void on_read(const std::error_code &ec, std::size_t n);
  void handle(const proto::frame &f);
  void handle_login(const proto::login_msg &m);
  void send(const proto::bytes &frame);
  void write();
  void housekeeping();
  void transfer(std::shared_ptr<zone> target, std::shared_ptr<zone> home);
  void finish_close();
  std::string describe() const;

  shard_server &srv_;
  asio::any_io_executor strand_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::uint64_t serial_;
  std::string peer_;
  std::optional<proto::bytes> rbuf_, pending_, inflight_;
  std::size_t rlen_ = 0;
  bool writing_ = false;
  bool socket_open_ = true;
  std::atomic<bool> closed_{false};
  bool final_frame_ = false; ///< a BYE/ERROR is queued: shut the socket down after it
  steady::time_point close_deadline_{};
  steady::time_point last_read_{}, write_started_{}, tokens_at_{};
  double tokens_ = 0;
  bool logged_in_ = false;
  std::string name_;
  std::uint32_t player_ = 0;
  std::shared_ptr<zone> zone_, home_;
  bool in_transit_ = false;
};

/// Counters and histograms the report is made of. All atomics: any strand updates them.
struct shard_metrics {
  std::atomic<std::uint64_t> accepted{0}, served{0}, live{0}, peak_live{0}, sockets_open{0};
  std::atomic<std::uint64_t> frames_in{0}, frames_out{0}, bytes_in{0}, bytes_out{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  std::array<std::atomic<std::uint64_t>, proto::close_reason_slots> closes{};
  std::atomic<std::uint64_t> instances_opened{0}, instances_closed{0}, instances_live{0},
      peak_instances{0}, instance_refused{0};
  std::atomic<std::uint64_t> transfers{0}, whispers{0}, chats{0}, moves{0}, moves_dropped{0};
  std::atomic<std::uint64_t> release_all_calls{0}, release_all_spans{0}, release_all_ns{0};
  std::atomic<std::uint64_t> zones_destroyed_by_objects{0};
  histogram tick_persistent, tick_instance, release_all_time;
};

/// A memory snapshot (baseline, quiescent points).
struct memory_point {
  double t_s = 0;
  std::uint64_t live_blocks = 0, live_bytes = 0, committed_bytes = 0, rss_kb = 0;
  bool valid = false;
};

class shard_server {
public:
  shard_server(asio::io_context &io, const server_options &opts,
               std::shared_ptr<spdlog::logger> log);
  ~shard_server();
  /// Builds the world and binds the acceptor; after a warm-up the baseline is measured,
  /// sessions are accepted and `listening(port)` runs. Throws std::system_error when the
  /// address cannot be bound.
  void start(std::function<void(std::uint16_t)> listening);
  /// Graceful shutdown (from the signal handler or --duration): sessions told, zones
  /// stopped, report written; `done` runs once everything has stopped.
  void shutdown(std::function<void()> done);

  // --- used by zones and sessions ---------------------------------------------------
  const server_options &opts() const noexcept { return opts_; }
  spdlog::logger &log() noexcept { return *log_; }
  shard_metrics &metrics() noexcept { return m_; }
  asio::io_context &io() noexcept { return io_; }
  std::pmr::memory_resource *memory() const noexcept { return mr_; }
  bool kit() const noexcept { return !opts_.plain; }
  ramalloc::io::strand_options strand_options() const noexcept {
    ramalloc::io::strand_options so;
    so.reclaim_budget = opts_.strand_budget;
    so.handlers_per_step = opts_.strand_step;
    return so;
  }
  std::shared_ptr<zone> persistent_zone(std::size_t i) const { return zones_.at(i); }
  std::size_t zone_count() const noexcept { return zones_.size(); }
  /// Home zone for a new player.
  std::shared_ptr<zone> home_for(std::string_view name) const;
  std::uint32_t next_player_id() { return next_player_.fetch_add(1); }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  /// Directory of logged-in players (whisper routing, unique names).
  bool claim_name(const std::string &name, const std::shared_ptr<session> &s);
  void release_name(const std::string &name, const session *s);
  std::shared_ptr<session> find_player(std::string_view name);
  void session_closed(const session *s);

  /// Instances: reserve a slot (joining an open instance or opening one); null when the
  /// limit is reached.
  std::shared_ptr<zone> reserve_instance(std::uint16_t dungeon);
  void release_slot(zone &z);
  /// Asked by an instance on its tick: may it close now? (Unregisters it if so.)
  bool try_close_instance(zone &z, bool expired);
  void zone_finalized(zone &z);

  std::vector<memory_point> quiescent_points() const;
  memory_point baseline() const;
  std::string report_json() const;

private:
  void accept();
  void monitor();
  void sample();
  void measure(std::function<void(memory_point)> done);
  void shutdown_step(std::function<void()> done, steady::time_point deadline, int phase);
  memory_point snapshot() const;

  asio::io_context &io_;
  server_options opts_;
  std::shared_ptr<spdlog::logger> log_;
  std::pmr::memory_resource *mr_;
  shard_metrics m_;
  asio::any_io_executor ctl_; ///< a plain strand: acceptor, monitor, sampler, shutdown
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer monitor_timer_, sample_timer_;
  std::atomic<bool> stopped_sampling_{false};
  std::unique_ptr<ramalloc::io::stats_reporter> reporter_;
  std::vector<std::shared_ptr<zone>> zones_;
  std::vector<std::optional<heap_strand_t>> group_heaps_;
  std::vector<asio::any_io_executor> groups_;
  std::atomic<std::uint32_t> next_player_{1};
  std::atomic<std::uint32_t> next_zone_uid_{1};
  std::atomic<std::uint64_t> next_session_{1};
  std::atomic<bool> stopping_{false};
  steady::time_point started_;

  mutable std::mutex dir_mu_;
  std::unordered_map<std::string, std::weak_ptr<session>> directory_;
  std::unordered_map<const session *, std::weak_ptr<session>> sessions_;

  mutable std::mutex instances_mu_;
  std::vector<std::shared_ptr<zone>> instances_; ///< registered (joinable) instances
  std::vector<std::shared_ptr<zone>> closing_;   ///< unregistered, not finalized yet

  mutable std::mutex points_mu_;
  memory_point baseline_;
  std::vector<memory_point> quiescent_;
  std::vector<std::pair<double, std::uint64_t>> rss_series_;
  bool had_sessions_ = false, measured_quiet_ = false, measuring_ = false;
  int quiet_checks_ = 0;
  std::uint64_t activity_at_last_measure_ = ~0ull;
};

/// --plain turns the session's io_allocator into Asio's recycling allocator.
void set_kit_allocators(bool on);
/// Called once the workers have stopped: a frame freed afterwards (by a handler the
/// io_context destroys unrun) no longer wakes its zone.
void set_tearing_down();

/// Resident set size of this process in KiB (/proc/self/statm), and its peak (VmHWM).
std::uint64_t rss_kb();
std::uint64_t peak_rss_kb();

} // namespace shard
