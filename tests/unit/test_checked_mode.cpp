// The bad-input matrix of issue 12, in checked mode (RAMALLOC_CHECKED) and in fast mode:
// each shape of double free and invalid free at a small (8 B), a page-sized (4 KiB) and a
// large (256 KiB) allocation, plus the 4-byte native class. Checked mode must report every
// one at the call, with the block's start, size class and heap; fast mode must report
// what glibc's cheap checks report (and more), and neither may corrupt the heap: after
// each bad free the allocator still hands out distinct, intact blocks.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <alloca.h>
#include <sys/mman.h>

#include <atomic>
#include <cinttypes>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

using namespace ramalloc_test;

// The tests compare pointers after freeing them (reports name the freed address).
#pragma GCC diagnostic ignored "-Wuse-after-free"

namespace ramalloc::detail {
#if defined(RAMALLOC_DEBUG)
extern void (*g_huge_release_test_hook)(void *p) noexcept;
#endif
} // namespace ramalloc::detail

namespace {

/// Checked mode on or off for the test, and a fresh heap (so every page it uses is
/// formatted in that mode) current on this thread; reports are recorded, not aborted on.
class ModeZone {
public:
  explicit ModeZone(bool checked) : errors_(ramalloc::options::on_invalid_mode::warn) {
    ramalloc::options o = ramalloc::get_options();
    o.checked = checked;
    EXPECT_TRUE(ramalloc::set_options(o));
    zone_.emplace();
    scope_.emplace(*zone_);
  }
  ~ModeZone() {
    scope_.reset();
    zone_.reset(); // the recorder (destroyed next) restores the options
  }
  error_recorder &errors() { return errors_; }
  ramalloc::heap &zone() { return *zone_; }

private:
  error_recorder errors_;
  std::optional<ramalloc::heap> zone_;
  std::optional<ramalloc::heap_scope> scope_;
};

/// The reports since the last call, then forgets them.
std::vector<error_recorder::report> take(error_recorder &e) {
  auto r = e.reports();
  e.clear();
  return r;
}

/// Exactly one report of `kind` about `p`, naming the block's start, size class and heap.
void expect_block_report(error_recorder &e, ram_error kind, const void *p, const void *start,
                         const void *heap_id) {
  const auto r = take(e);
  ASSERT_EQ(r.size(), 1u) << "expected one " << error_name(kind) << " report";
  EXPECT_EQ(r[0].error, kind) << error_name(r[0].error) << ": " << r[0].message;
  EXPECT_EQ(r[0].pointer, p);
  char block[64], owner[64];
  std::snprintf(block, sizeof block, "block %p", start);
  std::snprintf(owner, sizeof owner, "heap %p", heap_id);
  EXPECT_NE(r[0].message.find(block), std::string::npos) << r[0].message;
  EXPECT_NE(r[0].message.find("size class"), std::string::npos) << r[0].message;
  EXPECT_NE(r[0].message.find(owner), std::string::npos) << r[0].message;
  EXPECT_EQ(r[0].message.find('\n'), std::string::npos) << "one line";
}

void expect_no_report(error_recorder &e) {
  const auto r = take(e);
  EXPECT_TRUE(r.empty()) << error_name(r[0].error) << ": " << r[0].message;
}

/// After a bad free: `n` blocks of `size` are distinct, writable and keep their contents
/// (a block freed twice into a list would come out twice).
void expect_heap_sound(std::size_t size, std::size_t n = 200) {
  expect_distinct_blocks(size, n);
}

using shape_param = std::tuple<bool /*checked*/, std::size_t /*size*/>;

class DoubleFree : public testing::TestWithParam<shape_param> {
protected:
  bool checked() const { return std::get<0>(GetParam()); }
  std::size_t size() const { return std::get<1>(GetParam()); }
};

std::string shape_name(const testing::TestParamInfo<shape_param> &info) {
  return std::string(std::get<0>(info.param) ? "Checked" : "Fast") + "_" +
         std::to_string(std::get<1>(info.param)) + "B";
}

TEST_P(DoubleFree, ImmediateIsReported) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  ram_free(a);
  expect_no_report(m.errors());
  ram_free(a);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  expect_heap_sound(size());
}

TEST_P(DoubleFree, DelayedBehindOtherFreesIsReported) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  std::vector<void *> others;
  for (int i = 0; i < 100; ++i)
    others.push_back(ram_malloc(size()));
  ram_free(a);
  for (void *o : others)
    ram_free(o);
  expect_no_report(m.errors());
  ram_free(a);
  if (checked()) {
    // An empty checked page waits purge_delay before it goes back: the block is still
    // known, and its live bit says it is free.
    expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  } else {
    // Fast mode: a's page emptied and went back at once unless other blocks keep it: the
    // second free then finds no live block there (glibc: "double free or corruption").
    const auto r = take(m.errors());
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].error == RAM_ERROR_DOUBLE_FREE ||
                (r[0].error == RAM_ERROR_INVALID_FREE &&
                 r[0].message.find("already freed?") != std::string::npos))
        << r[0].message;
  }
  expect_heap_sound(size());
}

TEST_P(DoubleFree, InterleavedFreeAFreeBFreeAIsReported) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  void *b = ram_malloc(size());
  ram_free(a);
  ram_free(b);
  ram_free(a);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  expect_heap_sound(size());
}

TEST_P(DoubleFree, AfterTheBlockWasReusedAndFreedAgainIsReported) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  ram_free(a);
  // Allocate until a's address comes back (checked mode's quarantine delays it), then free
  // that reuse: the stale pointer's free now finds the block free.
  std::vector<void *> held;
  void *again = nullptr;
  for (int i = 0; i < 1000 && again == nullptr; ++i) {
    void *p = ram_malloc(size());
    if (p == a)
      again = p;
    else
      held.push_back(p);
    if (held.size() > 64) { // keep the quarantine turning
      ram_free(held.front());
      held.erase(held.begin());
    }
  }
  ASSERT_EQ(again, a) << "the address was never handed out again";
  ram_free(again);
  expect_no_report(m.errors());
  ram_free(a);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  for (void *p : held)
    ram_free(p);
  expect_no_report(m.errors());
  expect_heap_sound(size());
}

TEST_P(DoubleFree, AfterASingleReuseIsReportedInCheckedModeOnly) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  ram_free(a);
  void *b = ram_malloc(size()); // the next block of that size
  fill_pattern(b, size(), 9);
  ram_free(a); // the stale pointer
  if (checked()) {
    // The quarantine kept a's block out of circulation: b is another block, and the
    // stale free is a double free.
    EXPECT_NE(b, a);
    expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
    EXPECT_EQ(first_pattern_mismatch(b, size(), 9), size()) << "b must be untouched";
    ram_free(b);
  } else {
    // Fast mode, like glibc's tcache, hands the block just freed out again: b is a, and
    // the stale free frees b (no allocator without quarantine can tell them apart).
    EXPECT_EQ(b, a);
    expect_no_report(m.errors());
  }
  expect_no_report(m.errors());
  expect_heap_sound(size());
}

TEST_P(DoubleFree, RemoteThenLocalIsReported) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  std::thread([a] { ram_free(a); }).join();
  ram_free(a);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  ramalloc::flush();
  expect_heap_sound(size());
}

INSTANTIATE_TEST_SUITE_P(Shapes, DoubleFree,
                         testing::Combine(testing::Bool(),
                                          testing::Values(std::size_t{8}, 4 * KiB, 256 * KiB)),
                         shape_name);

class InvalidFree : public DoubleFree {};

TEST_P(InvalidFree, StackAllocaFarAndForeignPointersAreReported) {
  ModeZone m(checked());
  int on_stack = 1;
  void *on_alloca = alloca(size());
  void *mapping = ::mmap(nullptr, 64 * KiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  for (void *p : {static_cast<void *>(&on_stack), on_alloca, mapping,
                  reinterpret_cast<void *>(0x10000000deadull)}) {
    ram_free(p);
    const auto r = take(m.errors());
    ASSERT_EQ(r.size(), 1u) << p;
    EXPECT_EQ(r[0].error, RAM_ERROR_INVALID_FREE) << r[0].message;
    EXPECT_EQ(r[0].pointer, p);
  }
  ::munmap(mapping, 64 * KiB);
  EXPECT_EQ(on_stack, 1);
  expect_heap_sound(size());
}

TEST_P(InvalidFree, UnalignedAndInteriorPointersAreReportedWithTheirBlock) {
  ModeZone m(checked());
  auto *a = static_cast<char *>(ram_malloc(size()));
  fill_pattern(a, size(), 3);
  for (std::size_t off : {std::size_t{1}, std::size_t{4}, size() / 2, size() - 1}) {
    ram_free(a + off);
    expect_block_report(m.errors(), RAM_ERROR_INTERIOR_FREE, a + off, a, m.zone().id());
  }
  EXPECT_EQ(first_pattern_mismatch(a, size(), 3), size()) << "the block was changed";
  ram_free(a);
  expect_no_report(m.errors());
  expect_heap_sound(size());
}

TEST_P(InvalidFree, OnePastTheBlockIsReportedUnlessItIsALiveNeighbour) {
  ModeZone m(checked());
  auto *a = static_cast<char *>(ram_malloc(size()));
  const std::size_t usable = ram_usable_size(a);
  ram_free(a + size());
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u) << "one past the block";
  if (size() < usable) {
    EXPECT_EQ(r[0].error, RAM_ERROR_INTERIOR_FREE) << r[0].message;
  } else {
    // The next block's start: never handed out in this fresh heap, or free.
    EXPECT_TRUE(r[0].error == RAM_ERROR_INVALID_FREE || r[0].error == RAM_ERROR_DOUBLE_FREE)
        << r[0].message;
  }
  ram_free(a);
  expect_no_report(m.errors());
  expect_heap_sound(size());
}

TEST_P(InvalidFree, IntoALiveNeighbourIsReportedAndLeavesBothBlocks) {
  ModeZone m(checked());
  auto *a = static_cast<char *>(ram_malloc(size()));
  auto *b = static_cast<char *>(ram_malloc(size()));
  auto *hi = std::max(a, b);
  fill_pattern(a, size(), 1);
  fill_pattern(b, size(), 2);
  char *inside = hi + ram_usable_size(hi) / 2; // inside whichever block comes second
  ram_free(inside);
  expect_block_report(m.errors(), RAM_ERROR_INTERIOR_FREE, inside, hi, m.zone().id());
  EXPECT_EQ(first_pattern_mismatch(a, size(), 1), size());
  EXPECT_EQ(first_pattern_mismatch(b, size(), 2), size());
  ram_free(a);
  ram_free(b);
  expect_no_report(m.errors());
}

TEST_P(InvalidFree, ANeverAllocatedBlockIsReported) {
  ModeZone m(checked());
  auto *a = static_cast<char *>(ram_malloc(size()));
  const std::size_t usable = ram_usable_size(a);
  // Past the bump index of this fresh page: small classes thread up to 4 KiB of blocks
  // per extension, larger ones one block; a page holds at least 8.
  char *never = a + (usable < 1024 ? 4096 / usable + 8 : 7) * usable;
  ram_free(never);
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_INVALID_FREE) << r[0].message;
  EXPECT_NE(r[0].message.find("never allocated"), std::string::npos) << r[0].message;
  ram_free(a);
  expect_heap_sound(size());
}

TEST_P(InvalidFree, ABlockThreadedButNeverHandedOutIsReportedAndNotListedTwice) {
  ModeZone m(checked());
  auto *a = static_cast<char *>(ram_malloc(size()));
  const std::size_t usable = ram_usable_size(a);
  if (usable >= 1024)
    GTEST_SKIP() << "one block per extension: the next block is past the bump index";
  char *threaded = a + 3 * usable; // on the free list, never handed out
  ram_free(threaded);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, threaded, threaded, m.zone().id());
  ram_free(a);
  expect_heap_sound(size(), 1000);
}

TEST_P(InvalidFree, ReallocOfAFreedBlockIsReportedAndReturnsNull) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  ram_free(a);
  errno = 0;
  EXPECT_EQ(ram_realloc(a, size() * 2), nullptr);
  EXPECT_EQ(errno, EINVAL);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  expect_heap_sound(size());
}

TEST_P(InvalidFree, SizedFreeOfAnotherClassIsReportedInCheckedModeAndTheBlockIsFreed) {
  ModeZone m(checked());
  void *a = ram_malloc(size());
  const ram_stats before = m.zone().get_stats();
  ram_free_sized(a, size() * 4 + 1);
  if (checked())
    expect_block_report(m.errors(), RAM_ERROR_SIZE_MISMATCH, a, a, m.zone().id());
  else
    expect_no_report(m.errors()); // fast mode ignores the size (as glibc does)
  EXPECT_EQ(m.zone().get_stats().live_blocks, before.live_blocks - 1) << "still freed";
  void *b = ram_malloc(size());
  ram_free_sized(b, size()); // the right size: silent
  expect_no_report(m.errors());
}

INSTANTIATE_TEST_SUITE_P(Shapes, InvalidFree,
                         testing::Combine(testing::Bool(),
                                          testing::Values(std::size_t{8}, 4 * KiB, 256 * KiB)),
                         shape_name);

// --- the 4-byte class (native API only) ---------------------------------------------------

TEST(TinyDoubleFree, FastModeReportsAnImmediateLocalOrRemoteDoubleFree) {
  ModeZone m(false);
  void *a = ramalloc::acquire(4);
  ramalloc::discard(a);
  ramalloc::discard(a);
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  void *b = ramalloc::acquire(4);
  std::thread([b] {
    ramalloc::discard(b);
    ramalloc::discard(b);
  }).join();
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, b, b, m.zone().id());
}

TEST(TinyDoubleFree, CheckedModeReportsEveryShape) {
  ModeZone m(true);
  void *a = ramalloc::acquire(4);
  void *b = ramalloc::acquire(4);
  std::vector<void *> others;
  for (int i = 0; i < 300; ++i)
    others.push_back(ramalloc::acquire(4));
  ramalloc::discard(a);
  ramalloc::discard(b);
  for (void *o : others)
    ramalloc::discard(o);
  ramalloc::discard(a); // delayed, interleaved
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, a, a, m.zone().id());
  void *c = ramalloc::acquire(4);
  std::thread([c] { ramalloc::discard(c); }).join();
  ramalloc::discard(c); // remote, then local
  expect_block_report(m.errors(), RAM_ERROR_DOUBLE_FREE, c, c, m.zone().id());
  // Distinct blocks afterwards.
  std::set<void *> seen;
  std::vector<void *> again;
  for (int i = 0; i < 2000; ++i) {
    void *p = ramalloc::acquire(4);
    EXPECT_TRUE(seen.insert(p).second) << p << " handed out twice";
    again.push_back(p);
  }
  for (void *p : again)
    ramalloc::discard(p);
  expect_no_report(m.errors());
}

TEST(CheckedMode, RacingDoubleFreesFreeTheBlockExactlyOnce) {
  ModeZone m(true);
  constexpr int rounds = 200;
  ramalloc::heap blocks_heap; // only these blocks (the harness allocates from the zone)
  std::vector<void *> blocks;
  for (int i = 0; i < rounds; ++i)
    blocks.push_back(blocks_heap.acquire(4 + (i % 3) * 60));
  std::atomic<int> go{0};
  auto freer = [&] {
    go.fetch_add(1);
    while (go.load() < 2) {
    }
    for (void *p : blocks)
      ramalloc::discard(p);
  };
  std::thread t1(freer), t2(freer);
  t1.join();
  t2.join();
  // Each block: one free succeeded, the other was a reported double free.
  EXPECT_EQ(m.errors().count(), static_cast<std::size_t>(rounds));
  for (const auto &r : m.errors().reports())
    EXPECT_EQ(r.error, RAM_ERROR_DOUBLE_FREE) << r.message;
  m.errors().clear();
  blocks_heap.flush(); // takes the remote frees
  EXPECT_EQ(blocks_heap.get_stats().live_blocks, 0u);
}

TEST(CheckedMode, APageEmptiedByRemoteFreesIsAllocatedFromAgain) {
  // A producer/consumer shape: every block is freed by another thread. The pages that
  // fill up and then empty through remote frees must serve the next allocations (their
  // live bits say every block is free), not wait purge_delay while fresh pages are
  // formatted: memory stays at the live data's size.
  ModeZone m(true);
  ramalloc::options o = ramalloc::get_options();
  o.purge_delay_ms = 3600 * 1000; // nothing is retired by time during the test
  ASSERT_TRUE(ramalloc::set_options(o));
  ramalloc::heap own;            // only these blocks (with the override, the harness uses the zone)
  constexpr int per_round = 500; // about 8 pages of 1 KiB blocks
  std::uint64_t committed_after_first = 0;
  std::vector<void *> v;
  v.reserve(per_round);
  for (int round = 0; round < 20; ++round) {
    v.clear();
    for (int i = 0; i < per_round; ++i)
      v.push_back(own.acquire(1024));
    std::thread([&v] {
      for (void *p : v)
        ramalloc::discard(p);
    }).join();
    own.reclaim(1000); // takes the remote frees
    if (round == 0)
      committed_after_first = own.get_stats().committed_bytes;
  }
  EXPECT_EQ(own.get_stats().committed_bytes, committed_after_first);
  EXPECT_EQ(own.get_stats().live_blocks, 0u);
  expect_no_report(m.errors());
}

TEST(CheckedMode, AnOwnersFreeRacingARemoteFreeOfTheSameBlockFreesItExactlyOnce) {
  // The owner hands blocks out without an atomic read-modify-write and frees them
  // locally (into its quarantine) while another thread frees the same blocks remotely:
  // for each block exactly one of the two frees wins, and no block is ever listed twice.
  ModeZone m(true);
  constexpr int rounds = 300;
  std::vector<void *> blocks(rounds);
  std::atomic<int> go{0};
  std::size_t handed_twice = 0;
  std::uint64_t live_after = 1;
  std::thread owner([&] {
    ramalloc::heap own;
    {
      ramalloc::heap_scope scope(own);
      for (int i = 0; i < rounds; ++i)
        blocks[i] = ramalloc::acquire(16 + (i % 4) * 48);
      go.fetch_add(1);
      while (go.load() < 2) {
      }
      for (void *p : blocks)
        ramalloc::discard(p);
      while (go.load() < 3) { // the other thread is done
      }
      ramalloc::flush(); // quarantine, remote frees
      std::set<void *> seen;
      std::vector<void *> again;
      for (int i = 0; i < 4 * rounds; ++i) {
        void *p = ramalloc::acquire(16 + (i % 4) * 48);
        handed_twice += !seen.insert(p).second;
        again.push_back(p);
      }
      for (void *p : again)
        ramalloc::discard(p);
      ramalloc::flush();
    }
    live_after = own.get_stats().live_blocks;
  });
  while (go.load() < 1) {
  }
  go.fetch_add(1);
  for (void *p : blocks)
    ramalloc::discard(p);
  go.fetch_add(1);
  owner.join();
  EXPECT_EQ(m.errors().count(), static_cast<std::size_t>(rounds));
  for (const auto &r : m.errors().reports())
    EXPECT_EQ(r.error, RAM_ERROR_DOUBLE_FREE) << r.message;
  m.errors().clear();
  EXPECT_EQ(handed_twice, 0u);
  EXPECT_EQ(live_after, 0u);
}

// --- write after free ---------------------------------------------------------------------

TEST(CheckedMode, AWriteIntoAFreedBlockIsReportedWhenItLeavesTheQuarantine) {
  ModeZone m(true);
  auto *a = static_cast<unsigned char *>(ram_malloc(64));
  ram_free(a);
  ramalloc_test_common::asan_unpoison(a, 64); // ASan would catch it first
  a[20] = 0x41;                               // use after free
  ramalloc::flush();                          // releases the quarantine (as 64 later frees would)
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_WRITE_AFTER_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, a + 20);
  EXPECT_NE(r[0].message.find("byte 20"), std::string::npos) << r[0].message;
}

// The pattern is compared a word (or 16 bytes) at a time: a change to any one byte of the
// promised range — its first, the last of each word, its last — is still named exactly,
// at every block size (4 and 8 bytes native, 16..112 in 16-byte steps, 128 and more), and
// a byte past the range is not promised.
using pattern_param = std::tuple<std::size_t /*size*/, std::size_t /*byte*/>;
class WriteAfterFree : public testing::TestWithParam<pattern_param> {};

/// The block size `acquire(size)` gets, and the bytes of it the pattern covers.
std::size_t promised_bytes(std::size_t size) {
  const auto info = ramalloc::query(ramalloc::acquire(size));
  const std::size_t bs = info->usable_size;
  ramalloc::discard(info->start);
  return bs < 128 ? bs : 128;
}

TEST_P(WriteAfterFree, AnyPromisedByteIsNamedWhenTheBlockLeavesTheQuarantine) {
  const auto [size, byte] = GetParam();
  ModeZone m(true);
  const std::size_t promised = promised_bytes(size);
  m.errors().clear();
  ramalloc::flush();
  auto *a = static_cast<unsigned char *>(ramalloc::acquire(size));
  ramalloc::discard(a);
  const std::size_t at = byte == SIZE_MAX ? promised - 1 : byte;
  if (at >= promised)
    GTEST_SKIP() << "past the block";
  ramalloc_test_common::asan_unpoison(a + at, 1); // ASan would catch it first
  a[at] ^= 0x01; // one bit of one byte: a use after free
  ramalloc::flush(); // releases the quarantine
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u) << "byte " << at << " of " << promised;
  EXPECT_EQ(r[0].error, RAM_ERROR_WRITE_AFTER_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, a + at);
  EXPECT_NE(r[0].message.find("byte " + std::to_string(at) + " of it changed"), std::string::npos)
      << r[0].message;
}

TEST_P(WriteAfterFree, AnyPromisedByteButTheLinkIsNamedWhenTheBlockIsHandedOutAgain) {
  const auto [size, byte] = GetParam();
  ModeZone m(true);
  const std::size_t promised = promised_bytes(size);
  const std::size_t at = byte == SIZE_MAX ? promised - 1 : byte;
  if (at >= promised)
    GTEST_SKIP() << "past the block";
  if (at < 4)
    GTEST_SKIP() << "bytes 0..3 of a listed block hold its encoded link (checked when popped)";
  ramalloc::heap own; // its pages hold only these blocks
  ramalloc::heap_scope scope(own);
  auto *a = static_cast<unsigned char *>(ramalloc::acquire(size));
  void *keep = ramalloc::acquire(size); // the page stays in use
  ramalloc::discard(a);
  ramalloc::flush(); // out of the quarantine, verified intact, onto its page's list
  m.errors().clear();
  ramalloc_test_common::asan_unpoison(a + at, 1); // ASan would catch it first
  a[at] ^= 0x80;
  void *again = ramalloc::acquire(size); // the list's head: `a`
  ASSERT_EQ(again, a);
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u) << "byte " << at << " of " << promised;
  EXPECT_EQ(r[0].error, RAM_ERROR_WRITE_AFTER_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, a + at);
  EXPECT_NE(r[0].message.find("when it was handed out again"), std::string::npos) << r[0].message;
  ramalloc::discard(again);
  ramalloc::discard(keep);
}

TEST(CheckedMode, AWriteAfterTheFirst128BytesIsNotPromised) {
  ModeZone m(true);
  auto *a = static_cast<unsigned char *>(ram_malloc(256));
  ram_free(a);
  ramalloc_test_common::asan_unpoison(a + 128, 1); // ASan would catch it first
  a[128] = 0x41; // past the pattern: not seen (documented)
  ramalloc::flush();
  expect_no_report(m.errors());
}

INSTANTIATE_TEST_SUITE_P(
    Bytes, WriteAfterFree,
    testing::Combine(testing::Values(std::size_t{4}, std::size_t{8}, std::size_t{16},
                                     std::size_t{48}, std::size_t{112}, std::size_t{128},
                                     std::size_t{200}, std::size_t{4096}, std::size_t{256 * 1024}),
                     testing::Values(std::size_t{0}, std::size_t{3}, std::size_t{4}, std::size_t{7},
                                     std::size_t{8}, std::size_t{15},
                                     SIZE_MAX /* the last promised byte */)),
    [](const testing::TestParamInfo<pattern_param> &info) {
      const std::size_t b = std::get<1>(info.param);
      return std::to_string(std::get<0>(info.param)) + "B_byte" +
             (b == SIZE_MAX ? std::string("Last") : std::to_string(b));
    });

TEST(CheckedMode, AnOverwrittenFreeListLinkNeverYieldsAForeignAddress) {
  ModeZone m(true);
  std::vector<unsigned char *> blocks;
  for (int i = 0; i < 8; ++i)
    blocks.push_back(static_cast<unsigned char *>(ram_malloc(48)));
  void *keep = ram_malloc(48); // the page stays in use
  std::vector<void *> others;
  for (int i = 0; i < 80; ++i)
    others.push_back(ram_malloc(32));
  for (auto *b : blocks)
    ram_free(b);
  for (void *o : others) // pushes the 48-byte blocks out of the quarantine onto the list
    ram_free(o);
  // A use-after-free write over a link (what an attacker would aim at).
  const std::uint32_t evil = 0x100;
  ramalloc_test_common::asan_unpoison(blocks[3], 48); // ASan would catch them first
  ramalloc_test_common::asan_unpoison(blocks[5], 48);
  std::memcpy(blocks[3], &evil, sizeof evil);
  std::memset(blocks[5], 0x11, 48);
  std::vector<void *> out;
  for (int i = 0; i < 64; ++i) {
    void *p = ram_malloc(48);
    ASSERT_NE(p, nullptr);
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    EXPECT_TRUE(info->is_start) << p << " is not a block start";
    out.push_back(p);
  }
  const auto r = take(m.errors());
  ASSERT_GE(r.size(), 1u);
  for (const auto &x : r)
    EXPECT_EQ(x.error, RAM_ERROR_WRITE_AFTER_FREE) << x.message;
  for (void *p : out)
    ram_free(p);
  ram_free(keep);
}

TEST(CheckedMode, ContentsSurviveAndStatisticsStayExact) {
  ModeZone m(true);
  ramalloc::heap own; // only these blocks (with the override, the harness uses the zone)
  std::vector<void *> v;
  v.reserve(3000);
  std::size_t mismatches = 0;
  {
    ramalloc::heap_scope scope(own);
    for (std::size_t i = 0; i < 3000; ++i) {
      const std::size_t n = 1 + (i * 37) % 5000;
      void *p = i % 2 ? ram_malloc(n) : ramalloc::acquire(n);
      fill_pattern(p, n, i);
      v.push_back(p);
    }
    for (std::size_t i = 0; i < v.size(); ++i)
      mismatches += first_pattern_mismatch(v[i], 1 + (i * 37) % 5000, i) != 1 + (i * 37) % 5000;
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(own.get_stats().live_blocks, 3000u);
  {
    ramalloc::heap_scope scope(own);
    for (void *p : v)
      ramalloc::discard(p);
  }
  EXPECT_EQ(own.get_stats().live_blocks, 0u);
  expect_no_report(m.errors());
}

TEST(CheckedMode, IsReadFromTheEnvironmentAndSetOption) {
  EXPECT_FALSE(ramalloc::get_options().checked);
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_CHECKED", "1"));
  EXPECT_TRUE(ramalloc::get_options().checked);
  EXPECT_TRUE(ramalloc::set_option("RAMALLOC_CHECKED", "off"));
  EXPECT_FALSE(ramalloc::get_options().checked);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ::setenv("RAMALLOC_CHECKED", "1", 1);
        // A fresh process reads the environment at its first call (a death-test child has
        // loaded the options already: set them too).
        ramalloc::set_option("RAMALLOC_CHECKED", "1");
        ramalloc::set_option("RAMALLOC_ON_INVALID", "abort");
        ramalloc::heap zone;
        ramalloc::heap_scope scope(zone);
        void *p = ramalloc::acquire(4);
        ramalloc::discard(p);
        ramalloc::discard(p);
        std::_Exit(0);
      },
      "double free: the block is already free: 0x");
}

// --- huge blocks: a stale double free never unmaps the block a recycled descriptor holds ---

#if defined(RAMALLOC_DEBUG)
std::byte *g_stale = nullptr;
std::byte *g_fresh = nullptr;

class HugeStaleFree : public testing::TestWithParam<bool> {};

TEST_P(HugeStaleFree, NeverUnmapsTheBlockARecycledDescriptorHolds) {
  ModeZone m(GetParam());
  g_stale = static_cast<std::byte *>(ram_malloc(40 * MiB));
  ASSERT_NE(g_stale, nullptr);
  // The stale (second) free of g_stale passes its checks; before it claims the block, the
  // first free completes and a new huge block reuses the descriptor.
  ramalloc::detail::g_huge_release_test_hook = [](void *) noexcept {
    ramalloc::detail::g_huge_release_test_hook = nullptr;
    ram_free(g_stale);
    g_fresh = static_cast<std::byte *>(ram_malloc(48 * MiB));
  };
  ram_free(g_stale);
  ramalloc::detail::g_huge_release_test_hook = nullptr;
  ASSERT_NE(g_fresh, nullptr);
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_DOUBLE_FREE) << r[0].message;
  const auto info = ramalloc::query(g_fresh);
  ASSERT_TRUE(info.has_value()) << "the new block was unmapped by the stale free";
  EXPECT_TRUE(info->is_start);
  std::memset(g_fresh, 0x5a, 48 * MiB); // faults if it was unmapped
  ram_free(g_fresh);
  expect_no_report(m.errors());
}

INSTANTIATE_TEST_SUITE_P(Modes, HugeStaleFree, testing::Bool(),
                         [](const testing::TestParamInfo<bool> &i) {
                           return i.param ? "Checked" : "Fast";
                         });
#endif

} // namespace

// --- delete / delete[] mismatches and sized delete (the override's operator delete) -------

#if RAMALLOC_TEST_WITH_OVERRIDE
namespace {

template <class T>
T *launder_ptr(T *p) {
  asm volatile("" : "+r"(p) : : "memory");
  return p;
}

/// A type with a destructor: new[] of it stores the element count in front of the array.
template <std::size_t N>
struct non_trivial {
  unsigned char bytes[N];
  ~non_trivial() { asm volatile("" ::: "memory"); }
};

class NewDeleteMismatch : public DoubleFree {};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

TEST_P(NewDeleteMismatch, DeleteOfNewArrayOfATrivialTypeIsASizeMismatchInCheckedMode) {
  ModeZone m(checked());
  const std::size_t count = size() / sizeof(std::uint64_t);
  auto *p = launder_ptr(new std::uint64_t[count]);
  const ram_stats before = m.zone().get_stats();
  delete p; // sized delete of sizeof(uint64_t): the block holds `count` of them
  if (checked() && count > 1)
    expect_block_report(m.errors(), RAM_ERROR_SIZE_MISMATCH, p, p, m.zone().id());
  else
    expect_no_report(m.errors()); // one element, or fast mode: indistinguishable, harmless
  EXPECT_EQ(m.zone().get_stats().live_blocks, before.live_blocks - 1) << "still freed";
}

TEST_P(NewDeleteMismatch, DeleteArrayOfNewOfATrivialTypeFreesTheBlock) {
  ModeZone m(checked());
  auto *p = launder_ptr(new std::uint64_t(7));
  const ram_stats before = m.zone().get_stats();
  delete[] p; // no count stored for trivial types: the same unsized free as delete
  expect_no_report(m.errors());
  EXPECT_EQ(m.zone().get_stats().live_blocks, before.live_blocks - 1);
}

TEST_P(NewDeleteMismatch, DeleteOfNewArrayOfANonTrivialTypeIsAnInteriorFree) {
  ModeZone m(checked());
  using T = non_trivial<8>;
  const std::size_t count = size() / 8;
  T *p = launder_ptr(new T[count]); // the block starts 8 bytes before p (the count)
  delete p;                         // frees p itself: inside the block
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_INTERIOR_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, p);
  delete[] p; // the right way still works
  expect_no_report(m.errors());
}

template <std::size_t N>
void delete_array_of_new(ModeZone &m) {
  using T = non_trivial<N>;
  // A zeroed neighbour of the same class in front, so the "count" delete[] reads before
  // the object is 0 and no destructor runs on memory that is not an array.
  auto *pad = static_cast<unsigned char *>(::operator new(sizeof(T)));
  std::memset(pad, 0, ram_usable_size(pad));
  T *p = launder_ptr(new T);
  ASSERT_EQ(reinterpret_cast<unsigned char *>(p), pad + ram_usable_size(pad))
      << "the object must follow its neighbour in a fresh page";
  delete[] p; // frees p - 8: inside the neighbour
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_INTERIOR_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, reinterpret_cast<unsigned char *>(p) - 8);
  delete p;
  ::operator delete(pad);
  expect_no_report(m.errors());
}

/// An object of at most 8 bytes lives in the 8-byte class, so the 8 bytes before it are
/// its neighbour's start, not inside it: delete[] of it frees the neighbour (a valid
/// free that cannot be told apart), and the neighbour's own free later is the one
/// reported, as a double free (docs/hardening.md).
void delete_array_of_new_of_eight_bytes(ModeZone &m) {
  using T = non_trivial<8>;
  auto *pad = static_cast<unsigned char *>(::operator new(sizeof(T)));
  std::memset(pad, 0, ram_usable_size(pad));
  T *p = launder_ptr(new T);
  ASSERT_EQ(reinterpret_cast<unsigned char *>(p), pad + 8)
      << "the object must follow its neighbour in a fresh page";
  delete[] p; // frees p - 8: the neighbour's start
  expect_no_report(m.errors());
  delete p;
  ::operator delete(pad);
  const auto r = take(m.errors());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].error, RAM_ERROR_DOUBLE_FREE) << r[0].message;
  EXPECT_EQ(r[0].pointer, pad);
}

TEST_P(NewDeleteMismatch, DeleteArrayOfNewOfANonTrivialTypeIsAnInteriorFree) {
  ModeZone m(checked());
  if (size() == 8) {
    delete_array_of_new<16>(m); // the smallest size where it is an interior free
    if (!HasFatalFailure())
      delete_array_of_new_of_eight_bytes(m);
  } else if (size() == 4 * KiB)
    delete_array_of_new<4 * KiB>(m);
  else
    delete_array_of_new<256 * KiB>(m);
}

#pragma GCC diagnostic pop

TEST_P(NewDeleteMismatch, SizedDeleteOfAnotherClassIsReportedInCheckedMode) {
  ModeZone m(checked());
  void *p = ::operator new(size());
  ::operator delete(p, size() * 4 + 100);
  if (checked())
    expect_block_report(m.errors(), RAM_ERROR_SIZE_MISMATCH, p, p, m.zone().id());
  else
    expect_no_report(m.errors());
  void *q = ::operator new (size(), std::align_val_t{64});
  ::operator delete (q, size(), std::align_val_t{64}); // right size and alignment: silent
  expect_no_report(m.errors());
}

INSTANTIATE_TEST_SUITE_P(Shapes, NewDeleteMismatch,
                         testing::Combine(testing::Bool(),
                                          testing::Values(std::size_t{8}, 4 * KiB, 256 * KiB)),
                         shape_name);

} // namespace
#endif
