// libFuzzer target: the shard server's frame decoder and message parser on arbitrary
// bytes, exactly as a session feeds them (tests/fuzz/CMakeLists.txt says how to run it).
// Properties: no crash, no read out of bounds (ASan), every accepted client message
// re-encodes to the very bytes it was decoded from, every rejection names a reason.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "protocol.hpp"

namespace proto = shard::proto;

namespace {
/// Encodes an accepted message again, as the server's peers would have sent it.
proto::bytes reencode(const proto::client_message &m) {
  proto::bytes out;
  if (!proto::encode_client_message(out, m))
    std::abort();
  return out;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  const proto::frame_decoder dec(proto::max_client_frame);
  std::span<const std::uint8_t> in(data, size);
  while (!in.empty()) {
    proto::frame f;
    std::size_t used = 0;
    auto st = dec.next(in, f, used);
    if (st != proto::frame_decoder::status::frame)
      break;
    auto m = proto::parse_client(f);
    if (m.ok) {
      auto again = reencode(m);
      if (again.size() != used || std::memcmp(again.data(), in.data(), used) != 0)
        std::abort();
    } else if (m.reason != proto::close_reason::malformed_frame &&
               m.reason != proto::close_reason::unknown_opcode) {
      std::abort();
    }
    (void)proto::parse_server(f); // the bots' side of the codec must not crash either
    in = in.subspan(used);
  }
  return 0;
}
