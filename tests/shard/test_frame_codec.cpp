// The shard protocol's frame codec (examples/shard_server/protocol.hpp) as the server
// relies on it: strict limits decided from the header, exact payload shapes, every bad
// frame rejected with a reason, nothing read out of bounds (run under ASan in CI), and
// a seeded stream of random and mutated frames that never crashes the decoder.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "protocol.hpp"

namespace proto = shard::proto;

namespace {

struct decoded {
  proto::frame_decoder::status st;
  proto::frame f;
  std::size_t used = 0;
};

decoded decode(const proto::bytes &b, std::size_t max = proto::max_client_frame) {
  decoded d;
  d.st = proto::frame_decoder(max).next({b.data(), b.size()}, d.f, d.used);
  return d;
}

proto::client_message parse_one(const proto::bytes &b) {
  auto d = decode(b);
  EXPECT_EQ(d.st, proto::frame_decoder::status::frame);
  return proto::parse_client(d.f);
}

proto::bytes raw_frame(std::uint8_t op, std::vector<std::uint8_t> payload) {
  proto::bytes b;
  std::size_t len = payload.size() + 1;
  b.push_back(static_cast<std::uint8_t>(len));
  b.push_back(static_cast<std::uint8_t>(len >> 8));
  b.push_back(op);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

/// Re-encodes an accepted client message; must give back the decoded bytes.
proto::bytes reencode(const proto::client_message &m) {
  proto::bytes out;
  if (!proto::encode_client_message(out, m))
    ADD_FAILURE() << "accepted opcode " << int(m.op);
  return out;
}

/// One valid client frame of a random kind.
proto::bytes random_valid(std::mt19937_64 &rng) {
  proto::bytes b;
  auto name = [&] {
    std::string s;
    std::size_t n = 1 + rng() % proto::max_name;
    for (std::size_t i = 0; i < n; ++i)
      s += "abcXYZ019_-"[rng() % 11];
    return s;
  };
  switch (rng() % 8) {
  case 0:
    proto::encode_login(b, name());
    break;
  case 1:
    proto::encode_move(b, static_cast<std::uint32_t>(rng()), static_cast<std::int32_t>(rng()),
                       static_cast<std::int32_t>(rng()));
    break;
  case 2:
    proto::encode_chat(b, proto::chat_channel::zone, {}, "hi \xC3\xA9t\xC3\xA9 " + name());
    break;
  case 3:
    proto::encode_chat(b, proto::chat_channel::whisper, name(), "psst");
    break;
  case 4:
    proto::encode_zone_index(b,
                             rng() % 2 ? proto::opcode::change_zone : proto::opcode::enter_instance,
                             static_cast<std::uint16_t>(rng()));
    break;
  case 5:
    proto::encode_empty(b, rng() % 2 ? proto::opcode::logout : proto::opcode::leave_instance);
    break;
  default: {
    std::vector<std::uint8_t> pad(rng() % (proto::max_ping_pad + 1), 0x5A);
    proto::encode_ping(b, static_cast<std::uint32_t>(rng()), rng(), pad);
  }
  }
  return b;
}

} // namespace

TEST(ShardFrameCodec, EveryMessageRoundTripsThroughEncodeAndDecode) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 5000; ++i) {
    auto b = random_valid(rng);
    auto d = decode(b);
    ASSERT_EQ(d.st, proto::frame_decoder::status::frame);
    ASSERT_EQ(d.used, b.size());
    auto m = proto::parse_client(d.f);
    ASSERT_TRUE(m.ok) << "opcode " << int(d.f.op);
    EXPECT_EQ(reencode(m), b);
  }
}

TEST(ShardFrameCodec, LengthOverTheLimitIsRejectedFromTheHeaderAlone) {
  proto::bytes b{0x01, 0x02}; // length 513, no body yet
  EXPECT_EQ(decode(b).st, proto::frame_decoder::status::too_large);
  proto::bytes at_limit{static_cast<std::uint8_t>(proto::max_client_frame & 0xFF),
                        static_cast<std::uint8_t>(proto::max_client_frame >> 8)};
  EXPECT_EQ(decode(at_limit).st, proto::frame_decoder::status::need_more);
  proto::bytes big{0xFF, 0xFF};
  EXPECT_EQ(decode(big).st, proto::frame_decoder::status::too_large);
  EXPECT_EQ(decode(big, 65535).st, proto::frame_decoder::status::need_more);
}

TEST(ShardFrameCodec, ZeroLengthFrameIsRejected) {
  proto::bytes b{0x00, 0x00, 0x07};
  EXPECT_EQ(decode(b).st, proto::frame_decoder::status::empty_frame);
}

TEST(ShardFrameCodec, IncompleteFramesAskForMoreAtEveryCut) {
  proto::bytes b;
  proto::encode_chat(b, proto::chat_channel::whisper, "bot-1", "hello there");
  for (std::size_t cut = 0; cut < b.size(); ++cut) {
    proto::bytes part(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(cut));
    EXPECT_EQ(decode(part).st, proto::frame_decoder::status::need_more) << "cut " << cut;
  }
}

TEST(ShardFrameCodec, PayloadsOfTheWrongShapeAreMalformed) {
  // MOVE needs exactly 12 bytes.
  EXPECT_EQ(parse_one(raw_frame(0x02, std::vector<std::uint8_t>(11))).reason,
            proto::close_reason::malformed_frame);
  EXPECT_EQ(parse_one(raw_frame(0x02, std::vector<std::uint8_t>(13))).reason,
            proto::close_reason::malformed_frame);
  EXPECT_TRUE(parse_one(raw_frame(0x02, std::vector<std::uint8_t>(12))).ok);
  // LOGOUT carries nothing.
  EXPECT_EQ(parse_one(raw_frame(0x08, {1})).reason, proto::close_reason::malformed_frame);
  // A string length that runs past the payload.
  EXPECT_EQ(parse_one(raw_frame(0x01, {1, 0, 10, 'a', 'b'})).reason,
            proto::close_reason::malformed_frame);
  // Trailing bytes after a complete LOGIN.
  EXPECT_EQ(parse_one(raw_frame(0x01, {1, 0, 2, 'a', 'b', 0})).reason,
            proto::close_reason::malformed_frame);
  // Chat channel 2 does not exist.
  EXPECT_EQ(parse_one(raw_frame(0x03, {2, 1, 'x'})).reason, proto::close_reason::malformed_frame);
  // PING pad over 256 bytes.
  EXPECT_EQ(parse_one(raw_frame(0x07, std::vector<std::uint8_t>(12 + 257))).reason,
            proto::close_reason::malformed_frame);
  EXPECT_TRUE(parse_one(raw_frame(0x07, std::vector<std::uint8_t>(12 + 256))).ok);
}

TEST(ShardFrameCodec, NamesAndTextAreChecked) {
  EXPECT_TRUE(proto::valid_name("bot-17_X"));
  EXPECT_FALSE(proto::valid_name(""));
  EXPECT_FALSE(proto::valid_name("has space"));
  EXPECT_FALSE(proto::valid_name(std::string(proto::max_name + 1, 'a')));
  EXPECT_TRUE(proto::valid_text("gr\xC3\xBC\xC3\x9F"
                                "e \xE2\x82\xAC \xF0\x9F\x98\x80",
                                200));
  EXPECT_FALSE(proto::valid_text("tab\there", 200));        // control character
  EXPECT_FALSE(proto::valid_text("\xC0\xAF", 200));         // overlong '/'
  EXPECT_FALSE(proto::valid_text("\xED\xA0\x80", 200));     // surrogate
  EXPECT_FALSE(proto::valid_text("\xF4\x90\x80\x80", 200)); // above U+10FFFF
  EXPECT_FALSE(proto::valid_text("\xE2\x82", 200));         // truncated sequence
  EXPECT_FALSE(proto::valid_text(std::string(201, 'a'), 200));
  proto::bytes b;
  proto::encode_login(b, "bad name!");
  EXPECT_EQ(parse_one(b).reason, proto::close_reason::malformed_frame);
}

TEST(ShardFrameCodec, UnknownOpcodesAndServerOpcodesFromAClientAreRejected) {
  for (int op : {0x00, 0x09, 0x42, 0x7F, 0x81, 0x8F, 0xFF}) {
    auto m = parse_one(raw_frame(static_cast<std::uint8_t>(op), {}));
    EXPECT_FALSE(m.ok) << op;
    EXPECT_EQ(m.reason, proto::close_reason::unknown_opcode) << op;
  }
}

TEST(ShardFrameCodec, SeededRandomStreamNeverCrashesAndEveryFrameIsJudged) {
  // Random bytes and mutated valid frames, fed as a stream the way a session reads them
  // (in random-sized chunks). Every complete frame is either accepted — and then
  // re-encodes to exactly its bytes — or rejected with malformed_frame/unknown_opcode;
  // a bad header stops the stream (the server closes the session there).
  std::mt19937_64 rng(20261201);
  std::size_t accepted = 0, rejected = 0, headers_refused = 0;
  for (int round = 0; round < 3000; ++round) {
    proto::bytes stream;
    int frames = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < frames; ++k) {
      auto f = random_valid(rng);
      switch (rng() % 4) {
      case 0:
        break; // valid
      case 1:  // flip bytes (header included)
        for (int n = 0; n < 1 + static_cast<int>(rng() % 3); ++n)
          f[rng() % f.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
        break;
      case 2: // random bytes
        f.resize(rng() % 64);
        for (auto &c : f)
          c = static_cast<std::uint8_t>(rng());
        break;
      default: // truncate the payload but keep the header's length
        if (f.size() > 3)
          f.resize(3 + rng() % (f.size() - 3));
      }
      stream.insert(stream.end(), f.begin(), f.end());
    }
    // Feed it in chunks, keeping the tail of an incomplete frame like the session does.
    const proto::frame_decoder dec(proto::max_client_frame);
    std::vector<std::uint8_t> buf;
    std::size_t pos = 0;
    bool stop = false;
    while (pos < stream.size() && !stop) {
      std::size_t chunk = 1 + rng() % 40;
      std::size_t take = std::min(chunk, stream.size() - pos);
      buf.insert(buf.end(), stream.begin() + static_cast<std::ptrdiff_t>(pos),
                 stream.begin() + static_cast<std::ptrdiff_t>(pos + take));
      pos += take;
      std::size_t off = 0;
      for (;;) {
        proto::frame f;
        std::size_t used = 0;
        auto st = dec.next({buf.data() + off, buf.size() - off}, f, used);
        if (st == proto::frame_decoder::status::need_more)
          break;
        if (st != proto::frame_decoder::status::frame) {
          ++headers_refused;
          stop = true;
          break;
        }
        ASSERT_LE(used - proto::header_size, proto::max_client_frame);
        auto m = proto::parse_client(f);
        if (m.ok) {
          ++accepted;
          auto again = reencode(m);
          ASSERT_EQ(again.size(), used);
          ASSERT_EQ(0, std::memcmp(again.data(), buf.data() + off, used));
        } else {
          ++rejected;
          ASSERT_TRUE(m.reason == proto::close_reason::malformed_frame ||
                      m.reason == proto::close_reason::unknown_opcode);
        }
        (void)proto::parse_server(f); // the bots' decoder on the same bytes
        off += used;
      }
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(off));
    }
  }
  // The generator exercises all three outcomes.
  EXPECT_GT(accepted, 1000u);
  EXPECT_GT(rejected, 500u);
  EXPECT_GT(headers_refused, 100u);
}

TEST(ShardFrameCodec, ServerFramesParseStrictlyOnTheBotSide) {
  proto::bytes b;
  proto::frame_writer w(b, proto::opcode::update);
  w.u32(7);
  w.u16(2);
  for (int i = 0; i < 2; ++i) {
    w.u32(100 + i);
    w.u8(1);
    w.i32(-5);
    w.i32(9);
  }
  w.finish();
  auto d = decode(b, proto::max_server_frame);
  ASSERT_EQ(d.st, proto::frame_decoder::status::frame);
  auto m = proto::parse_server(d.f);
  ASSERT_TRUE(m.ok);
  EXPECT_EQ(m.count, 2);
  auto e = proto::update_entry_at(m.entries, 1);
  EXPECT_EQ(e.id, 101u);
  EXPECT_EQ(e.x, -5);
  EXPECT_EQ(e.y, 9);
  // A count that promises more entries than the frame holds is rejected.
  b[2 + 1 + 4] = 3;
  d = decode(b, proto::max_server_frame);
  EXPECT_FALSE(proto::parse_server(d.f).ok);
}
