// ramalloc::io — the integration kit for standalone Asio (umbrella header).
//
// Everything the kit offers, one header per concept:
//   heap_registry       per-io_context service: the heaps bound to its workers and strands
//   loop                loop_options, run() (the per-worker service loop), attach()
//   worker_pool         N threads running run(), with start/exit hooks
//   heap_strand         a strand that owns a ramalloc::heap (make_heap_strand)
//   handler_allocator   an Asio associated allocator drawing from the current heap
//   stats_reporter      periodic allocator statistics through the kit's spdlog logger
//   logger              ramalloc::io::logger() and the core's error reports
// See docs/integration.md for how to wire a server with them.
#pragma once

#include "ramalloc/io/handler_allocator.hpp"
#include "ramalloc/io/heap_registry.hpp"
#include "ramalloc/io/heap_strand.hpp"
#include "ramalloc/io/logger.hpp"
#include "ramalloc/io/loop.hpp"
#include "ramalloc/io/stats_reporter.hpp"
#include "ramalloc/io/worker_pool.hpp"
