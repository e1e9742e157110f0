/* A C program (no C++ runtime of its own) that loads a C++ plugin with
 * dlopen(RTLD_LOCAL), as an interpreter loads an extension module, under
 * LD_PRELOAD=libramalloc.so: operator new in the plugin is ramalloc's, and its
 * new-handler and std::bad_alloc must still work (the plugin's runtime is found at
 * first need, not at load time).
 *
 *   cxx_plugin_host PLUGIN   exit 0: the plugin saw its handler and bad_alloc;
 *                            1: it did not; 77: not running on libramalloc.so */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 2)
    return 2;
  if (dlsym(RTLD_DEFAULT, "ram_get_stats") == NULL) {
    printf("cxx_plugin_host: not running on libramalloc.so; nothing to check\n");
    return 77;
  }
  if (dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") != NULL) {
    printf("cxx_plugin_host: a C++ runtime is in the global scope already\n");
    return 1;
  }
  void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (plugin == NULL) {
    printf("cxx_plugin_host: %s\n", dlerror());
    return 1;
  }
  int (*run)(void) = (int (*)(void))dlsym(plugin, "cxx_plugin_run");
  const int r = run != NULL ? run() : 3;
  printf("cxx_plugin_host: %s (%d)\n",
         r == 0 ? "ok: the new-handler ran once, then std::bad_alloc was thrown" : "FAILED", r);
  return r == 0 ? 0 : 1;
}
