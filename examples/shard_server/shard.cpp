// Zones, sessions and the shard that holds them (see shard.hpp for who owns what).
#include "shard.hpp"

#include <asio/bind_allocator.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <unistd.h>

namespace shard {

namespace {
/// Set once at start-up (before any session exists) from --plain.
std::atomic<bool> kit_allocators{true};
/// Set by main once the workers have stopped: nothing may be posted any more.
std::atomic<bool> tearing_down{false};

std::uint64_t ns_between(steady::time_point a, steady::time_point b) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
}
double seconds_since(steady::time_point a) {
  return std::chrono::duration<double>(steady::now() - a).count();
}
std::uint64_t read_status_kb(const char *key) {
  FILE *f = std::fopen("/proc/self/status", "r");
  if (f == nullptr)
    return 0;
  char line[256];
  std::uint64_t v = 0;
  std::size_t klen = std::strlen(key);
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, key, klen) == 0) {
      v = std::strtoull(line + klen, nullptr, 10);
      break;
    }
  std::fclose(f);
  return v;
}
} // namespace

std::uint64_t rss_kb() {
  FILE *f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    return 0;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2)
    return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) / 1024;
}

std::uint64_t peak_rss_kb() {
  return read_status_kb("VmHWM:");
}

void set_kit_allocators(bool on) {
  kit_allocators.store(on, std::memory_order_relaxed);
}
void set_tearing_down() {
  tearing_down.store(true, std::memory_order_release);
}

template <typename T>
T *io_allocator<T>::allocate(std::size_t n) {
  if (kit_allocators.load(std::memory_order_relaxed))
    return ramalloc::io::handler_allocator<T>().allocate(n);
  return asio::recycling_allocator<T>().allocate(n);
}
template <typename T>
void io_allocator<T>::deallocate(T *p, std::size_t n) noexcept {
  if (kit_allocators.load(std::memory_order_relaxed))
    ramalloc::io::handler_allocator<T>().deallocate(p, n);
  else
    asio::recycling_allocator<T>().deallocate(p, n);
}

// --- zone_frame -------------------------------------------------------------------

zone_frame::zone_frame(proto::bytes bytes, std::shared_ptr<zone> owner)
    : bytes_(std::move(bytes)), owner_(std::move(owner)) {
  if (owner_)
    owner_->outstanding_.fetch_add(1, std::memory_order_relaxed);
}

zone_frame::~zone_frame() {
  bytes_.reset(); // the remote free into the zone's heap happens here
  if (owner_)
    owner_->frame_freed();
}

// --- zone ---------------------------------------------------------------------------

zone::zone(shard_server &srv, zone_kind kind, std::uint16_t index, std::uint32_t uid)
    : srv_(srv), kind_(kind), index_(index), uid_(uid),
      strand_(srv.kit() ? asio::any_io_executor(heap_strand_.emplace(
                              ramalloc::io::make_heap_strand(srv.io(), srv.strand_options())))
                        : asio::any_io_executor(asio::make_strand(srv.io()))),
      timer_(strand_), created_(steady::now()) {}

zone::~zone() = default;

void zone::start() {
  asio::post(strand_, [z = self()] {
    const auto &o = z->srv_.opts();
    zone_params p;
    if (z->kind_ == zone_kind::persistent) {
      p.size = 4096;
      p.npcs = o.npcs;
    } else {
      p.size = 1024;
      p.npcs = o.instance_npcs;
    }
    p.seed = z->uid_;
    // The world and everything in it comes from the zone strand's heap (kit mode).
    std::pmr::memory_resource *mr = z->srv_.memory();
    void *mem = mr->allocate(sizeof(zone_world), alignof(zone_world));
    z->world_ = new (mem) zone_world(mr, p);
    z->ticking_ = true;
    z->next_tick_ = steady::now();
    z->schedule();
  });
}

void zone::schedule() {
  auto period = std::chrono::nanoseconds(1'000'000'000ll / srv_.opts().tick_hz);
  next_tick_ += period;
  auto now = steady::now();
  if (next_tick_ < now) // we fell behind: skip the missed ticks instead of bunching them
    next_tick_ = now;
  timer_.expires_at(next_tick_);
  timer_.async_wait([z = self()](const std::error_code &) { z->on_tick(); });
}

void zone::on_tick() {
  if (closing_.load(std::memory_order_acquire)) {
    ticking_ = false;
    maybe_finalize();
    return;
  }
  auto t0 = steady::now();
  {
    std::pmr::vector<tick_output> out(srv_.memory());
    out.reserve(members_.size());
    world_->tick(out, srv_.memory());
    for (auto &o : out)
      deliver(static_cast<std::uint32_t>(o.cookie), std::move(o.frame));
  }
  auto t1 = steady::now();
  auto &m = srv_.metrics();
  (kind_ == zone_kind::persistent ? m.tick_persistent : m.tick_instance).record(ns_between(t0, t1));

  if (kind_ == zone_kind::instance) {
    bool expired = t1 - created_ > std::chrono::milliseconds(srv_.opts().instance_lifetime_ms);
    if (expired && !members_.empty()) {
      // Time is up: everyone goes back where they came from.
      std::vector<std::pair<std::uint32_t, zone_member>> kicked(members_.begin(), members_.end());
      for (auto &[player, mem] : kicked) {
        asio::post(mem.s->executor(), [s = mem.s] {
          s->notice(proto::notice_code::instance_expired, "instance time limit reached");
        });
        leave_and_forward(player, mem.home, mem.s, mem.home);
      }
    }
    if (members_.empty() && srv_.try_close_instance(*this, expired)) {
      closing_.store(true, std::memory_order_release);
      ticking_ = false;
      maybe_finalize();
      return;
    }
  }
  schedule();
}

void zone::deliver(std::uint32_t player, proto::bytes frame) {
  auto it = members_.find(player);
  if (it == members_.end())
    return;
  zone_frame zf(std::move(frame), self());
  asio::post(it->second.s->executor(),
             [s = it->second.s, zf = std::move(zf)] { s->deliver(zf.bytes()); });
}

void zone::join(std::shared_ptr<session> s, std::shared_ptr<zone> home, std::uint32_t player) {
  if (s->closed() || world_ == nullptr || closing_.load()) {
    if (kind_ == zone_kind::instance)
      srv_.release_slot(*this);
    if (!s->closed() && home && home.get() != this) // closing under the player: go home
      asio::post(home->executor(), [home, s, player] { home->join(s, home, player); });
    return;
  }
  auto x = static_cast<std::int32_t>((player * 7919u) % static_cast<std::uint32_t>(world_->size()));
  auto y =
      static_cast<std::int32_t>((player * 104729u) % static_cast<std::uint32_t>(world_->size()));
  if (!world_->add_player(player, player, x, y))
    return;
  members_[player] = zone_member{s, std::move(home)};
  srv_.metrics().transfers.fetch_add(1, std::memory_order_relaxed);
  asio::post(s->executor(), [s, z = self(), x, y] { s->on_entered(z, x, y); });
}

void zone::leave_and_forward(std::uint32_t player, std::shared_ptr<zone> target,
                             std::shared_ptr<session> s, std::shared_ptr<zone> home) {
  bool found = members_.erase(player) > 0;
  if (found) {
    if (world_ != nullptr)
      world_->remove_player(player);
    if (kind_ == zone_kind::instance)
      srv_.release_slot(*this);
    asio::post(target->executor(), [target, s = std::move(s), home = std::move(home), player] {
      target->join(s, home, player);
    });
  } else if (target->kind() == zone_kind::instance) {
    srv_.release_slot(*target); // the slot reserved for a player who is not here any more
  }
}

void zone::remove(std::uint32_t player) {
  if (members_.erase(player) == 0)
    return;
  if (world_ != nullptr)
    world_->remove_player(player);
  if (kind_ == zone_kind::instance)
    srv_.release_slot(*this);
}

void zone::move(std::uint32_t player, std::uint32_t seq, std::int32_t x, std::int32_t y) {
  if (world_ == nullptr || !world_->has_player(player))
    return;
  std::uint32_t old_seq = 0;
  std::int32_t px = 0, py = 0;
  if (world_->set_move(player, seq, x, y, old_seq, px, py)) {
    // Two MOVEs in one tick: the older one is acked now with the position it reached.
    proto::bytes f(srv_.memory());
    proto::encode_move_ack(f, old_seq, px, py);
    deliver(player, std::move(f));
  }
}

void zone::chat(std::pmr::string from, std::pmr::string text) {
  if (world_ == nullptr)
    return;
  for (auto &[player, mem] : members_) {
    proto::bytes f(srv_.memory());
    proto::encode_chat_msg(f, proto::chat_channel::zone, from, text);
    deliver(player, std::move(f));
  }
}

void zone::stop() {
  asio::post(strand_, [z = self()] {
    z->closing_.store(true, std::memory_order_release);
    z->members_.clear();
    if (z->ticking_)
      z->timer_.cancel(); // on_tick runs once more, sees closing_ and finalizes
    else
      z->maybe_finalize();
  });
}

void zone::flush_heap(std::function<void()> done) {
  asio::post(strand_, [z = self(), done = std::move(done)] {
    if (z->heap_strand_)
      ramalloc::flush(); // the strand's heap is the current heap here
    done();
  });
}

void zone::frame_freed() noexcept {
  if (outstanding_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      closing_.load(std::memory_order_acquire) && !tearing_down.load(std::memory_order_acquire)) {
    try {
      asio::post(strand_, [z = self()] { z->maybe_finalize(); });
    } catch (...) {
      // Only at process teardown (the context is gone); nothing is left to release.
    }
  }
}

void zone::maybe_finalize() {
  if (finalized_.load() || !closing_.load() || ticking_ ||
      outstanding_.load(std::memory_order_acquire) != 0)
    return;
  members_.clear();
  auto &m = srv_.metrics();
  if (heap_strand_ && world_ != nullptr) {
    // The zone dies whole: every block of its heap (world, entities, grid, scratch)
    // goes back at once, O(pages), without running a destructor.
    auto t0 = steady::now();
    std::size_t spans = heap_strand_->heap().release_all();
    auto ns = ns_between(t0, steady::now());
    m.release_all_calls.fetch_add(1, std::memory_order_relaxed);
    m.release_all_spans.fetch_add(spans, std::memory_order_relaxed);
    m.release_all_ns.fetch_add(ns, std::memory_order_relaxed);
    m.release_all_time.record(ns);
  } else if (world_ != nullptr) {
    world_->~zone_world(); // --plain: object by object, as any allocator needs
    srv_.memory()->deallocate(world_, sizeof(zone_world), alignof(zone_world));
    m.zones_destroyed_by_objects.fetch_add(1, std::memory_order_relaxed);
  }
  world_ = nullptr;
  finalized_.store(true, std::memory_order_release);
  srv_.zone_finalized(*this);
}

// --- session ------------------------------------------------------------------------

session::session(shard_server &srv, asio::ip::tcp::socket socket, asio::any_io_executor strand,
                 std::uint64_t serial)
    : srv_(srv), strand_(std::move(strand)), socket_(std::move(socket)), timer_(strand_),
      serial_(serial) {
  std::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
}

session::~session() = default;

std::string session::describe() const {
  return "session " + std::to_string(serial_) + " (" + peer_ +
         (name_.empty() ? std::string() : ", '" + name_ + "'") + ")";
}

void session::start() {
  asio::post(strand_, [s = shared_from_this()] {
    // Buffers come from the session group strand's heap (kit mode).
    auto *mr = s->srv_.memory();
    s->rbuf_.emplace(4096, std::uint8_t{0}, mr);
    s->pending_.emplace(mr);
    s->inflight_.emplace(mr);
    s->last_read_ = s->tokens_at_ = steady::now();
    s->tokens_ = s->srv_.opts().flood_burst;
    if (s->closed_) { // closed before it started (server full, shutting down)
      s->finish_close();
      return;
    }
    s->read();
    s->housekeeping();
  });
}

void session::read() {
  socket_.async_read_some(
      asio::buffer(rbuf_->data() + rlen_, rbuf_->size() - rlen_),
      asio::bind_allocator(io_allocator<void>{},
                           [s = shared_from_this()](const std::error_code &ec, std::size_t n) {
                             s->on_read(ec, n);
                           }));
}

void session::on_read(const std::error_code &ec, std::size_t n) {
  if (closed_)
    return;
  if (ec) {
    if (ec == asio::error::operation_aborted)
      return;
    if (ec == asio::error::eof)
      close(proto::close_reason::peer_closed, "end of stream without LOGOUT");
    else
      close(proto::close_reason::connection_reset, ec.message());
    return;
  }
  auto &m = srv_.metrics();
  m.bytes_in.fetch_add(n, std::memory_order_relaxed);
  auto now = steady::now();
  last_read_ = now;
  rlen_ += n;
  const proto::frame_decoder decoder(proto::max_client_frame);
  std::size_t off = 0;
  while (!closed_) {
    proto::frame f;
    std::size_t used = 0;
    auto st = decoder.next({rbuf_->data() + off, rlen_ - off}, f, used);
    if (st == proto::frame_decoder::status::need_more)
      break;
    if (st == proto::frame_decoder::status::too_large) {
      std::size_t len = (*rbuf_)[off] | ((*rbuf_)[off + 1] << 8);
      close(proto::close_reason::frame_too_large, "frame length " + std::to_string(len) + " > " +
                                                      std::to_string(proto::max_client_frame));
      return;
    }
    if (st == proto::frame_decoder::status::empty_frame) {
      close(proto::close_reason::malformed_frame, "zero-length frame");
      return;
    }
    off += used;
    m.frames_in.fetch_add(1, std::memory_order_relaxed);
    // Token bucket: flood_rate messages/s sustained, flood_burst at once.
    const auto &o = srv_.opts();
    tokens_ =
        std::min(o.flood_burst,
                 tokens_ + o.flood_rate * std::chrono::duration<double>(now - tokens_at_).count());
    tokens_at_ = now;
    if (tokens_ < 1.0) {
      close(proto::close_reason::flood, "more than " + std::to_string(o.flood_rate) +
                                            " messages/s (burst " + std::to_string(o.flood_burst) +
                                            ")");
      return;
    }
    tokens_ -= 1.0;
    handle(f);
  }
  if (closed_)
    return;
  if (off > 0) {
    std::memmove(rbuf_->data(), rbuf_->data() + off, rlen_ - off);
    rlen_ -= off;
  }
  read();
}

void session::handle(const proto::frame &f) {
  auto msg = proto::parse_client(f);
  if (!msg.ok) {
    char op[8];
    std::snprintf(op, sizeof op, "0x%02X", static_cast<unsigned>(f.op));
    close(msg.reason, std::string(msg.reason == proto::close_reason::unknown_opcode
                                      ? "unknown opcode "
                                      : "bad payload for opcode ") +
                          op + " (" + std::to_string(f.payload.size()) + " payload bytes)");
    return;
  }
  if (!logged_in_ && f.op != proto::opcode::login) {
    close(proto::close_reason::not_logged_in, "first message must be LOGIN");
    return;
  }
  auto &m = srv_.metrics();
  auto *mr = srv_.memory();
  switch (f.op) {
  case proto::opcode::login:
    handle_login(msg.login);
    break;
  case proto::opcode::move:
    m.moves.fetch_add(1, std::memory_order_relaxed);
    if (in_transit_ || !zone_) {
      m.moves_dropped.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    asio::post(zone_->executor(),
               [z = zone_, p = player_, mv = msg.move] { z->move(p, mv.seq, mv.x, mv.y); });
    break;
  case proto::opcode::chat:
    m.chats.fetch_add(1, std::memory_order_relaxed);
    if (msg.chat.channel == proto::chat_channel::zone) {
      if (in_transit_ || !zone_) {
        notice(proto::notice_code::in_transit, "changing zones");
        break;
      }
      // Allocated here (session heap), freed by the zone strand: a remote free.
      std::pmr::string from(name_, mr), text(msg.chat.text, mr);
      asio::post(zone_->executor(),
                 [z = zone_, from = std::move(from), text = std::move(text)]() mutable {
                   z->chat(std::move(from), std::move(text));
                 });
    } else {
      auto target = srv_.find_player(msg.chat.target);
      if (!target || target->closed()) {
        notice(proto::notice_code::whisper_target_offline,
               std::string(msg.chat.target) + " is not online");
        break;
      }
      m.whispers.fetch_add(1, std::memory_order_relaxed);
      proto::bytes fr(mr);
      proto::encode_chat_msg(fr, proto::chat_channel::whisper, name_, msg.chat.text);
      auto ex = target->executor(); // before target is moved into the handler
      asio::post(ex, [t = std::move(target), fr = std::move(fr)] { t->deliver(fr); });
    }
    break;
  case proto::opcode::enter_instance: {
    if (msg.zone.index >= srv_.opts().dungeons) {
      notice(proto::notice_code::no_such_zone, "no such dungeon");
      break;
    }
    if (in_transit_ || !zone_) {
      notice(proto::notice_code::in_transit, "changing zones");
      break;
    }
    if (zone_->kind() == zone_kind::instance) {
      notice(proto::notice_code::already_there, "already in an instance");
      break;
    }
    auto inst = srv_.reserve_instance(msg.zone.index);
    if (!inst) {
      notice(proto::notice_code::instance_limit, "instance limit reached");
      break;
    }
    transfer(inst, home_);
    break;
  }
  case proto::opcode::leave_instance:
    if (in_transit_ || !zone_) {
      notice(proto::notice_code::in_transit, "changing zones");
      break;
    }
    if (zone_->kind() != zone_kind::instance) {
      notice(proto::notice_code::not_in_instance, "not in an instance");
      break;
    }
    transfer(home_, home_);
    break;
  case proto::opcode::change_zone: {
    if (msg.zone.index >= srv_.zone_count()) {
      notice(proto::notice_code::no_such_zone, "no such zone");
      break;
    }
    if (in_transit_ || !zone_) {
      notice(proto::notice_code::in_transit, "changing zones");
      break;
    }
    auto target = srv_.persistent_zone(msg.zone.index);
    if (target == zone_) {
      notice(proto::notice_code::already_there, "already in that zone");
      break;
    }
    home_ = target;
    transfer(target, target);
    break;
  }
  case proto::opcode::ping: {
    proto::bytes fr(mr);
    proto::encode_pong(fr, msg.ping);
    send(fr);
    break;
  }
  case proto::opcode::logout:
    close(proto::close_reason::logout);
    break;
  default:
    break; // parse_client accepted only the opcodes above
  }
}

void session::handle_login(const proto::login_msg &m) {
  if (logged_in_) {
    close(proto::close_reason::already_logged_in, "second LOGIN");
    return;
  }
  if (m.version != proto::version) {
    close(proto::close_reason::bad_version, "protocol version " + std::to_string(m.version) +
                                                ", server speaks " +
                                                std::to_string(proto::version));
    return;
  }
  std::string name(m.name);
  if (!srv_.claim_name(name, shared_from_this())) {
    close(proto::close_reason::name_in_use, "name '" + name + "' is logged in already");
    return;
  }
  name_ = std::move(name);
  logged_in_ = true;
  player_ = srv_.next_player_id();
  srv_.metrics().served.fetch_add(1, std::memory_order_relaxed);
  proto::bytes fr(srv_.memory());
  proto::encode_login_ok(fr, player_, static_cast<std::uint16_t>(srv_.opts().tick_hz),
                         static_cast<std::uint16_t>(srv_.zone_count()),
                         static_cast<std::uint16_t>(srv_.opts().dungeons));
  send(fr);
  home_ = srv_.home_for(name_);
  in_transit_ = true;
  asio::post(home_->executor(),
             [z = home_, s = shared_from_this(), p = player_] { z->join(s, z, p); });
}

void session::transfer(std::shared_ptr<zone> target, std::shared_ptr<zone> home) {
  in_transit_ = true;
  asio::post(zone_->executor(), [from = zone_, p = player_, target = std::move(target),
                                 s = shared_from_this(), home = std::move(home)]() mutable {
    from->leave_and_forward(p, std::move(target), std::move(s), std::move(home));
  });
}

void session::on_entered(std::shared_ptr<zone> z, std::int32_t x, std::int32_t y) {
  if (closed_) {
    // The player arrived after the session closed: take it out again.
    asio::post(z->executor(), [z, p = player_] { z->remove(p); });
    return;
  }
  zone_ = z;
  in_transit_ = false;
  proto::bytes fr(srv_.memory());
  proto::encode_zone_entered(fr, z->uid(), static_cast<std::uint8_t>(z->kind()), z->index(), x, y);
  send(fr);
}

void session::notice(proto::notice_code code, std::string_view text) {
  if (closed_)
    return;
  proto::bytes fr(srv_.memory());
  proto::encode_notice(fr, code, text);
  send(fr);
}

void session::deliver(const proto::bytes &frame) {
  send(frame);
}

void session::send(const proto::bytes &frame) {
  if (closed_ || !pending_)
    return;
  std::size_t queued = pending_->size() + inflight_->size();
  if (queued + frame.size() > srv_.opts().send_queue_cap) {
    close(proto::close_reason::send_queue_overflow, std::to_string(queued) + " bytes queued, cap " +
                                                        std::to_string(srv_.opts().send_queue_cap));
    return;
  }
  pending_->insert(pending_->end(), frame.begin(), frame.end());
  srv_.metrics().frames_out.fetch_add(1, std::memory_order_relaxed);
  if (!writing_)
    write();
}

void session::write() {
  if (!socket_open_ || pending_->empty())
    return;
  pending_->swap(*inflight_); // same memory resource on both sides
  writing_ = true;
  write_started_ = steady::now();
  asio::async_write(
      socket_, asio::buffer(*inflight_),
      asio::bind_allocator(io_allocator<void>{},
                           [s = shared_from_this()](const std::error_code &ec, std::size_t n) {
                             s->writing_ = false;
                             s->srv_.metrics().bytes_out.fetch_add(n, std::memory_order_relaxed);
                             s->inflight_->clear();
                             if (ec) {
                               if (!s->closed_)
                                 s->close(proto::close_reason::connection_reset, ec.message());
                               else
                                 s->finish_close();
                               return;
                             }
                             if (!s->pending_->empty())
                               s->write();
                             else if (s->closed_)
                               s->finish_close(); // the final BYE/ERROR is out
                           }));
}

void session::housekeeping() {
  timer_.expires_after(std::chrono::milliseconds(100));
  timer_.async_wait([s = shared_from_this()](const std::error_code &ec) {
    if (ec == asio::error::operation_aborted || !s->socket_open_)
      return;
    auto now = steady::now();
    const auto &o = s->srv_.opts();
    if (s->closed_) {
      if (now >= s->close_deadline_) {
        s->finish_close(); // the peer did not take the final frame in time
        return;
      }
    } else if (now - s->last_read_ > std::chrono::milliseconds(o.idle_timeout_ms)) {
      s->close(proto::close_reason::idle_timeout,
               (s->rlen_ > 0 ? "incomplete frame, no data for " : "no data for ") +
                   std::to_string(o.idle_timeout_ms) + " ms");
    } else if (s->writing_ &&
               now - s->write_started_ > std::chrono::milliseconds(o.write_timeout_ms)) {
      s->close(proto::close_reason::write_timeout,
               "a write has not completed in " + std::to_string(o.write_timeout_ms) + " ms");
    }
    if (s->socket_open_)
      s->housekeeping();
  });
}

void session::close(proto::close_reason reason, std::string detail) {
  if (closed_)
    return;
  closed_.store(true, std::memory_order_release);
  auto &m = srv_.metrics();
  m.closes[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  bool error = proto::is_protocol_error(reason);
  if (error)
    m.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  auto level =
      (reason == proto::close_reason::logout || reason == proto::close_reason::server_shutdown)
          ? spdlog::level::debug
          : spdlog::level::info;
  srv_.log().log(level, "{} closed: {}{}{}", describe(), proto::reason_name(reason),
                 detail.empty() ? "" : ": ", detail);
  if (logged_in_)
    srv_.release_name(name_, this);
  if (zone_)
    asio::post(zone_->executor(), [z = zone_, p = player_] { z->remove(p); });
  srv_.session_closed(this);

  // Tell the peer why, then shut down once that frame is out (bounded by a deadline,
  // since a peer that does not read would keep it queued forever).
  bool tell = static_cast<std::uint16_t>(reason) < 100 || reason == proto::close_reason::logout ||
              reason == proto::close_reason::server_shutdown;
  if (tell && socket_open_ && pending_) {
    if (reason == proto::close_reason::send_queue_overflow)
      pending_->clear();
    proto::bytes fr(srv_.memory());
    if (reason == proto::close_reason::logout)
      proto::encode_bye(fr, proto::bye_reason::logout);
    else if (reason == proto::close_reason::server_shutdown)
      proto::encode_bye(fr, proto::bye_reason::server_shutdown);
    else
      proto::encode_error(fr, reason, detail.empty() ? proto::reason_name(reason) : detail);
    pending_->insert(pending_->end(), fr.begin(), fr.end());
    close_deadline_ = steady::now() + std::chrono::milliseconds(1000);
    if (!writing_)
      write();
  } else {
    finish_close();
  }
}

void session::finish_close() {
  if (!socket_open_)
    return;
  socket_open_ = false;
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  timer_.cancel();
  srv_.metrics().sockets_open.fetch_sub(1, std::memory_order_relaxed);
}

// --- shard_server ---------------------------------------------------------------------

shard_server::shard_server(asio::io_context &io, const server_options &opts,
                           std::shared_ptr<spdlog::logger> log)
    : io_(io), opts_(opts), log_(std::move(log)),
      mr_(opts.plain ? std::pmr::new_delete_resource() : ramalloc::default_resource()),
      ctl_(asio::make_strand(io)), acceptor_(ctl_), monitor_timer_(ctl_), sample_timer_(ctl_),
      started_(steady::now()) {
  set_kit_allocators(!opts.plain);
}

shard_server::~shard_server() = default;

std::shared_ptr<zone> shard_server::home_for(std::string_view name) const {
  std::size_t h = std::hash<std::string_view>{}(name);
  return zones_[h % zones_.size()];
}

void shard_server::start(std::function<void(std::uint16_t)> listening) {
  for (std::size_t i = 0; i < opts_.zones; ++i) {
    auto z = std::make_shared<zone>(*this, zone_kind::persistent, static_cast<std::uint16_t>(i),
                                    next_zone_uid_++);
    zones_.push_back(z);
    z->start();
  }
  for (std::size_t g = 0; g < std::max<std::size_t>(1, opts_.session_groups); ++g) {
    if (kit()) {
      group_heaps_.emplace_back(ramalloc::io::make_heap_strand(io_, strand_options()));
      groups_.emplace_back(*group_heaps_.back());
    } else {
      groups_.emplace_back(asio::make_strand(io_));
    }
  }
  if (opts_.stats_period_ms > 0) {
    ramalloc::io::reporter_options ro;
    ro.format =
        opts_.stats_json ? ramalloc::io::report_format::json : ramalloc::io::report_format::text;
    reporter_ = std::make_unique<ramalloc::io::stats_reporter>(
        io_, std::chrono::milliseconds(opts_.stats_period_ms), ro);
  }
  asio::ip::tcp::endpoint ep(asio::ip::make_address(opts_.bind), opts_.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  std::uint16_t port = acceptor_.local_endpoint().port();
  sample();
  // Let the zones tick for a while, then take the baseline the same way every later
  // quiescent point is taken, and only then accept sessions.
  monitor_timer_.expires_after(std::chrono::milliseconds(500));
  monitor_timer_.async_wait(
      [this, port, listening = std::move(listening)](const std::error_code &) {
        measure([this, port, listening](memory_point p) {
          {
            std::lock_guard lk(points_mu_);
            baseline_ = p;
          }
          log_->info("baseline: live_blocks={} live_bytes={} rss_kb={}", p.live_blocks,
                     p.live_bytes, p.rss_kb);
          accept();
          monitor();
          listening(port);
        });
      });
}

void shard_server::accept() {
  auto &group = groups_[next_session_.load() % groups_.size()];
  acceptor_.async_accept(group, [this, group](const std::error_code &ec,
                                              asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted && !stopping_)
        log_->warn("accept failed: {}", ec.message());
      if (acceptor_.is_open() && !stopping_)
        accept();
      return;
    }
    std::error_code opt_ec;
    socket.set_option(asio::ip::tcp::no_delay(true), opt_ec);
    if (opts_.socket_sndbuf > 0)
      socket.set_option(asio::socket_base::send_buffer_size(static_cast<int>(opts_.socket_sndbuf)),
                        opt_ec);
    auto serial = next_session_.fetch_add(1);
    auto s = std::make_shared<session>(*this, std::move(socket), group, serial);
    m_.accepted.fetch_add(1, std::memory_order_relaxed);
    m_.sockets_open.fetch_add(1, std::memory_order_relaxed);
    auto live = m_.live.fetch_add(1, std::memory_order_relaxed) + 1;
    std::uint64_t peak = m_.peak_live.load();
    while (live > peak && !m_.peak_live.compare_exchange_weak(peak, live)) {
    }
    {
      std::lock_guard lk(dir_mu_);
      sessions_.emplace(s.get(), s);
      had_sessions_ = true;
    }
    if (stopping_ || live > opts_.max_sessions)
      asio::post(s->executor(), [s, full = !stopping_] {
        s->close(full ? proto::close_reason::server_full : proto::close_reason::server_shutdown,
                 full ? "too many sessions" : "");
      });
    s->start();
    if (!stopping_)
      accept();
  });
}

bool shard_server::claim_name(const std::string &name, const std::shared_ptr<session> &s) {
  std::lock_guard lk(dir_mu_);
  auto it = directory_.find(name);
  if (it != directory_.end()) {
    auto other = it->second.lock();
    if (other && !other->closed())
      return false;
    it->second = s;
    return true;
  }
  directory_.emplace(name, s);
  return true;
}

void shard_server::release_name(const std::string &name, const session *s) {
  std::lock_guard lk(dir_mu_);
  auto it = directory_.find(name);
  if (it == directory_.end())
    return;
  auto other = it->second.lock();
  if (!other || other.get() == s)
    directory_.erase(it);
}

std::shared_ptr<session> shard_server::find_player(std::string_view name) {
  std::lock_guard lk(dir_mu_);
  auto it = directory_.find(std::string(name));
  return it == directory_.end() ? nullptr : it->second.lock();
}

void shard_server::session_closed(const session *s) {
  {
    std::lock_guard lk(dir_mu_);
    sessions_.erase(s);
  }
  m_.live.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<zone> shard_server::reserve_instance(std::uint16_t dungeon) {
  std::shared_ptr<zone> z;
  {
    std::lock_guard lk(instances_mu_);
    for (auto &inst : instances_)
      if (inst->index() == dungeon && inst->slots < opts_.instance_capacity) {
        ++inst->slots;
        return inst;
      }
    if (stopping_ || instances_.size() + closing_.size() >= opts_.max_instances) {
      m_.instance_refused.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    z = std::make_shared<zone>(*this, zone_kind::instance, dungeon, next_zone_uid_++);
    z->slots = 1;
    z->registered = true;
    z->empty_since = steady::now();
    instances_.push_back(z);
    m_.instances_opened.fetch_add(1, std::memory_order_relaxed);
    auto live = m_.instances_live.fetch_add(1, std::memory_order_relaxed) + 1;
    std::uint64_t peak = m_.peak_instances.load();
    while (live > peak && !m_.peak_instances.compare_exchange_weak(peak, live)) {
    }
  }
  z->start();
  return z;
}

void shard_server::release_slot(zone &z) {
  std::lock_guard lk(instances_mu_);
  if (z.slots > 0 && --z.slots == 0)
    z.empty_since = steady::now();
}

bool shard_server::try_close_instance(zone &z, bool expired) {
  std::lock_guard lk(instances_mu_);
  if (!z.registered)
    return true;
  if (z.slots != 0)
    return false;
  if (!expired && !stopping_ &&
      steady::now() - z.empty_since < std::chrono::milliseconds(opts_.instance_linger_ms))
    return false;
  auto it = std::find_if(instances_.begin(), instances_.end(),
                         [&](const auto &p) { return p.get() == &z; });
  if (it != instances_.end()) {
    closing_.push_back(*it);
    instances_.erase(it);
  }
  z.registered = false;
  return true;
}

void shard_server::zone_finalized(zone &z) {
  if (z.kind() != zone_kind::instance)
    return;
  std::shared_ptr<zone> keep; // released after the lock
  std::lock_guard lk(instances_mu_);
  auto it =
      std::find_if(closing_.begin(), closing_.end(), [&](const auto &p) { return p.get() == &z; });
  if (it != closing_.end()) {
    keep = *it;
    closing_.erase(it);
  }
  m_.instances_closed.fetch_add(1, std::memory_order_relaxed);
  m_.instances_live.fetch_sub(1, std::memory_order_relaxed);
}

memory_point shard_server::snapshot() const {
  memory_point p;
  p.t_s = seconds_since(started_);
  auto st = ramalloc::get_stats();
  p.live_blocks = st.live_blocks;
  p.live_bytes = st.live_bytes;
  p.committed_bytes = st.committed_bytes;
  p.rss_kb = rss_kb();
  p.valid = true;
  return p;
}

void shard_server::measure(std::function<void(memory_point)> done) {
  // Kit mode: every zone and session-group strand flushes its own heap (on the strand,
  // so the one-owner rule holds); then the purge has a moment to run. --plain waits the
  // same time and flushes nothing: a peer allocator gets no call it would not get in
  // production.
  auto settle = [this, done = std::move(done)] {
    auto t = std::make_shared<asio::steady_timer>(ctl_, std::chrono::milliseconds(300));
    t->async_wait([this, t, done](const std::error_code &) { done(snapshot()); });
  };
  if (!kit()) {
    asio::post(ctl_, settle);
    return;
  }
  std::vector<std::shared_ptr<zone>> zs = zones_;
  {
    std::lock_guard lk(instances_mu_);
    zs.insert(zs.end(), instances_.begin(), instances_.end());
  }
  auto left = std::make_shared<std::atomic<std::size_t>>(zs.size() + groups_.size());
  auto one_done = [this, left, settle] {
    if (left->fetch_sub(1) == 1)
      asio::post(ctl_, settle);
  };
  for (auto &z : zs)
    z->flush_heap(one_done);
  for (auto &g : groups_)
    asio::post(g, [one_done] {
      ramalloc::flush();
      one_done();
    });
}

void shard_server::sample() {
  {
    std::lock_guard lk(points_mu_);
    if (rss_series_.size() < 200000)
      rss_series_.emplace_back(seconds_since(started_), rss_kb());
  }
  sample_timer_.expires_after(
      std::chrono::milliseconds(std::max<std::uint32_t>(10, opts_.sample_ms)));
  sample_timer_.async_wait([this](const std::error_code &ec) {
    if (!ec && !stopped_sampling_)
      sample();
  });
}

void shard_server::monitor() {
  // Quiescent: no session and no instance for a few checks in a row. Each quiet period
  // that follows activity is measured once, the way the baseline was.
  bool quiet = m_.live.load() == 0 && m_.instances_live.load() == 0 && m_.sockets_open.load() == 0;
  std::uint64_t activity = m_.accepted.load() + m_.instances_opened.load();
  bool had;
  {
    std::lock_guard lk(dir_mu_);
    had = had_sessions_;
  }
  if (quiet && had && !measuring_ && activity != activity_at_last_measure_) {
    if (++quiet_checks_ >= 3) {
      measuring_ = true;
      measure([this, activity](memory_point p) {
        {
          std::lock_guard lk(points_mu_);
          quiescent_.push_back(p);
        }
        measuring_ = false;
        activity_at_last_measure_ = activity;
        quiet_checks_ = 0;
        log_->info("quiescent: live_blocks={} live_bytes={} rss_kb={}", p.live_blocks, p.live_bytes,
                   p.rss_kb);
        std::printf("quiescent live_blocks=%" PRIu64 " rss_kb=%" PRIu64 "\n", p.live_blocks,
                    p.rss_kb);
        std::fflush(stdout);
      });
    }
  } else if (!quiet) {
    quiet_checks_ = 0;
  }
  if (stopping_)
    return;
  monitor_timer_.expires_after(std::chrono::milliseconds(100));
  monitor_timer_.async_wait([this](const std::error_code &ec) {
    if (!ec && !stopping_)
      monitor();
  });
}

void shard_server::shutdown(std::function<void()> done) {
  asio::post(ctl_, [this, done = std::move(done)] {
    if (stopping_.exchange(true))
      return;
    log_->info("shutting down: {} sessions, {} instances", m_.live.load(),
               m_.instances_live.load());
    std::error_code ec;
    acceptor_.close(ec);
    monitor_timer_.cancel();
    std::vector<std::shared_ptr<session>> all;
    {
      std::lock_guard lk(dir_mu_);
      for (auto &[p, w] : sessions_)
        if (auto s = w.lock())
          all.push_back(std::move(s));
    }
    for (auto &s : all)
      asio::post(s->executor(), [s] { s->close(proto::close_reason::server_shutdown); });
    shutdown_step(done, steady::now() + std::chrono::seconds(3), 0);
  });
}

void shard_server::shutdown_step(std::function<void()> done, steady::time_point deadline,
                                 int phase) {
  bool timed_out = steady::now() >= deadline;
  if (phase == 0 && (m_.sockets_open.load() == 0 || timed_out)) {
    if (timed_out)
      log_->warn("shutdown: {} sockets still open after the deadline", m_.sockets_open.load());
    std::vector<std::shared_ptr<zone>> zs = zones_;
    {
      std::lock_guard lk(instances_mu_);
      zs.insert(zs.end(), instances_.begin(), instances_.end());
      zs.insert(zs.end(), closing_.begin(), closing_.end());
    }
    for (auto &z : zs)
      z->stop();
    phase = 1;
    deadline = steady::now() + std::chrono::seconds(3);
  } else if (phase == 1) {
    bool all = std::all_of(zones_.begin(), zones_.end(), [](auto &z) { return z->finalized(); });
    {
      std::lock_guard lk(instances_mu_);
      all = all && instances_.empty() && closing_.empty();
    }
    if (all || timed_out) {
      if (!all)
        log_->warn("shutdown: zones still running after the deadline");
      stopped_sampling_ = true;
      sample_timer_.cancel();
      if (reporter_)
        reporter_->stop();
      {
        std::lock_guard lk(points_mu_);
        rss_series_.emplace_back(seconds_since(started_), rss_kb());
      }
      done();
      return;
    }
  }
  auto t = std::make_shared<asio::steady_timer>(ctl_, std::chrono::milliseconds(20));
  t->async_wait([this, t, done, deadline, phase](const std::error_code &) {
    shutdown_step(done, deadline, phase);
  });
}

// --- report -------------------------------------------------------------------------

std::string shard_server::report_json() const {
  std::string j = "{";
  auto num = [&](const char *k, auto v, bool comma = true) {
    j += "\"" + std::string(k) + "\":" + std::to_string(v) + (comma ? "," : "");
  };
  auto point = [](const memory_point &p) {
    if (!p.valid)
      return std::string("null");
    return "{\"t_s\":" + std::to_string(p.t_s) +
           ",\"live_blocks\":" + std::to_string(p.live_blocks) +
           ",\"live_bytes\":" + std::to_string(p.live_bytes) +
           ",\"committed_bytes\":" + std::to_string(p.committed_bytes) +
           ",\"rss_kb\":" + std::to_string(p.rss_kb) + "}";
  };
  const char *preload = std::getenv("LD_PRELOAD");
  j += "\"mode\":\"" + std::string(opts_.plain ? "plain" : "kit") + "\",";
  j += "\"ld_preload\":\"" + std::string(preload ? preload : "") + "\",";
  num("uptime_s", seconds_since(started_));
  num("workers", opts_.workers);
  num("zones", opts_.zones);
  num("tick_hz", opts_.tick_hz);
  j += "\"tick\":{\"persistent\":" + histogram_json(m_.tick_persistent) +
       ",\"instance\":" + histogram_json(m_.tick_instance) + "},";
  j += "\"tick_hist\":{\"persistent\":" + histogram_buckets_json(m_.tick_persistent) +
       ",\"instance\":" + histogram_buckets_json(m_.tick_instance) + "},";
  j += "\"sessions\":{";
  num("accepted", m_.accepted.load());
  num("served", m_.served.load());
  num("peak_live", m_.peak_live.load());
  num("live_at_exit", m_.live.load(), false);
  j += "},";
  num("protocol_errors", m_.protocol_errors.load());
  j += "\"closes\":{";
  bool first = true;
  for (std::size_t i = 0; i < proto::close_reason_slots; ++i)
    if (auto c = m_.closes[i].load()) {
      if (!first)
        j += ",";
      first = false;
      j += "\"" + std::string(proto::reason_name(static_cast<proto::close_reason>(i))) +
           "\":" + std::to_string(c);
    }
  j += "},";
  num("frames_in", m_.frames_in.load());
  num("frames_out", m_.frames_out.load());
  num("bytes_in", m_.bytes_in.load());
  num("bytes_out", m_.bytes_out.load());
  num("moves", m_.moves.load());
  num("moves_dropped", m_.moves_dropped.load());
  num("chats", m_.chats.load());
  num("whispers", m_.whispers.load());
  num("zone_transfers", m_.transfers.load());
  j += "\"instances\":{";
  num("opened", m_.instances_opened.load());
  num("closed", m_.instances_closed.load());
  num("peak_live", m_.peak_instances.load());
  num("refused", m_.instance_refused.load());
  num("release_all_calls", m_.release_all_calls.load());
  num("release_all_spans", m_.release_all_spans.load());
  j += "\"release_all\":" + histogram_json(m_.release_all_time) + ",";
  num("destroyed_object_by_object", m_.zones_destroyed_by_objects.load(), false);
  j += "},";
  std::lock_guard lk(points_mu_);
  j += "\"baseline\":" + point(baseline_) + ",";
  j += "\"quiescent\":[";
  for (std::size_t i = 0; i < quiescent_.size(); ++i)
    j += (i ? "," : "") + point(quiescent_[i]);
  j += "],";
  num("peak_rss_kb", peak_rss_kb());
  j += "\"rss_kb_series\":[";
  for (std::size_t i = 0; i < rss_series_.size(); ++i)
    j += (i ? ",[" : "[") + std::to_string(rss_series_[i].first) + "," +
         std::to_string(rss_series_[i].second) + "]";
  j += "],";
  auto st = ramalloc::get_stats();
  j += "\"allocator\":{";
  num("live_bytes", st.live_bytes);
  num("live_blocks", st.live_blocks);
  num("committed_bytes", st.committed_bytes);
  num("reserved_bytes", st.reserved_bytes);
  num("pending_debt", st.pending_debt);
  num("remote_frees", st.remote_frees);
  num("pages_purged", st.pages_purged);
  num("bytes_purged", st.bytes_purged);
  num("heaps_live", st.heaps_live);
  num("heaps_orphaned", st.heaps_orphaned);
  num("orphans_adopted", st.orphans_adopted);
  num("orphans_serviced", st.orphans_serviced);
  num("invalid_frees", st.invalid_frees, false);
  j += "}}";
  return j;
}

} // namespace shard
