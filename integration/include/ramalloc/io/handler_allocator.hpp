// handler_allocator<T>: an Asio associated allocator that draws from the current heap.
#pragma once

#include <ramalloc/stl.hpp>

#include "ramalloc/io/config.hpp"

namespace ramalloc::io {

/// A standard Allocator (usable as an Asio associated allocator, with
/// `asio::bind_allocator`, or in std containers) whose `allocate` takes memory from the
/// calling thread's *current* heap — inside a `heap_strand` handler, the strand's heap;
/// on a worker, the worker's heap. `deallocate` may run on any thread (Asio frees
/// operation memory on whichever thread completes the operation): it is
/// `ramalloc::discard`, a remote free when that thread does not own the block.
///
/// It is `ramalloc::allocator<T>` (ramalloc/stl.hpp) under the name Asio code looks for:
/// all instances are interchangeable (`is_always_equal`), with each other and with
/// ramalloc::allocator, and stateless, so it costs nothing to copy.
///
/// Time: allocate/deallocate O(1) (ramalloc::acquire / discard). Thread-safe.
template <typename T>
using handler_allocator = ramalloc::allocator<T>;

} // namespace ramalloc::io
