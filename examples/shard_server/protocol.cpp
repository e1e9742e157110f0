// Frame codec of the shard protocol (docs/shard-protocol.md). Strict by construction: a
// reader walks the payload with bounds checks and the message is accepted only if the
// walk ends exactly at the payload's end.
#include "protocol.hpp"

#include <cstring>

namespace shard::proto {

namespace {

/// Bounds-checked little-endian reader over a payload. Any read past the end sets
/// `bad`, after which every read returns zero; callers check `done()` once at the end.
class reader {
public:
  explicit reader(std::span<const std::uint8_t> s) noexcept : s_(s) {}
  std::uint8_t u8() noexcept { return take(1) ? s_[pos_ - 1] : 0; }
  std::uint16_t u16() noexcept {
    if (!take(2))
      return 0;
    return static_cast<std::uint16_t>(s_[pos_ - 2] | (s_[pos_ - 1] << 8));
  }
  std::uint32_t u32() noexcept {
    if (!take(4))
      return 0;
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
      v = (v << 8) | s_[pos_ - 4 + i];
    return v;
  }
  std::uint64_t u64() noexcept {
    std::uint64_t lo = u32();
    std::uint64_t hi = u32();
    return lo | (hi << 32);
  }
  std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
    if (!take(n))
      return {};
    return s_.subspan(pos_ - n, n);
  }
  std::string_view str8() noexcept {
    std::size_t n = u8();
    auto b = bytes(n);
    return {reinterpret_cast<const char *>(b.data()), b.size()};
  }
  std::span<const std::uint8_t> rest() noexcept { return bytes(s_.size() - pos_); }
  std::size_t remaining() const noexcept { return bad_ ? 0 : s_.size() - pos_; }
  /// The whole payload was read, and nothing more.
  bool done() const noexcept { return !bad_ && pos_ == s_.size(); }

private:
  bool take(std::size_t n) noexcept {
    if (bad_ || s_.size() - pos_ < n) {
      bad_ = true;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::span<const std::uint8_t> s_;
  std::size_t pos_ = 0;
  bool bad_ = false;
};

client_message reject(close_reason r, opcode op) noexcept {
  client_message m;
  m.ok = false;
  m.reason = r;
  m.op = op;
  return m;
}

} // namespace

bool is_protocol_error(close_reason r) noexcept {
  auto v = static_cast<std::uint16_t>(r);
  return v >= 1 && v <= 12 && r != close_reason::send_queue_overflow &&
         r != close_reason::idle_timeout && r != close_reason::write_timeout &&
         r != close_reason::server_full;
}

std::string_view reason_name(close_reason r) noexcept {
  switch (r) {
  case close_reason::none:
    return "none";
  case close_reason::malformed_frame:
    return "malformed_frame";
  case close_reason::frame_too_large:
    return "frame_too_large";
  case close_reason::unknown_opcode:
    return "unknown_opcode";
  case close_reason::not_logged_in:
    return "not_logged_in";
  case close_reason::flood:
    return "flood";
  case close_reason::send_queue_overflow:
    return "send_queue_overflow";
  case close_reason::idle_timeout:
    return "idle_timeout";
  case close_reason::already_logged_in:
    return "already_logged_in";
  case close_reason::name_in_use:
    return "name_in_use";
  case close_reason::bad_version:
    return "bad_version";
  case close_reason::write_timeout:
    return "write_timeout";
  case close_reason::server_full:
    return "server_full";
  case close_reason::logout:
    return "logout";
  case close_reason::peer_closed:
    return "peer_closed";
  case close_reason::connection_reset:
    return "connection_reset";
  case close_reason::server_shutdown:
    return "server_shutdown";
  }
  return "unknown";
}

frame_decoder::status frame_decoder::next(std::span<const std::uint8_t> in, frame &out,
                                          std::size_t &consumed) const noexcept {
  consumed = 0;
  if (in.size() < header_size)
    return status::need_more;
  std::size_t len = static_cast<std::size_t>(in[0]) | (static_cast<std::size_t>(in[1]) << 8);
  if (len == 0)
    return status::empty_frame;
  if (len > max_frame_)
    return status::too_large;
  if (in.size() < header_size + len)
    return status::need_more;
  out.op = static_cast<opcode>(in[2]);
  out.payload = in.subspan(header_size + 1, len - 1);
  consumed = header_size + len;
  return status::frame;
}

bool valid_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > max_name)
    return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

bool valid_text(std::string_view s, std::size_t max) noexcept {
  if (s.empty() || s.size() > max)
    return false;
  // UTF-8, shortest forms only, no surrogates, nothing above U+10FFFF, no C0/DEL controls.
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F)
        return false;
      ++i;
      continue;
    }
    std::size_t n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n)
      return false;
    for (std::size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

client_message parse_client(const frame &f) noexcept {
  client_message m;
  m.op = f.op;
  reader r(f.payload);
  switch (f.op) {
  case opcode::login:
    m.login.version = r.u16();
    m.login.name = r.str8();
    if (!r.done() || !valid_name(m.login.name))
      return reject(close_reason::malformed_frame, f.op);
    break;
  case opcode::move:
    m.move.seq = r.u32();
    m.move.x = static_cast<std::int32_t>(r.u32());
    m.move.y = static_cast<std::int32_t>(r.u32());
    if (!r.done())
      return reject(close_reason::malformed_frame, f.op);
    break;
  case opcode::chat: {
    std::uint8_t ch = r.u8();
    if (ch > 1)
      return reject(close_reason::malformed_frame, f.op);
    m.chat.channel = static_cast<chat_channel>(ch);
    if (m.chat.channel == chat_channel::whisper) {
      m.chat.target = r.str8();
      if (!valid_name(m.chat.target))
        return reject(close_reason::malformed_frame, f.op);
    }
    m.chat.text = r.str8();
    if (!r.done() || !valid_text(m.chat.text, max_chat_text))
      return reject(close_reason::malformed_frame, f.op);
    break;
  }
  case opcode::enter_instance:
  case opcode::change_zone:
    m.zone.index = r.u16();
    if (!r.done())
      return reject(close_reason::malformed_frame, f.op);
    break;
  case opcode::leave_instance:
  case opcode::logout:
    if (!r.done())
      return reject(close_reason::malformed_frame, f.op);
    break;
  case opcode::ping:
    m.ping.seq = r.u32();
    m.ping.client_time = r.u64();
    if (r.remaining() > max_ping_pad)
      return reject(close_reason::malformed_frame, f.op);
    m.ping.pad = r.rest();
    if (!r.done())
      return reject(close_reason::malformed_frame, f.op);
    break;
  default:
    return reject(close_reason::unknown_opcode, f.op);
  }
  m.ok = true;
  return m;
}

server_message parse_server(const frame &f) noexcept {
  server_message m;
  m.op = f.op;
  reader r(f.payload);
  switch (f.op) {
  case opcode::login_ok:
    m.u32a = r.u32();
    m.u16a = r.u16();
    m.u16b = r.u16();
    m.u16c = r.u16();
    break;
  case opcode::zone_entered:
    m.u32a = r.u32();
    m.u8a = r.u8();
    m.u16a = r.u16();
    m.x = static_cast<std::int32_t>(r.u32());
    m.y = static_cast<std::int32_t>(r.u32());
    if (m.u8a > 1)
      return m;
    break;
  case opcode::update:
    m.u32a = r.u32();
    m.count = r.u16();
    if (m.count > max_visible)
      return m;
    m.entries = r.bytes(std::size_t{m.count} * update_entry_size);
    if (r.done())
      for (std::size_t i = 0; i < m.count; ++i)
        if (m.entries[i * update_entry_size + 4] > 2)
          return m;
    break;
  case opcode::move_ack:
    m.u32a = r.u32();
    m.x = static_cast<std::int32_t>(r.u32());
    m.y = static_cast<std::int32_t>(r.u32());
    break;
  case opcode::chat_msg:
    m.u8a = r.u8();
    m.from = r.str8();
    m.text = r.str8();
    if (m.u8a > 1 || !valid_name(m.from) || !valid_text(m.text, max_chat_text))
      return m;
    break;
  case opcode::pong:
    m.u32a = r.u32();
    m.u64a = r.u64();
    if (r.remaining() > max_ping_pad)
      return m;
    r.rest();
    break;
  case opcode::notice:
  case opcode::error:
    m.u16a = r.u16();
    m.text = r.str8();
    break;
  case opcode::bye:
    m.u16a = r.u16();
    if (m.u16a > 1)
      return m;
    break;
  default:
    return m;
  }
  m.ok = r.done();
  return m;
}

update_entry update_entry_at(std::span<const std::uint8_t> entries, std::size_t i) noexcept {
  reader r(entries.subspan(i * update_entry_size, update_entry_size));
  update_entry e;
  e.id = r.u32();
  e.kind = static_cast<entity_kind>(r.u8());
  e.x = static_cast<std::int32_t>(r.u32());
  e.y = static_cast<std::int32_t>(r.u32());
  return e;
}

// --- encoding -------------------------------------------------------------------------

frame_writer::frame_writer(bytes &out, opcode op) : out_(out), start_(out.size()) {
  out_.push_back(0);
  out_.push_back(0);
  out_.push_back(static_cast<std::uint8_t>(op));
}

void frame_writer::u16(std::uint16_t v) {
  out_.push_back(static_cast<std::uint8_t>(v));
  out_.push_back(static_cast<std::uint8_t>(v >> 8));
}

void frame_writer::u32(std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void frame_writer::u64(std::uint64_t v) {
  u32(static_cast<std::uint32_t>(v));
  u32(static_cast<std::uint32_t>(v >> 32));
}

void frame_writer::str8(std::string_view s) {
  out_.push_back(static_cast<std::uint8_t>(s.size()));
  out_.insert(out_.end(), s.begin(), s.end());
}

std::size_t frame_writer::finish() {
  std::size_t len = out_.size() - start_ - header_size;
  out_[start_] = static_cast<std::uint8_t>(len);
  out_[start_ + 1] = static_cast<std::uint8_t>(len >> 8);
  return len + header_size;
}

void encode_login(bytes &out, std::string_view name, std::uint16_t ver) {
  frame_writer w(out, opcode::login);
  w.u16(ver);
  w.str8(name);
  w.finish();
}

void encode_move(bytes &out, std::uint32_t seq, std::int32_t x, std::int32_t y) {
  frame_writer w(out, opcode::move);
  w.u32(seq);
  w.i32(x);
  w.i32(y);
  w.finish();
}

void encode_chat(bytes &out, chat_channel ch, std::string_view target, std::string_view text) {
  frame_writer w(out, opcode::chat);
  w.u8(static_cast<std::uint8_t>(ch));
  if (ch == chat_channel::whisper)
    w.str8(target);
  w.str8(text);
  w.finish();
}

void encode_zone_index(bytes &out, opcode op, std::uint16_t index) {
  frame_writer w(out, op);
  w.u16(index);
  w.finish();
}

void encode_empty(bytes &out, opcode op) {
  frame_writer w(out, op);
  w.finish();
}

void encode_ping(bytes &out, std::uint32_t seq, std::uint64_t client_time,
                 std::span<const std::uint8_t> pad) {
  frame_writer w(out, opcode::ping);
  w.u32(seq);
  w.u64(client_time);
  w.raw(pad);
  w.finish();
}

bool encode_client_message(bytes &out, const client_message &m) {
  if (!m.ok)
    return false;
  switch (m.op) {
  case opcode::login:
    encode_login(out, m.login.name, m.login.version);
    return true;
  case opcode::move:
    encode_move(out, m.move.seq, m.move.x, m.move.y);
    return true;
  case opcode::chat:
    encode_chat(out, m.chat.channel, m.chat.target, m.chat.text);
    return true;
  case opcode::enter_instance:
  case opcode::change_zone:
    encode_zone_index(out, m.op, m.zone.index);
    return true;
  case opcode::leave_instance:
  case opcode::logout:
    encode_empty(out, m.op);
    return true;
  case opcode::ping:
    encode_ping(out, m.ping.seq, m.ping.client_time, m.ping.pad);
    return true;
  default:
    return false;
  }
}

void encode_login_ok(bytes &out, std::uint32_t player_id, std::uint16_t tick_hz,
                     std::uint16_t zones, std::uint16_t dungeons) {
  frame_writer w(out, opcode::login_ok);
  w.u32(player_id);
  w.u16(tick_hz);
  w.u16(zones);
  w.u16(dungeons);
  w.finish();
}

void encode_zone_entered(bytes &out, std::uint32_t zone_uid, std::uint8_t kind, std::uint16_t index,
                         std::int32_t x, std::int32_t y) {
  frame_writer w(out, opcode::zone_entered);
  w.u32(zone_uid);
  w.u8(kind);
  w.u16(index);
  w.i32(x);
  w.i32(y);
  w.finish();
}

void encode_move_ack(bytes &out, std::uint32_t seq, std::int32_t x, std::int32_t y) {
  frame_writer w(out, opcode::move_ack);
  w.u32(seq);
  w.i32(x);
  w.i32(y);
  w.finish();
}

void encode_chat_msg(bytes &out, chat_channel ch, std::string_view from, std::string_view text) {
  frame_writer w(out, opcode::chat_msg);
  w.u8(static_cast<std::uint8_t>(ch));
  w.str8(from);
  w.str8(text);
  w.finish();
}

void encode_pong(bytes &out, const ping_msg &ping) {
  frame_writer w(out, opcode::pong);
  w.u32(ping.seq);
  w.u64(ping.client_time);
  w.raw(ping.pad);
  w.finish();
}

void encode_notice(bytes &out, notice_code code, std::string_view text) {
  frame_writer w(out, opcode::notice);
  w.u16(static_cast<std::uint16_t>(code));
  w.str8(text.substr(0, max_notice_text));
  w.finish();
}

void encode_bye(bytes &out, bye_reason reason) {
  frame_writer w(out, opcode::bye);
  w.u16(static_cast<std::uint16_t>(reason));
  w.finish();
}

void encode_error(bytes &out, close_reason code, std::string_view text) {
  frame_writer w(out, opcode::error);
  w.u16(static_cast<std::uint16_t>(code));
  w.str8(text.substr(0, max_notice_text));
  w.finish();
}

} // namespace shard::proto
