// The shard protocol: length-prefixed binary frames, documented byte by byte in
// docs/shard-protocol.md. This file has no Asio in it: the codec is shared by the server,
// the bots, the seeded random-frame test and the libFuzzer target.
//
// Frame: u16 length (little-endian, counts the opcode and the payload), u8 opcode,
// payload. Every integer is little-endian. Decoding is strict: a frame is accepted only
// when its length is within the direction's limit and its payload has exactly the shape
// its opcode defines; anything else is rejected with a reason, never guessed at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <span>
#include <string_view>
#include <vector>

namespace shard::proto {

inline constexpr std::uint16_t version = 1;
/// Largest frame length (opcode + payload) a client may send.
inline constexpr std::size_t max_client_frame = 512;
/// Largest frame length the server sends (an UPDATE with max_visible entities fits).
inline constexpr std::size_t max_server_frame = 16384;
inline constexpr std::size_t header_size = 2;
inline constexpr std::size_t max_name = 24;
inline constexpr std::size_t max_chat_text = 200;
inline constexpr std::size_t max_ping_pad = 256;
inline constexpr std::size_t max_notice_text = 120;
inline constexpr std::size_t update_entry_size = 13;
inline constexpr std::size_t max_visible = 1000;

enum class opcode : std::uint8_t {
  // client -> server
  login = 0x01,
  move = 0x02,
  chat = 0x03,
  enter_instance = 0x04,
  leave_instance = 0x05,
  change_zone = 0x06,
  ping = 0x07,
  logout = 0x08,
  // server -> client
  login_ok = 0x81,
  zone_entered = 0x82,
  update = 0x83,
  move_ack = 0x84,
  chat_msg = 0x85,
  pong = 0x86,
  notice = 0x87,
  bye = 0x88,
  error = 0x8F,
};

/// Why the server closes a session. The numeric values are the ERROR frame's code
/// (docs/shard-protocol.md); names appear in logs and in the server's JSON report.
enum class close_reason : std::uint16_t {
  none = 0,
  malformed_frame = 1,
  frame_too_large = 2,
  unknown_opcode = 3,
  not_logged_in = 4,
  flood = 5,
  send_queue_overflow = 6,
  idle_timeout = 7,
  already_logged_in = 8,
  name_in_use = 9,
  bad_version = 10,
  write_timeout = 11,
  server_full = 12,
  // Not sent as ERROR (the peer is gone or asked for it):
  logout = 100,
  peer_closed = 101,
  connection_reset = 102,
  server_shutdown = 103,
};
inline constexpr std::size_t close_reason_slots = 104;

/// True for the reasons that count as a protocol error (the client broke the protocol).
bool is_protocol_error(close_reason r) noexcept;
/// Stable snake_case name, e.g. "frame_too_large"; "unknown" for values not listed.
std::string_view reason_name(close_reason r) noexcept;

/// Non-fatal NOTICE codes: the request was valid but could not be done.
enum class notice_code : std::uint16_t {
  whisper_target_offline = 1,
  instance_limit = 2,
  no_such_zone = 3,
  in_transit = 4,
  not_in_instance = 5,
  instance_expired = 6,
  already_there = 7,
};

enum class bye_reason : std::uint16_t { logout = 0, server_shutdown = 1 };
enum class chat_channel : std::uint8_t { zone = 0, whisper = 1 };
enum class entity_kind : std::uint8_t { player = 0, npc = 1, projectile = 2 };

/// One complete frame as it sits in a receive buffer (views into it).
struct frame {
  opcode op{};
  std::span<const std::uint8_t> payload;
};

/// Splits a byte stream into frames. Stateless between calls: the caller keeps the
/// bytes of an incomplete frame and offers them again with more. O(1) per call.
class frame_decoder {
public:
  enum class status { frame, need_more, too_large, empty_frame };
  explicit frame_decoder(std::size_t max_frame) noexcept : max_frame_(max_frame) {}
  /// Looks at the front of `in`. On `frame`, `out` views the frame and `consumed` is its
  /// whole size (header included). `too_large` is decided from the header alone, before
  /// the body arrives, so a peer cannot make the server buffer an oversized frame.
  status next(std::span<const std::uint8_t> in, frame &out, std::size_t &consumed) const noexcept;

private:
  std::size_t max_frame_;
};

// --- client messages ------------------------------------------------------------------

struct login_msg {
  std::uint16_t version = 0;
  std::string_view name;
};
struct move_msg {
  std::uint32_t seq = 0;
  std::int32_t x = 0, y = 0;
};
struct chat_msg {
  chat_channel channel = chat_channel::zone;
  std::string_view target; // whisper only
  std::string_view text;
};
struct zone_index_msg {
  std::uint16_t index = 0;
};
struct ping_msg {
  std::uint32_t seq = 0;
  std::uint64_t client_time = 0;
  std::span<const std::uint8_t> pad;
};

/// A client frame checked against its opcode's exact shape. `ok` false means the frame
/// is rejected; `reason` says why (malformed_frame or unknown_opcode).
struct client_message {
  bool ok = false;
  close_reason reason = close_reason::none;
  opcode op{};
  login_msg login;
  move_msg move;
  chat_msg chat;
  zone_index_msg zone;
  ping_msg ping;
};
client_message parse_client(const frame &f) noexcept;

/// Names: 1..max_name bytes of [A-Za-z0-9_-]. Chat text: 1..max_chat_text bytes of
/// valid UTF-8 with no control characters.
bool valid_name(std::string_view s) noexcept;
bool valid_text(std::string_view s, std::size_t max) noexcept;

// --- server messages (decoded by the bots; strict too) --------------------------------

struct update_entry {
  std::uint32_t id = 0;
  entity_kind kind = entity_kind::npc;
  std::int32_t x = 0, y = 0;
};
struct server_message {
  bool ok = false;
  opcode op{};
  std::uint32_t u32a =
      0; // login_ok: player id; zone_entered: zone uid; update: tick; ack/pong: seq
  std::uint16_t u16a = 0; // login_ok: tick hz; zone_entered: index; notice/error/bye: code
  std::uint16_t u16b = 0, u16c = 0; // login_ok: zone count, dungeon templates
  std::uint8_t u8a = 0;             // zone_entered: kind (0 persistent, 1 instance); chat: channel
  std::int32_t x = 0, y = 0;
  std::uint64_t u64a = 0;                // pong: client time
  std::uint16_t count = 0;               // update: entries
  std::span<const std::uint8_t> entries; // update: count * update_entry_size bytes
  std::string_view from, text;
};
server_message parse_server(const frame &f) noexcept;
update_entry update_entry_at(std::span<const std::uint8_t> entries, std::size_t i) noexcept;

// --- encoding -------------------------------------------------------------------------

using bytes = std::pmr::vector<std::uint8_t>;

/// Appends one frame to `out`. Begins with the header; `finish()` writes the length.
/// Every encode_* function below validates nothing: callers pass values that satisfy
/// the limits (the server and bots only encode what they built themselves).
class frame_writer {
public:
  frame_writer(bytes &out, opcode op);
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v);
  void u32(std::uint32_t v);
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void u64(std::uint64_t v);
  void str8(std::string_view s); // u8 length + bytes
  void raw(std::span<const std::uint8_t> s) { out_.insert(out_.end(), s.begin(), s.end()); }
  /// Writes the length field; returns the frame's total size.
  std::size_t finish();

private:
  bytes &out_;
  std::size_t start_;
};

void encode_login(bytes &out, std::string_view name, std::uint16_t ver = version);
void encode_move(bytes &out, std::uint32_t seq, std::int32_t x, std::int32_t y);
void encode_chat(bytes &out, chat_channel ch, std::string_view target, std::string_view text);
void encode_zone_index(bytes &out, opcode op, std::uint16_t index);
void encode_empty(bytes &out, opcode op);
void encode_ping(bytes &out, std::uint32_t seq, std::uint64_t client_time,
                 std::span<const std::uint8_t> pad);
/// Encodes a parsed client message again (parse_client's inverse: the bytes it was
/// decoded from). False, and nothing appended, for a message that is not `ok`.
bool encode_client_message(bytes &out, const client_message &m);

void encode_login_ok(bytes &out, std::uint32_t player_id, std::uint16_t tick_hz,
                     std::uint16_t zones, std::uint16_t dungeons);
void encode_zone_entered(bytes &out, std::uint32_t zone_uid, std::uint8_t kind, std::uint16_t index,
                         std::int32_t x, std::int32_t y);
void encode_move_ack(bytes &out, std::uint32_t seq, std::int32_t x, std::int32_t y);
void encode_chat_msg(bytes &out, chat_channel ch, std::string_view from, std::string_view text);
void encode_pong(bytes &out, const ping_msg &ping);
void encode_notice(bytes &out, notice_code code, std::string_view text);
void encode_bye(bytes &out, bye_reason reason);
void encode_error(bytes &out, close_reason code, std::string_view text);

} // namespace shard::proto
