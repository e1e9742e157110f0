// libFuzzer target: operation sequences on ramalloc's native API, decoded from the input
// bytes, checking every invariant the API promises after each step:
//   - a block keeps its contents until it is freed (realloc: up to the smaller size);
//   - usable sizes cover the request; acquire(size, align) honours align;
//   - query(p) names the block for its start and any interior byte, with the owner heap;
//   - a heap's live_blocks statistic equals the blocks the sequence holds in it;
//   - release_all frees exactly its heap's blocks; flush/reclaim change no live block.
// Heaps: the thread's own, plus up to two `ramalloc::heap`s (one over a static buffer),
// each made current with heap_scope while it allocates; checked mode may be switched on
// for a heap's life (its pages are then checked pages).
#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

namespace {

constexpr unsigned slot_count = 48;
constexpr unsigned heap_count = 3; // 0: thread heap, 1: OS heap, 2: static-buffer heap

struct slot {
  unsigned char *p = nullptr;
  std::size_t size = 0;
  std::uint8_t seed = 0;
  unsigned heap = 0;
};

struct reader {
  const std::uint8_t *data;
  std::size_t left;
  std::uint8_t byte() {
    if (left == 0)
      return 0;
    --left;
    return *data++;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v = v << 8 | byte();
    return v;
  }
};

#define REQUIRE(c) FUZZ_REQUIRE("fuzz_ops", c)

/// The bytes a block's contents are checked at: all of a small block; the first and last
/// 512 bytes and one byte per 4 KiB of a big one (a whole-block pattern on megabytes
/// would make the fuzzer too slow to explore).
/// Calls f(i) for the checked bytes i < limit of a block of `size` bytes.
template <class F>
void for_checked_bytes(std::size_t size, std::size_t limit, F f) {
  const std::size_t head = size < 512 ? size : 512;
  for (std::size_t i = 0; i < head && i < limit; ++i)
    f(i);
  for (std::size_t i = 4096; i + 512 < size && i < limit; i += 4096)
    f(i);
  for (std::size_t i = size > 1024 ? size - 512 : head; i < size && i < limit; ++i)
    f(i);
}
void fill(slot &s) {
  for_checked_bytes(s.size, s.size,
                    [&](std::size_t i) { s.p[i] = static_cast<unsigned char>(s.seed + i * 31); });
}
/// Checks the first `n` bytes of what fill() wrote for s.size bytes.
void verify(const slot &s, std::size_t n) {
  for_checked_bytes(s.size, n, [&](std::size_t i) {
    REQUIRE(s.p[i] == static_cast<unsigned char>(s.seed + i * 31));
  });
}

/// Sizes spread over every kind: tiny, small, medium, large, rarely huge.
std::size_t pick_size(reader &in) {
  const std::uint8_t k = in.byte();
  const std::uint32_t v = in.u32();
  switch (k % 8) {
  case 0:
    return v % 9; // 0..8: the native 4- and 8-byte classes
  case 1:
  case 2:
    return v % 256;
  case 3:
  case 4:
    return v % 8192;
  case 5:
    return v % (256 * 1024);
  case 6:
    return 256 * 1024 + v % (768 * 1024);
  default:
    return (k & 0xF8) == 0xF8 ? 33 * 1024 * 1024 + v % 4096 : v % 1024; // huge, rarely
  }
}

void check_block(const slot &s, const void *owner) {
  const auto info = ramalloc::query(s.p);
  REQUIRE(info.has_value());
  REQUIRE(info->start == s.p && info->is_start);
  REQUIRE(info->usable_size >= (s.size == 0 ? 1 : s.size));
  REQUIRE(owner == nullptr || info->owner == owner);
  if (s.size > 1) {
    const auto last = ramalloc::query(s.p + s.size - 1);
    REQUIRE(last.has_value() && last->start == s.p && !last->is_start);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  alignas(65536) static unsigned char buffer[1024 * 1024];
  reader in{data, size};
  ramalloc::options saved = ramalloc::get_options();
  ramalloc::options o = saved;
  o.on_invalid = ramalloc::options::on_invalid_mode::abort; // the sequence makes no bad frees
  o.checked = (in.byte() & 1) != 0;
  ramalloc::set_options(o);

  // The heaps live across inputs (so pages formatted in either mode meet, and an input
  // does not pay for building and purging heaps): every input ends with them empty.
  static std::optional<ramalloc::heap> heaps[heap_count];
  if (!heaps[1]) {
    heaps[1].emplace();
    heaps[2].emplace(buffer, sizeof buffer);
  }
  slot slots[slot_count];
  std::size_t live[heap_count] = {0, 0, 0};
  const void *ids[heap_count] = {nullptr, heaps[1]->id(), heaps[2]->id()};
  const std::uint64_t thread_live0 = ramalloc::current_heap().get_stats().live_blocks;

  auto heap_of = [&](unsigned h) -> ramalloc::heap & {
    return h == 0 ? ramalloc::current_heap() : *heaps[h];
  };
  auto drop = [&](slot &s) { // a local free (a remote one counts as live until reclaimed)
    verify(s, s.size);
    std::optional<ramalloc::heap_scope> scope;
    if (s.heap != 0)
      scope.emplace(*heaps[s.heap]);
    ramalloc::discard(s.p);
    --live[s.heap];
    s = slot{};
  };

  for (unsigned step = 0; step < 400 && in.left > 0; ++step) {
    const std::uint8_t op = in.byte();
    slot &s = slots[in.byte() % slot_count];
    const unsigned h = op % heap_count;
    switch ((op >> 2) % 8) {
    case 0:
    case 1: { // acquire (natural or explicit alignment)
      if (s.p != nullptr)
        drop(s);
      const std::size_t n = pick_size(in);
      const std::size_t align = (op & 0x80) ? std::size_t{1} << (in.byte() % 17) : 0;
      std::optional<ramalloc::heap_scope> scope;
      if (h != 0)
        scope.emplace(*heaps[h]);
      void *p = align ? ramalloc::acquire(n, align) : ramalloc::acquire(n);
      if (p == nullptr) {
        REQUIRE(h == 2); // only the static buffer may run out
        break;
      }
      if (align)
        REQUIRE(reinterpret_cast<std::uintptr_t>(p) % align == 0);
      s = slot{static_cast<unsigned char *>(p), n, in.byte(), h};
      fill(s);
      ++live[h];
      check_block(s, ids[h]);
      break;
    }
    case 2: // discard
      if (s.p != nullptr)
        drop(s);
      break;
    case 3: { // realloc (thread heap blocks only: ram_realloc allocates from the current heap)
      if (s.p == nullptr || s.heap != 0)
        break;
      const std::size_t n = pick_size(in) % (1024 * 1024);
      auto *q = static_cast<unsigned char *>(ram_realloc(s.p, n));
      if (q == nullptr)
        break;
      s.p = q;
      verify(s, n < s.size ? n : s.size);
      s.size = n;
      fill(s);
      check_block(s, nullptr);
      break;
    }
    case 4: // reclaim with a small budget, or flush
      if (op & 0x80)
        ramalloc::flush();
      else
        heap_of(h).reclaim(in.byte() % 8);
      break;
    case 5: // query of an interior byte of a live block
      if (s.p != nullptr && s.size > 0) {
        const std::size_t off = in.u32() % s.size;
        const auto info = ramalloc::query(s.p + off);
        REQUIRE(info && info->start == s.p && info->is_start == (off == 0));
      }
      break;
    case 6: // release_all of a private heap: every block of it is gone at once
      if (h != 0 && (op & 0x80)) {
        // Huge blocks (their own mappings) are not released: they stay valid.
        live[h] = 0;
        for (slot &t : slots) {
          if (t.p == nullptr || t.heap != h)
            continue;
          if (ramalloc::query(t.p)->kind == ramalloc::block_info::block_kind::huge)
            ++live[h];
          else
            t = slot{};
        }
        heaps[h]->release_all();
      }
      break;
    default: // statistics agree with what the sequence holds
      break;
    }
    for (unsigned k = 1; k < heap_count; ++k)
      REQUIRE(heaps[k]->get_stats().live_blocks == live[k]);
  }
  for (slot &s : slots)
    if (s.p != nullptr)
      drop(s);
  REQUIRE(ramalloc::current_heap().get_stats().live_blocks == thread_live0);
  REQUIRE(heaps[1]->get_stats().live_blocks == 0 && heaps[2]->get_stats().live_blocks == 0);
  ramalloc::set_options(saved);
  return 0;
}
