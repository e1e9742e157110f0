// Build configuration shared by every ramalloc::io header.
#pragma once

// The kit is built on *standalone* Asio (Debian: libasio-dev), never Boost.Asio. The
// ramalloc::io CMake target defines ASIO_STANDALONE for its users; a program that
// includes the headers without the target must define it itself, before any Asio header.
#if !defined(ASIO_STANDALONE)
#error                                                                                             \
    "ramalloc::io needs standalone Asio: define ASIO_STANDALONE (the ramalloc::io CMake target does)"
#endif

#include <asio/version.hpp>

#if ASIO_VERSION < 102200
#error "ramalloc::io needs standalone Asio 1.22 or newer"
#endif
