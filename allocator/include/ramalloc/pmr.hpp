// std::pmr adapter: a memory_resource over ramalloc.
#pragma once

#include <memory_resource>
#include <new>

#include "ramalloc/ramalloc.hpp"

namespace ramalloc {

/// A std::pmr::memory_resource drawing from ramalloc. With a heap, blocks come from that
/// heap (the calling thread must be its owner when allocating); without one, from the
/// calling thread's current heap. Deallocation may happen on any thread. do_allocate
/// throws std::bad_alloc on failure, as the standard requires. O(1) per call.
class memory_resource final : public std::pmr::memory_resource {
public:
  memory_resource() noexcept = default;
  explicit memory_resource(heap &h) noexcept : heap_(&h) {}

private:
  void *do_allocate(std::size_t bytes, std::size_t align) override {
    void *p = heap_ != nullptr ? heap_->acquire(bytes, align) : ramalloc::acquire(bytes, align);
    if (p == nullptr)
      throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void *p, std::size_t, std::size_t) override { ramalloc::discard(p); }
  bool do_is_equal(const std::pmr::memory_resource &other) const noexcept override {
    // Any ramalloc resource can free any ramalloc block.
    return dynamic_cast<const memory_resource *>(&other) != nullptr;
  }

  heap *heap_ = nullptr;
};

/// A process-wide resource using the calling thread's current heap.
inline memory_resource *default_resource() noexcept {
  static memory_resource resource;
  return &resource;
}

} // namespace ramalloc
