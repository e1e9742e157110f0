// A purged span gives back the pages of page descriptors inside it (mem/span.cpp), so a
// gigabyte freed and purged leaves no megabytes of resident metadata behind. Descriptors
// are 192 bytes, so one may straddle two OS pages; the pages to drop are found within a
// window around the slices just purged, and that window must reach a whole OS page into
// a neighbour that merged in, or the page that held the neighbour's head stays resident
// for good (about one purge in 64, by where the head falls in its page).
//
// Each case: two adjacent large blocks between guards; the right one is freed and purged
// first, then the left one, which merges with it. Afterwards every OS page of
// descriptors strictly inside the merged span must be non-resident (mincore). The left
// block's size varies so the right one's head falls at every offset within a page.
#include "mem/region.hpp"

#include <ramalloc/ramalloc.hpp>

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace {

using namespace ramalloc::detail;

/// Purges until a reclaim step purges nothing more.
void purge_all(ramalloc::heap &h) {
  for (;;) {
    const std::uint64_t before = h.get_stats().bytes_purged;
    h.reclaim(1 << 20);
    if (h.get_stats().bytes_purged == before)
      return;
  }
}

/// The descriptor of the span holding `p` (a standard OS region's fixed header layout).
std::uintptr_t descriptor_address(const void *p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t base = a & ~(std::uintptr_t{region_size} - 1);
  return base + os_pages_offset + ((a - base) >> slice_shift) * sizeof(page);
}

TEST(DescriptorPurge, PagesOfDescriptorsInsideAMergedPurgedSpanAreNotResident) {
  ramalloc::options opts = ramalloc::get_options();
  opts.auto_purge = false; // only the reclaim steps below purge, in the order they choose
  opts.purge_delay_ms = 0;
  opts.reserve = 0;
  ramalloc::set_options(opts);
  ramalloc::heap h;
  ramalloc::heap_scope scope(h);

  constexpr unsigned cases = 64; // the head of the right block at each 64-byte offset
  struct pair {
    void *left, *right;
  };
  std::vector<pair> pairs;
  std::vector<void *> guards;
  guards.push_back(ramalloc::acquire(medium_max + 1));
  for (unsigned i = 0; i < cases; ++i) {
    // Left blocks of 40 + i slices, so the right one's head moves a descriptor each case.
    void *left = ramalloc::acquire((40 + i) * slice_size);
    void *right = ramalloc::acquire(48 * slice_size);
    guards.push_back(ramalloc::acquire(medium_max + 1));
    ASSERT_NE(left, nullptr);
    ASSERT_NE(right, nullptr);
    pairs.push_back({left, right});
  }
  for (const pair &c : pairs)
    ramalloc::discard(c.right);
  purge_all(h);
  for (const pair &c : pairs)
    ramalloc::discard(c.left);
  purge_all(h);

  const auto os_page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  unsigned resident_pages = 0, cases_with_resident = 0, checked = 0;
  for (const pair &c : pairs) {
    // The merged span runs from the left block's head slice to the right block's last
    // slice; the descriptors strictly inside it are never read again.
    const std::uintptr_t head = descriptor_address(c.left);
    const std::uintptr_t last =
        descriptor_address(static_cast<std::byte *>(c.right) + 48 * slice_size - 1);
    const std::uintptr_t lo = (head + sizeof(page) + os_page - 1) & ~(os_page - 1);
    const std::uintptr_t hi = last & ~(os_page - 1);
    if (hi <= lo)
      continue;
    const std::size_t n = (hi - lo) / os_page;
    std::vector<unsigned char> vec(n);
    ASSERT_EQ(::mincore(reinterpret_cast<void *>(lo), hi - lo, vec.data()), 0);
    unsigned here = 0;
    for (unsigned char v : vec)
      here += v & 1;
    resident_pages += here;
    cases_with_resident += here != 0;
    ++checked;
  }
  EXPECT_EQ(checked, cases);
  EXPECT_EQ(resident_pages, 0u) << "descriptor pages inside merged purged spans stayed resident, in "
                                << cases_with_resident << " of " << cases << " cases";
  for (void *g : guards)
    ramalloc::discard(g);
}

} // namespace
