// The C++ runtime, reached without linking it (see cxx_runtime.hpp).
//
// Weak references bind at load time to whatever runtime the global scope holds
// (libstdc++ or libc++; both export these std:: functions under the same names) and stay
// null in a C program, so nothing here adds a dependency. When they are null, dlsym
// finds a runtime loaded later with RTLD_GLOBAL, and dlopen(RTLD_NOLOAD) one loaded
// locally by a plugin. This file is the only one of the core compiled with exceptions
// (the catch of the nothrow new); its references to the runtime's unwinding support are
// weak too: they are used only while an exception propagates, which only a loaded
// runtime can start.
#include "api/cxx_runtime.hpp"

#include <atomic>
#include <dlfcn.h>

#include "common/defs.hpp"

// The personality routine that the catch below registers with the unwinder, and the
// two calls the catch makes; the compiler declares them itself, strongly, so the
// assembler is told.
asm(".weak __gxx_personality_v0");
extern "C" {
void *__cxa_begin_catch(void *) noexcept __attribute__((weak));
void __cxa_end_catch() __attribute__((weak));
}

namespace {

using get_new_handler_fn = std::new_handler (*)() noexcept;
using throw_fn = void (*)();
using throw_message_fn = void (*)(const char *);

// std::get_new_handler, std::__throw_bad_alloc, std::__throw_invalid_argument.
constexpr const char get_new_handler_name[] = "_ZSt15get_new_handlerv";
constexpr const char throw_bad_alloc_name[] = "_ZSt17__throw_bad_allocv";
constexpr const char throw_invalid_argument_name[] = "_ZSt24__throw_invalid_argumentPKc";

extern "C" {
std::new_handler weak_get_new_handler() noexcept __asm__("_ZSt15get_new_handlerv")
    __attribute__((weak));
void weak_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv") __attribute__((weak));
void weak_throw_invalid_argument(const char *) __asm__("_ZSt24__throw_invalid_argumentPKc")
    __attribute__((weak));
}

/// `name` in a C++ runtime the process has loaded, or nullptr. dlopen with RTLD_NOLOAD
/// never loads anything: it finds a runtime a plugin brought in with RTLD_LOCAL.
void *find_in_runtime(const char *name) noexcept {
  if (void *f = dlsym(RTLD_DEFAULT, name))
    return f;
  for (const char *lib : {"libstdc++.so.6", "libc++.so.1"}) {
    if (void *h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
      void *f = dlsym(h, name);
      dlclose(h); // drops only the reference RTLD_NOLOAD took
      if (f != nullptr)
        return f;
    }
  }
  return nullptr;
}

/// The runtime's function `name`: the weak binding, else a cached lookup (a runtime,
/// once loaded, is not unloaded while C++ code that calls operator new runs).
template <typename Fn>
Fn runtime_function(Fn weak, std::atomic<void *> &cache, const char *name) noexcept {
  if (weak != nullptr)
    return weak;
  void *f = cache.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = find_in_runtime(name);
    if (f != nullptr)
      cache.store(f, std::memory_order_release);
  }
  return reinterpret_cast<Fn>(f);
}

constinit std::atomic<void *> g_get_new_handler{nullptr};
constinit std::atomic<void *> g_throw_bad_alloc{nullptr};
constinit std::atomic<void *> g_throw_invalid_argument{nullptr};

} // namespace

namespace ramalloc::detail {

std::new_handler cxx_new_handler() noexcept {
  const auto get = runtime_function<get_new_handler_fn>(&weak_get_new_handler, g_get_new_handler,
                                                        get_new_handler_name);
  return get != nullptr ? get() : nullptr;
}

bool cxx_call_new_handler_nothrow(std::new_handler handler) noexcept {
  try {
    handler();
  } catch (...) {
    return false;
  }
  return true;
}

void cxx_throw_bad_alloc() {
  const auto f =
      runtime_function<throw_fn>(&weak_throw_bad_alloc, g_throw_bad_alloc, throw_bad_alloc_name);
  RAMALLOC_CHECK(f != nullptr,
                 "out of memory, and no C++ runtime is loaded to throw std::bad_alloc");
  f();
  __builtin_unreachable();
}

void cxx_throw_invalid_argument(const char *what) {
  const auto f = runtime_function<throw_message_fn>(
      &weak_throw_invalid_argument, g_throw_invalid_argument, throw_invalid_argument_name);
  RAMALLOC_CHECK(f != nullptr, "no C++ runtime is loaded to throw std::invalid_argument");
  f(what);
  __builtin_unreachable();
}

} // namespace ramalloc::detail
