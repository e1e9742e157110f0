// query(p) knows ramalloc's own pointers: it answers "not ours" for any other value
// without reading memory it does not own (so it never faults), and for every block of
// every size class it reports the block's start and usable size, from any pointer into
// the block.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <cstdlib>
#include <set>

using namespace ramalloc_test;

namespace {

/// Asserts that both the C++ and the C query say "not ours" for `p`.
void expect_not_ours(const void *p) {
  EXPECT_FALSE(ramalloc::query(p).has_value()) << "query claimed " << p;
  ram_block_info info{};
  EXPECT_EQ(ram_query(p, &info), 0) << "ram_query claimed " << p;
  EXPECT_EQ(ram_usable_size(p), 0u) << "ram_usable_size of " << p;
}

} // namespace

TEST(Query, ReportsNotOursForStackAddresses) {
  int local = 42;
  char buffer[4096];
  buffer[0] = 1;
  ramalloc::discard(ramalloc::acquire(16)); // the allocator is initialised and in use
  expect_not_ours(&local);
  expect_not_ours(buffer);
  expect_not_ours(buffer + sizeof buffer - 1);
}

TEST(Query, ReportsNotOursForGlibcMallocMemory) {
  ramalloc::discard(ramalloc::acquire(16));
  // Small blocks come from glibc's brk heap, big ones from its own mmap.
  void *small = glibc_malloc(64);
  void *big = glibc_malloc(4 * MiB);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(big, nullptr);
  expect_not_ours(small);
  expect_not_ours(static_cast<char *>(small) + 32);
  expect_not_ours(big);
  expect_not_ours(static_cast<char *>(big) + 2 * MiB);
  glibc_free(small);
  glibc_free(big);
}

TEST(Query, ReportsNotOursForProtNoneMappingWithoutFaulting) {
  ramalloc::discard(ramalloc::acquire(16));
  const std::size_t len = 4 * MiB;
  void *region = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  auto *b = static_cast<char *>(region);
  for (std::size_t off :
       {std::size_t{0}, std::size_t{1}, slice_size - 1, slice_size, len / 2 + 8, len - 1})
    expect_not_ours(b + off);
  ::munmap(region, len);
}

TEST(Query, ReportsNotOursForJustUnmappedAddresses) {
  ramalloc::discard(ramalloc::acquire(16));
  const std::size_t len = 2 * MiB;
  void *region = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);
  static_cast<char *>(region)[0] = 1;
  ASSERT_EQ(::munmap(region, len), 0);
  auto *b = static_cast<char *>(region);
  expect_not_ours(b);
  expect_not_ours(b + len / 2);
  expect_not_ours(b + len - 1);
}

TEST(Query, ReportsNotOursForWildValues) {
  ramalloc::discard(ramalloc::acquire(16));
  const std::uintptr_t wild[] = {
      0,
      1,
      0xdeadbeef,
      0x1000,
      0x00007fffffffffffull, // last user-space byte on x86-64
      0x0000800000000000ull, // first non-canonical address
      0xffff800000000000ull, // kernel half
      0x8000000000000000ull,
      0xdeadbeefdeadbeefull,
      0xfffffffffffff000ull,
      UINTPTR_MAX - 15,
      UINTPTR_MAX,
  };
  for (std::uintptr_t v : wild)
    expect_not_ours(reinterpret_cast<const void *>(v));
}

TEST(Query, ReportsNotOursForAddressesAboveAndBelowOwnBlocksWithHighBitsSet) {
  // A real block address with high bits flipped must not alias into the page map.
  void *p = ramalloc::acquire(64);
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(ramalloc::query(p).has_value());
  for (int bit = 47; bit < 64; ++bit)
    expect_not_ours(reinterpret_cast<const void *>(addr(p) | (std::uintptr_t{1} << bit)));
  ramalloc::discard(p);
}

TEST(Query, ReportsStartUsableSizeAndStartFlagForEverySizeClassIncludingInteriorPointers) {
  for (std::size_t size : boundary_sizes()) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    void *p = ramalloc::acquire(size);
    ASSERT_NE(p, nullptr);
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->start, p);
    EXPECT_TRUE(info->is_start);
    EXPECT_GE(info->usable_size, size);
    EXPECT_EQ(info->owner, ramalloc::current_heap().id());

    auto *b = static_cast<char *>(p);
    std::set<std::size_t> offsets{1, size / 2, size - 1, info->usable_size - 1};
    offsets.erase(0);
    for (std::size_t off : offsets) {
      SCOPED_TRACE(testing::Message() << "interior offset " << off);
      const auto inner = ramalloc::query(b + off);
      ASSERT_TRUE(inner.has_value());
      EXPECT_EQ(inner->start, p);
      EXPECT_FALSE(inner->is_start);
      EXPECT_EQ(inner->usable_size, info->usable_size);
      EXPECT_EQ(inner->owner, info->owner);
    }
    ramalloc::discard(p);
  }
}

TEST(Query, ReportsUsableSizeOfTheSizeClassForSmallAndMediumRequests) {
  // At most 25% internal waste: a request is rounded up to its class and no further.
  for (std::size_t size : boundary_sizes(false, false)) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    void *p = ramalloc::acquire(size);
    ASSERT_NE(p, nullptr);
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->usable_size, class_for(size));
    ramalloc::discard(p);
  }
}

TEST(Query, ReportsLargeBlocksAsWholeSpansOfSlices) {
  for (std::size_t size : boundary_sizes(true, false)) {
    if (size <= medium_max)
      continue;
    SCOPED_TRACE(testing::Message() << "size " << size);
    void *p = ramalloc::acquire(size);
    ASSERT_NE(p, nullptr);
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    EXPECT_GE(info->usable_size, size);
    EXPECT_LE(info->usable_size, (size + slice_size - 1) / slice_size * slice_size);
    ramalloc::discard(p);
  }
}

TEST(Query, ReportsKindMatchingTheSizeRange) {
  using kind = ramalloc::block_info::block_kind;
  const struct {
    std::size_t size;
    kind expected;
    int c_kind;
  } cases[] = {
      {1, kind::small, 0},           {4, kind::small, 0},
      {small_max, kind::small, 0},   {small_max + 1, kind::medium, 1},
      {medium_max, kind::medium, 1}, {medium_max + 1, kind::large, 2},
      {large_max, kind::large, 2},   {large_max + 1, kind::huge, 3},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(testing::Message() << "size " << c.size);
    void *p = ramalloc::acquire(c.size);
    ASSERT_NE(p, nullptr);
    const auto info = ramalloc::query(p);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->kind, c.expected);
    ram_block_info ci{};
    ASSERT_NE(ram_query(p, &ci), 0);
    EXPECT_EQ(ci.kind, c.c_kind);
    ramalloc::discard(p);
  }
}

TEST(Query, ReportsTheOwningHeap) {
  ramalloc::heap other;
  void *mine = ramalloc::acquire(32);
  void *theirs = other.acquire(32);
  ASSERT_NE(mine, nullptr);
  ASSERT_NE(theirs, nullptr);
  EXPECT_NE(other.id(), ramalloc::current_heap().id());
  EXPECT_EQ(ramalloc::query(mine)->owner, ramalloc::current_heap().id());
  EXPECT_EQ(ramalloc::query(theirs)->owner, other.id());
  {
    ramalloc::heap_scope scope(other);
    EXPECT_EQ(ramalloc::current_heap().id(), other.id());
    void *scoped = ramalloc::acquire(32);
    ASSERT_NE(scoped, nullptr);
    EXPECT_EQ(ramalloc::query(scoped)->owner, other.id());
    ramalloc::discard(scoped);
  }
  ramalloc::discard(mine);
  ramalloc::discard(theirs);
}

TEST(Query, AgreesWithTheCInterface) {
  for (std::size_t size : {std::size_t{4}, std::size_t{100}, 20 * KiB, 1 * MiB, 40 * MiB}) {
    SCOPED_TRACE(testing::Message() << "size " << size);
    void *p = ram_malloc(size);
    ASSERT_NE(p, nullptr);
    auto *inner = static_cast<char *>(p) + size / 2 + 1;
    const auto info = ramalloc::query(inner);
    ASSERT_TRUE(info.has_value());
    ram_block_info ci{};
    ASSERT_NE(ram_query(inner, &ci), 0);
    EXPECT_EQ(ci.start, info->start);
    EXPECT_EQ(ci.usable_size, info->usable_size);
    EXPECT_EQ(ci.is_start != 0, info->is_start);
    EXPECT_EQ(static_cast<const void *>(ci.owner), info->owner);
    EXPECT_EQ(ram_usable_size(p), info->usable_size);
    ram_free(p);
  }
}
