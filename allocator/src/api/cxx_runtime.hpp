// What the allocator needs from the C++ runtime — the new-handler, and throwing
// std::bad_alloc / std::invalid_argument — found in the process at run time instead of
// linked. libramalloc.so is preloaded into C programs too, and linking libstdc++ would
// load it (about 1.5 MiB resident) into every one of them; a C++ program has its runtime
// loaded already, and only C++ code can call operator new or the C++ API.
//
// The core is compiled without exceptions (nothing in it throws or catches); exceptions
// raised here or by a new-handler unwind through its frames, which have unwind tables
// and nothing to clean up.
#pragma once

#include <new>

namespace ramalloc::detail {

/// The new-handler installed with std::set_new_handler, or nullptr when none is (or no
/// C++ runtime is loaded). Looked up in the C++ runtime the process has loaded: bound at
/// load time when it is in the global scope, else looked up on each call (a runtime
/// loaded later by dlopen, even RTLD_LOCAL). Cold path: operator new after a failure.
std::new_handler cxx_new_handler() noexcept;

/// Calls `handler` and tells whether it returned (false: it threw, whatever it threw):
/// the nothrow operator new's rule ([new.delete.single]: it returns null where the
/// throwing form would throw).
bool cxx_call_new_handler_nothrow(std::new_handler handler) noexcept;

/// Throws std::bad_alloc through the loaded C++ runtime; fatal (with a message) when
/// none is loaded, which only a program calling the C++ API without one can meet.
[[noreturn]] void cxx_throw_bad_alloc();

/// Throws std::invalid_argument(`what`) (the message is copied), like
/// cxx_throw_bad_alloc.
[[noreturn]] void cxx_throw_invalid_argument(const char *what);

} // namespace ramalloc::detail
