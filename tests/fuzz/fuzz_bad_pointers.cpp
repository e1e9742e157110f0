// libFuzzer target: arbitrary addresses given to query, and (checked mode) to discard.
// The input makes a few live blocks in a private heap, then a list of addresses: raw
// 64-bit values, or a live block's start plus a signed offset. Invariants:
//   - query never faults, and answers "ours" only inside a block of ours, with the
//     block's start at or below the address;
//   - discard frees exactly the live block starts it is given (each reported otherwise:
//     one report per rejected free) and never disturbs the other blocks' contents;
//   - the heap's live_blocks statistic follows.
#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace {

constexpr unsigned max_blocks = 32;
std::size_t g_reports = 0;

void count_report(ram_error, const void *, const char *, void *) {
  ++g_reports;
}

#define REQUIRE(c) FUZZ_REQUIRE("fuzz_bad_pointers", c)

struct reader {
  const std::uint8_t *data;
  std::size_t left;
  std::uint64_t take(unsigned n) {
    std::uint64_t v = 0;
    for (unsigned i = 0; i < n && left > 0; ++i, --left)
      v = v << 8 | *data++;
    return v;
  }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  reader in{data, size};
  ramalloc::options saved = ramalloc::get_options();
  ramalloc::options o = saved;
  o.checked = true;
  o.on_invalid = ramalloc::options::on_invalid_mode::ignore;
  ramalloc::set_options(o);
  ram_set_error_handler(&count_report, nullptr);
  g_reports = 0;
  {
    std::optional<ramalloc::heap> zone;
    zone.emplace();
    unsigned char *blocks[max_blocks] = {};
    std::size_t sizes[max_blocks] = {};
    const unsigned n = 1 + static_cast<unsigned>(in.take(1) % max_blocks);
    {
      ramalloc::heap_scope scope(*zone);
      for (unsigned i = 0; i < n; ++i) {
        static constexpr std::size_t kinds[] = {4, 8, 16, 48, 1000, 4096, 20000, 262144, 300000};
        sizes[i] = kinds[in.take(1) % (sizeof kinds / sizeof kinds[0])];
        blocks[i] = static_cast<unsigned char *>(ramalloc::acquire(sizes[i]));
        REQUIRE(blocks[i] != nullptr);
        std::memset(blocks[i], static_cast<int>(i), sizes[i]);
      }
    }
    std::size_t live = n;
    ramalloc::heap_scope scope(*zone); // frees are local: live_blocks is exact at once
    while (in.left > 0) {
      const std::uint64_t mode = in.take(1);
      std::uintptr_t a;
      if (mode % 4 == 0) {
        a = static_cast<std::uintptr_t>(in.take(8));
      } else {
        const unsigned i = static_cast<unsigned>(in.take(1) % n);
        const auto off = static_cast<std::int64_t>(static_cast<std::int32_t>(in.take(4)));
        a = reinterpret_cast<std::uintptr_t>(blocks[i]) +
            static_cast<std::uintptr_t>(mode % 4 == 1 ? 0 : off);
      }
      const void *p = reinterpret_cast<const void *>(a);
      const auto info = ramalloc::query(p);
      if (info) {
        REQUIRE(reinterpret_cast<std::uintptr_t>(info->start) <= a);
        REQUIRE(a - reinterpret_cast<std::uintptr_t>(info->start) < info->usable_size);
        REQUIRE(info->is_start == (info->start == p));
      }
      if ((mode & 0x10) == 0)
        continue; // query only
      int which = -1;
      for (unsigned i = 0; i < n; ++i)
        if (blocks[i] != nullptr && reinterpret_cast<std::uintptr_t>(blocks[i]) == a)
          which = static_cast<int>(i);
      const std::size_t reports_before = g_reports;
      ramalloc::discard(const_cast<void *>(p));
      if (which >= 0) {
        REQUIRE(g_reports == reports_before); // a live block start is freed silently
        blocks[which] = nullptr;
        --live;
      } else if (a != 0) {
        REQUIRE(g_reports == reports_before + 1); // anything else is reported, once
      }
      REQUIRE(zone->get_stats().live_blocks == live);
    }
    for (unsigned i = 0; i < n; ++i) {
      if (blocks[i] == nullptr)
        continue;
      for (std::size_t k = 0; k < sizes[i]; ++k)
        REQUIRE(blocks[i][k] == static_cast<unsigned char>(i));
      ramalloc::discard(blocks[i]);
    }
    zone->flush();
    REQUIRE(zone->get_stats().live_blocks == 0);
  }
  ram_set_error_handler(nullptr, nullptr);
  ramalloc::set_options(saved);
  return 0;
}
