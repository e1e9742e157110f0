// A C++ plugin that a C program loads with dlopen(RTLD_LOCAL) (see cxx_plugin_host.c):
// its C++ runtime is not in the global scope, so libramalloc.so's operator new finds
// the new-handler and std::bad_alloc through dlopen(RTLD_NOLOAD) (api/cxx_runtime.cpp).
#include <cstddef>
#include <new>

namespace {
int g_calls = 0;
void give_up() {
  ++g_calls;
  std::set_new_handler(nullptr);
}
} // namespace

/// 0: the handler ran once and new then threw std::bad_alloc; 1: new succeeded; 2: the
/// handler ran another number of times.
extern "C" int cxx_plugin_run() {
  std::set_new_handler(give_up);
  try {
    // Above PTRDIFF_MAX: no allocator can give it.
    char *p = new char[std::size_t{1} << 62];
    delete[] p;
    return 1;
  } catch (const std::bad_alloc &) {
    return g_calls == 1 ? 0 : 2;
  }
}
