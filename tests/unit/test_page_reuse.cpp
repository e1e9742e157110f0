// A class's freed blocks are handed out again before its current page touches memory it
// never used: the resident footprint of a heap whose pages are partly freed (a heap
// adopted from an exited thread, a heap after a burst) does not grow while it has room.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <thread>

using namespace ramalloc_test;

namespace {

constexpr std::size_t block = 512;
constexpr std::size_t per_page = 64 * KiB / block;
// A fresh page is extended by about one OS page of blocks at a time (never threaded whole).
constexpr std::size_t per_extension = 4 * KiB / block;

bool in_page(const void *p, const void *page_start) {
  return addr(p) >= addr(page_start) && addr(p) < addr(page_start) + 64 * KiB;
}

} // namespace

// No harness allocation happens while the zone is current (vectors are reserved first).
TEST(PageReuse, ABlockFreedInAFullPageIsHandedOutBeforeTheCurrentPageExtends) {
  ramalloc::heap zone;
  std::vector<void *> full, current;
  full.reserve(per_page);
  current.reserve(per_extension);
  void *next = nullptr;
  {
    ramalloc::heap_scope scope(zone);
    for (std::size_t i = 0; i < per_page; ++i)
      full.push_back(ramalloc::acquire(block)); // one page, now full
    for (std::size_t i = 0; i < per_extension; ++i)
      current.push_back(ramalloc::acquire(block)); // the next page: its first extension used
    ramalloc::discard(full[per_page / 2]);         // the full page has a free block again
    next = ramalloc::acquire(block);
  }
  for (void *p : full)
    ASSERT_TRUE(in_page(p, full[0])) << "the first " << per_page << " blocks share a page";
  ASSERT_FALSE(in_page(current[0], full[0]));
  EXPECT_EQ(next, full[per_page / 2])
      << "the current page grew into untouched memory while a freed block waited";

  ramalloc::heap_scope scope(zone);
  for (void *p : full)
    if (p != full[per_page / 2])
      ramalloc::discard(p);
  for (void *p : current)
    ramalloc::discard(p);
  ramalloc::discard(next);
}

TEST(PageReuse, ABlockFreedRemotelyIntoAFullPageIsHandedOutBeforeTheCurrentPageExtends) {
  // The full page's inbox entry waits behind other debt: the slow path's back-pressure
  // slice pays that first (on its turn: every slow path with an interval of 1), and the
  // class would grow past the freed block without more.
  ramalloc::options saved = ramalloc::get_options(), o = saved;
  o.debt_slice = 2;
  o.debt_interval = 1;
  ramalloc::set_options(o);
  ramalloc::heap zone;
  std::vector<void *> ahead, full, current;
  ahead.reserve(o.debt_slice);
  full.reserve(per_page);
  current.reserve(per_extension);
  {
    ramalloc::heap_scope scope(zone);
    for (std::uint32_t i = 0; i < o.debt_slice; ++i)
      ahead.push_back(ramalloc::acquire(300 * KiB)); // large spans: one inbox entry each
    for (std::size_t i = 0; i < per_page; ++i)
      full.push_back(ramalloc::acquire(block));
    for (std::size_t i = 0; i < per_extension; ++i)
      current.push_back(ramalloc::acquire(block));
  }
  void *freed = full[per_page / 2];
  std::thread([&] {
    for (void *p : ahead)
      ramalloc::discard(p);   // queued first
    ramalloc::discard(freed); // then the full page
  }).join();
  void *next = nullptr;
  {
    ramalloc::heap_scope scope(zone);
    next = ramalloc::acquire(block);
  }
  for (void *p : full)
    ASSERT_TRUE(in_page(p, full[0]));
  EXPECT_EQ(next, freed) << "the current page grew into untouched memory while a block freed "
                            "by another thread waited in the inbox";

  ramalloc::heap_scope scope(zone);
  for (void *p : full)
    if (p != freed)
      ramalloc::discard(p);
  for (void *p : current)
    ramalloc::discard(p);
  ramalloc::discard(next);
  ramalloc::set_options(saved);
}
