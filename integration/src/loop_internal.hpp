// Internal: run() with the handler count kept when a handler throws (worker_pool).
#pragma once

#include <cstddef>

#include <ramalloc/io/loop.hpp>

namespace ramalloc::io::detail {

/// run(), with `handlers` counting as it goes, so the caller still knows it when a
/// handler's exception leaves the loop.
std::size_t run_counted(asio::io_context &ctx, const loop_options &opts, std::size_t &handlers);

} // namespace ramalloc::io::detail
