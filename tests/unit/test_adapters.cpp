// std::pmr and STL adapters: containers allocate from ramalloc and free anywhere.
#include <ramalloc/pmr.hpp>
#include <ramalloc/stl.hpp>

#include <gtest/gtest.h>

#include <list>
#include <map>
#include <memory_resource>
#include <string>
#include <thread>
#include <vector>

TEST(Adapters, StlAllocatorContainersLiveInRamallocBlocks) {
  std::vector<int, ramalloc::allocator<int>> v;
  for (int i = 0; i < 10000; ++i) v.push_back(i);
  ASSERT_TRUE(ramalloc::query(v.data()).has_value());
  EXPECT_TRUE(ramalloc::query(v.data())->is_start);
  std::map<int, std::string, std::less<>, ramalloc::allocator<std::pair<const int, std::string>>> m;
  for (int i = 0; i < 1000; ++i) m.emplace(i, std::to_string(i));
  EXPECT_TRUE(ramalloc::query(&*m.begin()).has_value());
  long sum = 0;
  for (int x : v) sum += x;
  EXPECT_EQ(sum, 10000L * 9999 / 2);
}

TEST(Adapters, StlAllocatorHonoursOverAlignedTypes) {
  struct alignas(64) line {
    char bytes[64];
  };
  std::vector<line, ramalloc::allocator<line>> v(17);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data()) % 64, 0u);
  ASSERT_TRUE(ramalloc::query(v.data()).has_value());
}

TEST(Adapters, StlAllocatorRejectsOverflowingCounts) {
  ramalloc::allocator<std::uint64_t> a;
  EXPECT_THROW((void)a.allocate(std::numeric_limits<std::size_t>::max() / 4), std::bad_array_new_length);
}

TEST(Adapters, PmrResourceServesContainersAndFreesFromAnyThread) {
  ramalloc::memory_resource resource;
  auto *list = new std::pmr::list<std::pmr::string>(&resource);
  for (int i = 0; i < 1000; ++i) list->emplace_back(std::string(100, static_cast<char>('a' + i % 26)));
  EXPECT_TRUE(ramalloc::query(&list->front()).has_value());
  const auto before = ramalloc::get_stats().live_blocks;
  std::thread([list] { delete list; }).join(); // every node freed remotely
  ramalloc::flush();
  EXPECT_LT(ramalloc::get_stats().live_blocks, before);
}

TEST(Adapters, PmrResourceBoundToAHeapAllocatesFromIt) {
  ramalloc::heap zone;
  ramalloc::memory_resource resource(zone);
  {
    std::pmr::vector<int> v(&resource);
    v.resize(1000);
    ASSERT_TRUE(ramalloc::query(v.data()).has_value());
    EXPECT_EQ(ramalloc::query(v.data())->owner, zone.id());
  }
  EXPECT_TRUE(resource.is_equal(*ramalloc::default_resource()));
}
