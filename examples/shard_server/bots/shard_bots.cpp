// shard_bots: load bots (and misbehaving clients) for shard_server.
//
//   shard_bots --server HOST:PORT --bots N --duration S [--profile mixed|churn|idle]
//              [--bad-clients K] [--threads T] [--seed X]
//
// Each bot logs in, moves, chats (zone-wide and whispers), changes zones, enters and
// leaves instances, logs out and reconnects (session churn), and measures the round
// trip of its pings (PING -> PONG) and moves (MOVE -> MOVE_ACK, which includes the wait
// for the zone's next tick). Bad clients each break one rule (docs/shard-protocol.md,
// "Limits") and check that the server closes them with the documented reason. One JSON
// report goes to stdout at the end; the exit status is 0 only when every bot was served
// without an error and every bad client was closed as documented.
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../histogram.hpp"
#include "../protocol.hpp"

namespace {

using asio::ip::tcp;
using steady = std::chrono::steady_clock;
namespace proto = shard::proto;

struct options {
  std::string host = "127.0.0.1";
  std::string port;
  std::size_t bots = 10;
  double duration_s = 5;
  std::string profile = "mixed";
  std::size_t bad_clients = 0;
  std::size_t threads = 2;
  std::uint64_t seed = 1;
  std::uint32_t timeout_ms = 5000;
};

/// What a profile does, per action slot.
struct profile {
  std::chrono::milliseconds action_every{100};
  std::chrono::milliseconds ping_every{250};
  int move = 60, chat = 8, whisper = 4, change_zone = 4, enter_instance = 5, leave_instance = 12,
      reconnect = 2;
};

bool make_profile(const std::string &name, profile &p) {
  if (name == "mixed")
    return true;
  if (name == "churn") {
    p.action_every = std::chrono::milliseconds(80);
    p.change_zone = 10;
    p.enter_instance = 15;
    p.leave_instance = 20;
    p.reconnect = 8;
    return true;
  }
  if (name == "idle") {
    p.action_every = std::chrono::milliseconds(500);
    p.move = 90;
    p.chat = p.whisper = p.change_zone = p.enter_instance = p.reconnect = 0;
    p.leave_instance = 10;
    return true;
  }
  return false;
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
          .count());
}

/// Totals over all bots (atomics: bots run on several threads).
struct totals {
  std::atomic<std::uint64_t> sessions{0}, logins{0}, msgs_out{0}, msgs_in{0}, bytes_out{0},
      bytes_in{0}, updates{0}, entities_seen{0}, moves{0}, pings{0}, chats_sent{0}, chats_in{0},
      whispers{0}, zone_changes{0}, instances_entered{0}, reconnects{0}, notices{0}, kicked{0};
  std::atomic<std::uint64_t> err_timeout{0}, err_disconnect{0}, err_connect{0}, err_malformed{0},
      err_error_frame{0}, err_unexpected{0};
  shard::histogram ping_rtt, move_rtt;
  std::mutex mu;
  std::vector<std::string> first_errors; // the first few, for the report
  void error(const std::string &what) {
    std::lock_guard lk(mu);
    if (first_errors.size() < 20)
      first_errors.push_back(what);
  }
};

/// A reader of server frames over a socket, shared by bots and bad clients.
struct frame_buffer {
  std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(proto::max_server_frame + 4096);
  std::size_t len = 0;
};

// --- the bot ------------------------------------------------------------------------

class bot : public std::enable_shared_from_this<bot> {
public:
  bot(asio::io_context &io, const options &o, const profile &p, totals &t, std::size_t index,
      tcp::endpoint ep, steady::time_point end, std::function<void()> done)
      : strand_(asio::make_strand(io)), socket_(strand_), action_timer_(strand_),
        ping_timer_(strand_), o_(o), p_(p), t_(t), index_(index), ep_(ep), end_(end),
        done_(std::move(done)), rng_(o.seed * 1000003u + index),
        name_("bot-" + std::to_string(index)) {}

  void start() {
    asio::post(strand_, [self = shared_from_this()] { self->connect(); });
  }

private:
  enum class wait { none, move, zone, logout, login };

  void fail(std::atomic<std::uint64_t> &counter, const std::string &what) {
    counter.fetch_add(1, std::memory_order_relaxed);
    t_.error(name_ + ": " + what);
  }

  void connect() {
    // A new connection: handlers of the previous one (a write aborted by the close, say)
    // may still run, and must not touch this one.
    ++gen_;
    socket_ = tcp::socket(strand_);
    rb_.len = 0;
    out_.clear();
    writing_ = false;
    pings_.clear();
    waiting_ = wait::login;
    wait_since_ = steady::now();
    socket_.async_connect(ep_, [self = shared_from_this(), gen = gen_](const std::error_code &ec) {
      if (gen != self->gen_)
        return;
      if (ec) {
        self->fail(self->t_.err_connect, "connect: " + ec.message());
        self->finish();
        return;
      }
      self->socket_.set_option(tcp::no_delay(true));
      self->t_.sessions.fetch_add(1, std::memory_order_relaxed);
      proto::bytes f;
      proto::encode_login(f, self->name_);
      self->send(std::move(f));
      self->read();
      self->schedule_action();
      self->schedule_ping();
    });
  }

  void send(proto::bytes f) {
    t_.msgs_out.fetch_add(1, std::memory_order_relaxed);
    t_.bytes_out.fetch_add(f.size(), std::memory_order_relaxed);
    out_.push_back(std::move(f));
    if (!writing_)
      write();
  }

  void write() {
    writing_ = true;
    asio::async_write(
        socket_, asio::buffer(out_.front()),
        [self = shared_from_this(), gen = gen_](const std::error_code &ec, std::size_t) {
          if (gen != self->gen_)
            return;
          self->writing_ = false;
          if (ec) {
            self->lost("write: " + ec.message());
            return;
          }
          self->out_.pop_front();
          if (!self->out_.empty())
            self->write();
        });
  }

  void read() {
    socket_.async_read_some(
        asio::buffer(rb_.buf.data() + rb_.len, rb_.buf.size() - rb_.len),
        [self = shared_from_this(), gen = gen_](const std::error_code &ec, std::size_t n) {
          if (gen == self->gen_)
            self->on_read(ec, n);
        });
  }

  void on_read(const std::error_code &ec, std::size_t n) {
    if (ec) {
      if (waiting_ == wait::logout && logout_done_)
        return; // we closed it ourselves after BYE
      lost(ec == asio::error::eof ? "server closed the connection" : ec.message());
      return;
    }
    t_.bytes_in.fetch_add(n, std::memory_order_relaxed);
    rb_.len += n;
    const proto::frame_decoder dec(proto::max_server_frame);
    std::size_t off = 0;
    for (;;) {
      proto::frame f;
      std::size_t used = 0;
      auto st = dec.next({rb_.buf.data() + off, rb_.len - off}, f, used);
      if (st == proto::frame_decoder::status::need_more)
        break;
      if (st != proto::frame_decoder::status::frame) {
        fail(t_.err_malformed, "bad frame header from the server");
        abort_connection();
        return;
      }
      off += used;
      t_.msgs_in.fetch_add(1, std::memory_order_relaxed);
      if (!on_frame(f))
        return;
    }
    std::memmove(rb_.buf.data(), rb_.buf.data() + off, rb_.len - off);
    rb_.len -= off;
    read();
  }

  /// Returns false when the connection was given up.
  bool on_frame(const proto::frame &f) {
    auto m = proto::parse_server(f);
    if (!m.ok) {
      fail(t_.err_malformed, "malformed server frame, opcode " + std::to_string(int(f.op)));
      abort_connection();
      return false;
    }
    auto now = steady::now();
    switch (m.op) {
    case proto::opcode::login_ok:
      t_.logins.fetch_add(1, std::memory_order_relaxed);
      player_ = m.u32a;
      zones_ = m.u16b;
      dungeons_ = m.u16c;
      break;
    case proto::opcode::zone_entered:
      if (waiting_ == wait::login || waiting_ == wait::zone || waiting_ == wait::move)
        waiting_ = wait::none; // a pending move is void in the new zone
      in_instance_ = m.u8a == 1;
      zone_index_ = m.u16a;
      x_ = m.x;
      y_ = m.y;
      entered_ = true;
      break;
    case proto::opcode::update:
      t_.updates.fetch_add(1, std::memory_order_relaxed);
      t_.entities_seen.fetch_add(m.count, std::memory_order_relaxed);
      break;
    case proto::opcode::move_ack:
      if (waiting_ == wait::move && m.u32a == move_seq_) {
        t_.move_rtt.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - wait_since_).count()));
        waiting_ = wait::none;
      }
      x_ = m.x;
      y_ = m.y;
      break;
    case proto::opcode::chat_msg:
      t_.chats_in.fetch_add(1, std::memory_order_relaxed);
      break;
    case proto::opcode::pong: {
      auto it = pings_.find(m.u32a);
      if (it == pings_.end() || it->second != m.u64a) {
        fail(t_.err_unexpected, "PONG for a ping never sent");
        break;
      }
      t_.ping_rtt.record(now_ns() - m.u64a);
      pings_.erase(it);
      break;
    }
    case proto::opcode::notice:
      t_.notices.fetch_add(1, std::memory_order_relaxed);
      if (m.u16a == static_cast<std::uint16_t>(proto::notice_code::instance_expired))
        t_.kicked.fetch_add(1, std::memory_order_relaxed);
      else if (waiting_ == wait::zone)
        waiting_ = wait::none; // refused (limit, in transit, already there)
      break;
    case proto::opcode::bye:
      if (waiting_ == wait::logout) {
        logout_done_ = true;
        close_socket();
        cancel_timers();
        after_logout();
        return false;
      }
      if (m.u16a == static_cast<std::uint16_t>(proto::bye_reason::server_shutdown))
        fail(t_.err_disconnect, "server shut down during the run");
      else
        fail(t_.err_unexpected, "BYE without LOGOUT");
      abort_connection();
      return false;
    case proto::opcode::error:
      fail(t_.err_error_frame, "ERROR " + std::to_string(m.u16a) + ": " + std::string(m.text));
      abort_connection();
      return false;
    default:
      fail(t_.err_unexpected, "unexpected opcode " + std::to_string(int(f.op)));
      break;
    }
    return true;
  }

  void schedule_ping() {
    ping_timer_.expires_after(p_.ping_every);
    ping_timer_.async_wait([self = shared_from_this()](const std::error_code &ec) {
      if (ec || self->stopped_ || self->waiting_ == wait::logout)
        return; // no ping after LOGOUT: the server answers it with BYE and closes
      auto now = now_ns();
      for (auto &[seq, sent] : self->pings_)
        if (now - sent > std::uint64_t{self->o_.timeout_ms} * 1'000'000) {
          self->fail(self->t_.err_timeout,
                     "no PONG in " + std::to_string(self->o_.timeout_ms) + " ms");
          self->abort_connection();
          return;
        }
      std::uint32_t seq = ++self->ping_seq_;
      self->pings_[seq] = now;
      proto::bytes f;
      proto::encode_ping(f, seq, now, {});
      self->t_.pings.fetch_add(1, std::memory_order_relaxed);
      self->send(std::move(f));
      self->schedule_ping();
    });
  }

  void schedule_action() {
    std::uniform_int_distribution<int> jitter(0, static_cast<int>(p_.action_every.count() / 2));
    action_timer_.expires_after(p_.action_every + std::chrono::milliseconds(jitter(rng_)));
    action_timer_.async_wait([self = shared_from_this()](const std::error_code &ec) {
      if (ec || self->stopped_)
        return;
      self->act();
    });
  }

  void act() {
    auto now = steady::now();
    if (waiting_ != wait::none) {
      if (now - wait_since_ > std::chrono::milliseconds(o_.timeout_ms)) {
        fail(t_.err_timeout, "no answer in " + std::to_string(o_.timeout_ms) + " ms (waiting " +
                                 std::to_string(int(waiting_)) + ")");
        abort_connection();
        return;
      }
      schedule_action();
      return;
    }
    if (now >= end_) {
      logout(false);
      return;
    }
    int total = p_.move + p_.chat + p_.whisper + p_.change_zone +
                (in_instance_ ? p_.leave_instance : p_.enter_instance) + p_.reconnect;
    int r = std::uniform_int_distribution<int>(0, std::max(total, 1) - 1)(rng_);
    proto::bytes f;
    if ((r -= p_.move) < 0) {
      std::uniform_int_distribution<int> d(-200, 200);
      move_seq_++;
      proto::encode_move(f, move_seq_, x_ + d(rng_), y_ + d(rng_));
      t_.moves.fetch_add(1, std::memory_order_relaxed);
      waiting_ = wait::move;
      wait_since_ = now;
    } else if ((r -= p_.chat) < 0) {
      proto::encode_chat(f, proto::chat_channel::zone, {},
                         "hello from " + name_ + " #" + std::to_string(++chats_));
      t_.chats_sent.fetch_add(1, std::memory_order_relaxed);
    } else if ((r -= p_.whisper) < 0) {
      std::string to =
          "bot-" + std::to_string(std::uniform_int_distribution<std::size_t>(0, o_.bots - 1)(rng_));
      proto::encode_chat(f, proto::chat_channel::whisper, to, "psst, " + to);
      t_.whispers.fetch_add(1, std::memory_order_relaxed);
    } else if ((r -= p_.change_zone) < 0) {
      if (zones_ < 2) {
        schedule_action();
        return;
      }
      std::uint16_t z =
          static_cast<std::uint16_t>(std::uniform_int_distribution<int>(0, zones_ - 1)(rng_));
      if (!in_instance_ && z == zone_index_)
        z = static_cast<std::uint16_t>((z + 1) % zones_);
      proto::encode_zone_index(f, proto::opcode::change_zone, z);
      t_.zone_changes.fetch_add(1, std::memory_order_relaxed);
      waiting_ = wait::zone;
      wait_since_ = now;
    } else if ((r -= (in_instance_ ? p_.leave_instance : p_.enter_instance)) < 0) {
      if (in_instance_) {
        proto::encode_empty(f, proto::opcode::leave_instance);
      } else {
        if (dungeons_ == 0) {
          schedule_action();
          return;
        }
        proto::encode_zone_index(
            f, proto::opcode::enter_instance,
            static_cast<std::uint16_t>(std::uniform_int_distribution<int>(0, dungeons_ - 1)(rng_)));
        t_.instances_entered.fetch_add(1, std::memory_order_relaxed);
      }
      waiting_ = wait::zone;
      wait_since_ = now;
    } else {
      logout(true);
      return;
    }
    send(std::move(f));
    schedule_action();
  }

  void logout(bool reconnect) {
    reconnect_ = reconnect;
    waiting_ = wait::logout;
    wait_since_ = steady::now();
    logout_done_ = false;
    ping_timer_.cancel();
    proto::bytes f;
    proto::encode_empty(f, proto::opcode::logout);
    send(std::move(f));
    // The BYE is awaited by the reader; a timer bounds the wait.
    action_timer_.expires_after(std::chrono::milliseconds(o_.timeout_ms));
    action_timer_.async_wait([self = shared_from_this()](const std::error_code &ec) {
      if (ec || self->logout_done_)
        return;
      self->fail(self->t_.err_timeout, "no BYE after LOGOUT");
      self->abort_connection();
    });
  }

  void after_logout() {
    if (reconnect_ && steady::now() < end_) {
      t_.reconnects.fetch_add(1, std::memory_order_relaxed);
      stopped_ = false;
      auto t = std::make_shared<asio::steady_timer>(strand_, std::chrono::milliseconds(20));
      t->async_wait([self = shared_from_this(), t](const std::error_code &) { self->connect(); });
      return;
    }
    finish();
  }

  void cancel_timers() {
    stopped_ = true;
    action_timer_.cancel();
    ping_timer_.cancel();
  }

  void lost(const std::string &why) {
    if (stopped_ && finished_)
      return;
    fail(t_.err_disconnect, why);
    abort_connection();
  }

  void abort_connection() {
    cancel_timers();
    close_socket();
    finish();
  }

  /// Closes this connection; its operations still in flight complete with an error
  /// and are ignored (they belong to an older connection number).
  void close_socket() {
    ++gen_;
    std::error_code ec;
    socket_.close(ec);
  }

  void finish() {
    if (finished_)
      return;
    finished_ = true;
    stopped_ = true;
    done_();
  }

  asio::strand<asio::io_context::executor_type> strand_;
  tcp::socket socket_;
  asio::steady_timer action_timer_, ping_timer_;
  const options &o_;
  const profile &p_;
  totals &t_;
  std::size_t index_;
  tcp::endpoint ep_;
  steady::time_point end_;
  std::function<void()> done_;
  std::mt19937_64 rng_;
  std::string name_;
  frame_buffer rb_;
  std::deque<proto::bytes> out_;
  bool writing_ = false;
  std::map<std::uint32_t, std::uint64_t> pings_;
  std::uint32_t ping_seq_ = 0, move_seq_ = 0, chats_ = 0, player_ = 0;
  std::uint16_t zones_ = 0, dungeons_ = 0, zone_index_ = 0;
  bool in_instance_ = false, entered_ = false, reconnect_ = false, logout_done_ = false;
  bool stopped_ = false, finished_ = false;
  std::uint64_t gen_ = 0; ///< connection number: handlers of older ones are ignored
  wait waiting_ = wait::none;
  steady::time_point wait_since_{};
  std::int32_t x_ = 0, y_ = 0;
};

// --- bad clients ----------------------------------------------------------------------

/// The misbehaviours, and the close reason(s) the server must log for each.
enum class bad_kind {
  malformed_frame,
  frame_too_large,
  unknown_opcode,
  not_logged_in,
  flood,
  slow_reader,
  half_open,
  abrupt_close,
  count
};
const char *bad_name(bad_kind k) {
  static const char *names[] = {"malformed_frame", "frame_too_large", "unknown_opcode",
                                "not_logged_in",   "flood",           "slow_reader",
                                "half_open",       "abrupt_close"};
  return names[static_cast<int>(k)];
}

struct bad_result {
  std::atomic<std::uint64_t> run{0}, ok{0};
};

/// One misbehaving client, run as a blocking sequence on its own thread: simple to read,
/// and its timing does not depend on the bots' event loop.
class bad_client {
public:
  bad_client(bad_kind kind, tcp::endpoint ep, std::size_t index, const options &o, totals &t)
      : kind_(kind), ep_(ep), index_(index), o_(o), t_(t) {}

  /// Returns true when the server behaved as documented.
  bool run() {
    asio::io_context io;
    tcp::socket s(io);
    std::error_code ec;
    s.open(tcp::v4(), ec);
    if (kind_ == bad_kind::slow_reader)
      s.set_option(asio::socket_base::receive_buffer_size(4096), ec);
    s.connect(ep_, ec);
    if (ec)
      return note("connect: " + ec.message());
    std::string name = "bad-" + std::to_string(index_);
    proto::bytes f;
    auto send = [&](const proto::bytes &b) {
      asio::write(s, asio::buffer(b), ec);
      return !ec;
    };
    switch (kind_) {
    case bad_kind::malformed_frame: {
      proto::encode_login(f, name);
      proto::frame_writer w(f, proto::opcode::move); // MOVE must have 12 payload bytes
      w.u32(1);
      w.u8(7);
      w.finish();
      send(f);
      return expect_error(s, proto::close_reason::malformed_frame);
    }
    case bad_kind::frame_too_large: {
      proto::encode_login(f, name);
      f.push_back(0x60); // length 60000
      f.push_back(0xEA);
      f.push_back(static_cast<std::uint8_t>(proto::opcode::chat));
      f.resize(f.size() + 64, 'x');
      send(f);
      return expect_error(s, proto::close_reason::frame_too_large);
    }
    case bad_kind::unknown_opcode: {
      proto::encode_login(f, name);
      proto::frame_writer w(f, static_cast<proto::opcode>(0x42));
      w.u32(0xDEADBEEF);
      w.finish();
      send(f);
      return expect_error(s, proto::close_reason::unknown_opcode);
    }
    case bad_kind::not_logged_in:
      proto::encode_move(f, 1, 10, 10);
      send(f);
      return expect_error(s, proto::close_reason::not_logged_in);
    case bad_kind::flood: {
      proto::encode_login(f, name);
      for (int i = 0; i < 3000; ++i)
        proto::encode_ping(f, static_cast<std::uint32_t>(i), 0, {});
      send(f); // may fail midway once the server has closed: that is the point
      return expect_error(s, proto::close_reason::flood);
    }
    case bad_kind::slow_reader: {
      // Never reads; keeps asking for 256-byte PONGs (180/s, under the default flood
      // rate) until the server gives up on it: its send queue over the cap, or a write
      // that cannot finish.
      proto::encode_login(f, name);
      send(f);
      std::vector<std::uint8_t> pad(proto::max_ping_pad, 0xAB);
      auto deadline = steady::now() + std::chrono::seconds(30);
      std::uint32_t seq = 0;
      while (steady::now() < deadline) {
        proto::bytes b;
        for (int i = 0; i < 9; ++i)
          proto::encode_ping(b, ++seq, 0, pad);
        if (!send(b))
          return true;                                              // the server closed us
        std::this_thread::sleep_for(std::chrono::milliseconds(50)); // pacing below the flood rate
      }
      return note("still connected after 30 s without reading");
    }
    case bad_kind::half_open:
      f.push_back(0x05); // half a header, then silence
      send(f);
      return expect_error(s, proto::close_reason::idle_timeout);
    case bad_kind::abrupt_close: {
      proto::encode_login(f, name);
      proto::encode_move(f, 1, 100, 100);
      send(f);
      std::uint8_t b[64];
      s.read_some(asio::buffer(b), ec);                     // LOGIN_OK arrived: the session is live
      s.set_option(asio::socket_base::linger(true, 0), ec); // close with a RST
      s.close(ec);
      return true;
    }
    case bad_kind::count:
      break;
    }
    return false;
  }

private:
  bool note(const std::string &why) {
    t_.error(std::string("bad client ") + bad_name(kind_) + ": " + why);
    return false;
  }

  /// Reads until the connection ends; true when an ERROR with `code` came before it.
  bool expect_error(tcp::socket &s, proto::close_reason code) {
    frame_buffer rb;
    const proto::frame_decoder dec(proto::max_server_frame);
    std::error_code ec;
    auto deadline = steady::now() + std::chrono::seconds(30);
    while (steady::now() < deadline) {
      std::size_t n = s.read_some(asio::buffer(rb.buf.data() + rb.len, rb.buf.size() - rb.len), ec);
      if (ec)
        return note("connection ended without ERROR " + std::to_string(int(code)));
      rb.len += n;
      std::size_t off = 0;
      for (;;) {
        proto::frame f;
        std::size_t used = 0;
        if (dec.next({rb.buf.data() + off, rb.len - off}, f, used) !=
            proto::frame_decoder::status::frame)
          break;
        off += used;
        auto m = proto::parse_server(f);
        if (m.ok && m.op == proto::opcode::error) {
          if (m.u16a != static_cast<std::uint16_t>(code))
            return note("ERROR " + std::to_string(m.u16a) + " instead of " +
                        std::to_string(int(code)));
          // The server must close after the ERROR.
          while (!ec)
            s.read_some(asio::buffer(rb.buf), ec);
          return true;
        }
      }
      std::memmove(rb.buf.data(), rb.buf.data() + off, rb.len - off);
      rb.len -= off;
    }
    return note("no ERROR within 30 s");
  }

  bad_kind kind_;
  tcp::endpoint ep_;
  std::size_t index_;
  const options &o_;
  totals &t_;
};

std::string rtt_json(const shard::histogram &h) {
  return shard::histogram_json(h);
}

bool parse(int argc, char **argv, options &o, std::string &err) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      err = "help";
      return false;
    }
    if (i + 1 >= argc) {
      err = "option " + a + " needs a value (or is unknown; try --help)";
      return false;
    }
    std::string v = argv[++i];
    char *end = nullptr;
    auto number = [&](double lo, double hi, double &out) {
      out = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || out < lo || out > hi) {
        err = "bad value '" + v + "' for " + a;
        return false;
      }
      return true;
    };
    double d = 0;
    if (a == "--server") {
      auto colon = v.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
        err = "--server wants HOST:PORT, got '" + v + "'";
        return false;
      }
      o.host = v.substr(0, colon);
      o.port = v.substr(colon + 1);
    } else if (a == "--bots") {
      if (!number(0, 100000, d))
        return false;
      o.bots = static_cast<std::size_t>(d);
    } else if (a == "--duration") {
      if (!number(0, 1e6, d))
        return false;
      o.duration_s = d;
    } else if (a == "--profile") {
      o.profile = v;
    } else if (a == "--bad-clients") {
      if (!number(0, 10000, d))
        return false;
      o.bad_clients = static_cast<std::size_t>(d);
    } else if (a == "--threads") {
      if (!number(1, 64, d))
        return false;
      o.threads = static_cast<std::size_t>(d);
    } else if (a == "--seed") {
      if (!number(0, 1e18, d))
        return false;
      o.seed = static_cast<std::uint64_t>(d);
    } else if (a == "--timeout-ms") {
      if (!number(10, 1e7, d))
        return false;
      o.timeout_ms = static_cast<std::uint32_t>(d);
    } else {
      err = "unknown option " + a + " (try --help)";
      return false;
    }
  }
  if (o.port.empty()) {
    err = "--server HOST:PORT is required";
    return false;
  }
  return true;
}

constexpr const char *usage = R"(usage: shard_bots --server HOST:PORT [options]

Load bots for shard_server (protocol: docs/shard-protocol.md). Prints one JSON report on
stdout; exits 0 only if every bot was served without an error and every bad client was
closed by the server as documented.

  --server HOST:PORT   the shard (required)
  --bots N             bots (default 10); each is bot-<i>
  --duration S         seconds of play before the bots log out (default 5)
  --profile NAME       mixed (default), churn (more zone changes, instances,
                       reconnects) or idle (slow movers)
  --bad-clients K      misbehaving clients, cycling through: malformed_frame,
                       frame_too_large, unknown_opcode, not_logged_in, flood,
                       slow_reader, half_open, abrupt_close
  --threads T          event-loop threads (default 2)
  --seed X             random seed (default 1)
  --timeout-ms N       a request unanswered this long is an error (default 5000)
)";

} // namespace

int main(int argc, char **argv) {
  options o;
  std::string err;
  if (!parse(argc, argv, o, err)) {
    if (err == "help") {
      std::fputs(usage, stdout);
      return 0;
    }
    std::fprintf(stderr, "shard_bots: %s\n", err.c_str());
    return 2;
  }
  profile prof;
  if (!make_profile(o.profile, prof)) {
    std::fprintf(stderr, "shard_bots: unknown profile '%s' (mixed, churn, idle)\n",
                 o.profile.c_str());
    return 2;
  }
  asio::io_context io;
  tcp::endpoint ep;
  {
    std::error_code ec;
    tcp::resolver res(io);
    auto r = res.resolve(o.host, o.port, ec);
    if (ec || r.empty()) {
      std::fprintf(stderr, "shard_bots: cannot resolve %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                   ec.message().c_str());
      return 2;
    }
    ep = *r.begin();
  }

  totals t;
  auto t0 = steady::now();
  auto end = t0 + std::chrono::milliseconds(static_cast<long long>(o.duration_s * 1000));
  std::atomic<std::size_t> running{o.bots};
  auto work = asio::make_work_guard(io);
  std::vector<std::shared_ptr<bot>> bots;
  for (std::size_t i = 0; i < o.bots; ++i) {
    bots.push_back(std::make_shared<bot>(io, o, prof, t, i, ep, end, [&] {
      if (running.fetch_sub(1) == 1)
        work.reset();
    }));
    bots.back()->start();
  }
  if (o.bots == 0)
    work.reset();

  // Bad clients: blocking sequences on threads of their own, started a little after the
  // bots so the server is busy when they misbehave.
  std::array<bad_result, static_cast<std::size_t>(bad_kind::count)> bad{};
  std::vector<std::thread> bad_threads;
  for (std::size_t i = 0; i < o.bad_clients; ++i) {
    auto kind = static_cast<bad_kind>(i % static_cast<std::size_t>(bad_kind::count));
    bad_threads.emplace_back([&, kind, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200 + 10 * i));
      bad_client c(kind, ep, i, o, t);
      bad[static_cast<std::size_t>(kind)].run.fetch_add(1);
      if (c.run())
        bad[static_cast<std::size_t>(kind)].ok.fetch_add(1);
    });
  }

  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < o.threads; ++i)
    threads.emplace_back([&] { io.run(); });
  for (auto &th : threads)
    th.join();
  for (auto &th : bad_threads)
    th.join();
  double elapsed = std::chrono::duration<double>(steady::now() - t0).count();

  std::uint64_t errors = t.err_timeout + t.err_disconnect + t.err_connect + t.err_malformed +
                         t.err_error_frame + t.err_unexpected;
  std::uint64_t bad_failed = 0;
  std::string j = "{\"bots\":" + std::to_string(o.bots) + ",\"profile\":\"" + o.profile +
                  "\",\"duration_s\":" + std::to_string(o.duration_s) +
                  ",\"elapsed_s\":" + std::to_string(elapsed);
  auto num = [&](const char *k, std::uint64_t v) {
    j += ",\"" + std::string(k) + "\":" + std::to_string(v);
  };
  num("sessions", t.sessions);
  num("logins", t.logins);
  num("reconnects", t.reconnects);
  num("messages_sent", t.msgs_out);
  num("messages_received", t.msgs_in);
  num("bytes_sent", t.bytes_out);
  num("bytes_received", t.bytes_in);
  num("updates", t.updates);
  num("entities_seen", t.entities_seen);
  num("moves", t.moves);
  num("pings", t.pings);
  num("chats_sent", t.chats_sent);
  num("chats_received", t.chats_in);
  num("whispers", t.whispers);
  num("zone_changes", t.zone_changes);
  num("instance_entries", t.instances_entered);
  num("instance_kicks", t.kicked);
  num("notices", t.notices);
  num("protocol_errors", t.err_malformed + t.err_error_frame + t.err_unexpected);
  j += ",\"errors\":{\"total\":" + std::to_string(errors) +
       ",\"timeouts\":" + std::to_string(t.err_timeout) +
       ",\"disconnects\":" + std::to_string(t.err_disconnect) +
       ",\"connect\":" + std::to_string(t.err_connect) +
       ",\"malformed\":" + std::to_string(t.err_malformed) +
       ",\"error_frames\":" + std::to_string(t.err_error_frame) +
       ",\"unexpected\":" + std::to_string(t.err_unexpected) + "}";
  j += ",\"ping_rtt\":" + rtt_json(t.ping_rtt) + ",\"move_rtt\":" + rtt_json(t.move_rtt);
  j += ",\"ping_rtt_hist\":" + shard::histogram_buckets_json(t.ping_rtt);
  j += ",\"bad_clients\":{";
  for (std::size_t k = 0; k < bad.size(); ++k) {
    if (k)
      j += ",";
    bad_failed += bad[k].run - bad[k].ok;
    j += "\"" + std::string(bad_name(static_cast<bad_kind>(k))) +
         "\":{\"run\":" + std::to_string(bad[k].run) + ",\"ok\":" + std::to_string(bad[k].ok) + "}";
  }
  j += "},\"first_errors\":[";
  {
    std::lock_guard lk(t.mu);
    for (std::size_t i = 0; i < t.first_errors.size(); ++i) {
      std::string e;
      for (char c : t.first_errors[i])
        e += (c == '"' || c == '\\') ? '\'' : (static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
      j += (i ? ",\"" : "\"") + e + "\"";
    }
  }
  bool ok = errors == 0 && bad_failed == 0 && t.logins >= o.bots;
  j += std::string("],\"ok\":") + (ok ? "true" : "false") + "}";
  std::printf("%s\n", j.c_str());
  return ok ? 0 : 1;
}
