// operator new and delete under the override: C++'s failure rules (throw std::bad_alloc,
// or return nullptr for the nothrow forms, after giving the new-handler its chance) and
// every delete form (plain, array, nothrow, sized, aligned, sized + aligned).
#include "posix_support.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <new>

using namespace ramalloc_posix_test;

namespace {

bool is_aligned(const void *p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

TEST(NewDelete, NewOfAHugeSizeThrowsBadAlloc) {
  for (const std::size_t huge : {SIZE_MAX, above_ptrdiff_max}) {
    EXPECT_THROW(keep(::operator new(opaque(huge))), std::bad_alloc) << huge;
    EXPECT_THROW(keep(::operator new[](opaque(huge))), std::bad_alloc) << huge;
    EXPECT_THROW(keep(::operator new (opaque(huge), std::align_val_t{64})), std::bad_alloc) << huge;
    EXPECT_THROW(keep(::operator new[](opaque(huge), std::align_val_t{4096})), std::bad_alloc)
        << huge;
  }
  // A new-expression whose size is only known at run time.
  EXPECT_THROW(keep(new char[opaque(above_ptrdiff_max)]), std::bad_alloc);
}

TEST(NewDelete, NothrowNewOfAHugeSizeReturnsNullptr) {
  for (const std::size_t huge : {SIZE_MAX, above_ptrdiff_max}) {
    EXPECT_EQ(keep(::operator new(opaque(huge), std::nothrow)), nullptr) << huge;
    EXPECT_EQ(keep(::operator new[](opaque(huge), std::nothrow)), nullptr) << huge;
    EXPECT_EQ(keep(::operator new (opaque(huge), std::align_val_t{64}, std::nothrow)), nullptr)
        << huge;
    EXPECT_EQ(keep(::operator new[](opaque(huge), std::align_val_t{4096}, std::nothrow)), nullptr)
        << huge;
  }
  EXPECT_EQ(keep(new (std::nothrow) char[opaque(above_ptrdiff_max)]), nullptr);
}

int handler_calls = 0;

TEST(NewDelete, FailingNewCallsTheNewHandlerUntilItGivesUp) {
  handler_calls = 0;
  // The handler "frees memory" twice, then removes itself: new must then throw.
  std::set_new_handler([] {
    if (++handler_calls == 3)
      std::set_new_handler(nullptr);
  });
  EXPECT_THROW(keep(::operator new(opaque(SIZE_MAX))), std::bad_alloc);
  EXPECT_EQ(handler_calls, 3);
  std::set_new_handler(nullptr);
}

TEST(NewDelete, NothrowNewReturnsNullptrWhenTheNewHandlerThrows) {
  handler_calls = 0;
  std::set_new_handler([] {
    ++handler_calls;
    throw std::bad_alloc();
  });
  EXPECT_EQ(keep(::operator new(opaque(SIZE_MAX), std::nothrow)), nullptr);
  EXPECT_EQ(handler_calls, 1);
  std::set_new_handler(nullptr);
}

TEST(NewDelete, AlignedNewHonoursTheAlignment) {
  for (const std::size_t align :
       {std::size_t{32}, std::size_t{64}, std::size_t{4096}, 64 * KiB, 2 * MiB}) {
    for (const std::size_t size : {std::size_t{1}, align - 1, align + 1, 3 * align, 300 * KiB}) {
      void *p = keep(::operator new (size, std::align_val_t{align}));
      EXPECT_TRUE(is_aligned(p, align)) << "size " << size << ", alignment " << align;
      EXPECT_TRUE(is_ramalloc_block(p));
      ::operator delete (p, size, std::align_val_t{align});
    }
  }
}

TEST(NewDelete, EveryDeleteFormFreesItsBlock) {
  report_recorder reports;
  const std::uint64_t before = live_blocks();
  constexpr std::align_val_t a64{64};

  void *p = keep(::operator new(48));
  ::operator delete(p, 48); // sized
  p = keep(::operator new[](480));
  ::operator delete[](p, 480); // sized array
  p = keep(::operator new(48, std::nothrow));
  ::operator delete(p, std::nothrow);
  p = keep(::operator new[](48, std::nothrow));
  ::operator delete[](p, std::nothrow);
  p = keep(::operator new(100, a64));
  ::operator delete(p, a64); // aligned
  p = keep(::operator new[](100, a64));
  ::operator delete[](p, a64);
  p = keep(::operator new(100, a64));
  ::operator delete(p, 100, a64); // sized + aligned
  p = keep(::operator new[](1000, a64));
  ::operator delete[](p, 1000, a64);
  p = keep(::operator new(100, a64, std::nothrow));
  ::operator delete(p, a64, std::nothrow); // aligned nothrow
  p = keep(::operator new[](100, a64, std::nothrow));
  ::operator delete[](p, a64, std::nothrow);
  // A block from plain new freed with free() (allowed by ramalloc, not by C++) or the
  // other way round works too: they are the same allocator.
  p = keep(std::malloc(64));
  ::operator delete(p);

  EXPECT_EQ(live_blocks(), before);
  EXPECT_EQ(reports.count(), 0u) << (reports.count() ? reports[0].message : "");
}

struct alignas(256) over_aligned {
  unsigned char bytes[300];
};

TEST(NewDelete, NewExpressionsOfAnOverAlignedTypeUseAlignedNewAndDelete) {
  const std::uint64_t before = live_blocks();
  auto *one = keep(new over_aligned{});
  auto *many = keep(new over_aligned[5]{});
  EXPECT_TRUE(is_aligned(one, 256));
  EXPECT_TRUE(is_aligned(many, 256));
  EXPECT_TRUE(is_ramalloc_block(one));
  EXPECT_EQ(live_blocks(), before + 2);
  delete one;    // sized + aligned delete
  delete[] many; // aligned array delete
  EXPECT_EQ(live_blocks(), before);
}

} // namespace
