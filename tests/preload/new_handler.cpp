// operator new under LD_PRELOAD=libramalloc.so, which links no C++ runtime: when memory
// runs out it calls the program's new-handler (std::set_new_handler) and retries, throws
// std::bad_alloc when no handler is installed or the handler gives up, and its nothrow
// forms return null instead (also when the handler throws). The C++ API's
// std::invalid_argument comes through the same runtime (the program links the library).
//
// Memory runs out for real: RLIMIT_AS is set just above what the process has mapped, so
// the next huge block's mapping fails; freeing a huge block (one 1 GiB granule of address
// space, unmapped at once) makes room again.
//
//   ramalloc_new_handler    exit 0: every check held; 1: one failed (printed);
//                           77: not running on ramalloc (nothing to check)
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <new>
#include <stdexcept>
#include <sys/resource.h>
#include <unistd.h>

#include "ramalloc/ramalloc.hpp"

namespace {

// A huge block (above 32 MiB): its own mapping of a whole 1 GiB granule; mapping it
// takes one more granule for a moment (alignment), so 1.5 GiB of headroom is too little
// for a new one and 2.5 GiB (after one is freed) is enough.
constexpr std::size_t block = std::size_t{64} << 20;
constexpr std::size_t headroom = std::size_t{3} << 29; // 1.5 GiB

int failures = 0;
void check(bool ok, const char *what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok)
    ++failures;
}

char *g_reserve = nullptr;
int g_calls = 0;

/// The classic handler: gives back a reserve and lets operator new retry; with nothing
/// left to give, uninstalls itself so that operator new throws.
void release_reserve() {
  ++g_calls;
  if (g_reserve == nullptr) {
    std::set_new_handler(nullptr);
    return;
  }
  ::operator delete[](g_reserve);
  g_reserve = nullptr;
}

void throw_bad_alloc() {
  ++g_calls;
  throw std::bad_alloc();
}

std::size_t mapped_bytes() {
  long pages = 0;
  if (FILE *f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld", &pages) != 1)
      pages = 0;
    std::fclose(f);
  }
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

bool new_throws(std::size_t n) {
  try {
    char *p = new char[n];
    delete[] p;
    return false;
  } catch (const std::bad_alloc &) {
    return true;
  }
}

} // namespace

int main() {
  if (dlsym(RTLD_DEFAULT, "ram_get_stats") == nullptr) {
    std::printf("new_handler: not running on libramalloc.so; nothing to check\n");
    return 77;
  }
  // The static-buffer check first: it needs no memory pressure.
  alignas(64) static char small_buffer[4096];
  try {
    ramalloc::heap h(small_buffer, sizeof small_buffer);
    check(false, "heap over a 4 KiB buffer throws std::invalid_argument");
  } catch (const std::invalid_argument &e) {
    check(std::strstr(e.what(), "unusable static buffer") != nullptr,
          "heap over a 4 KiB buffer throws std::invalid_argument naming the reason");
  }

  g_reserve = static_cast<char *>(::operator new[](block));
  std::memset(g_reserve, 1, 4096);
  rlimit lim{};
  getrlimit(RLIMIT_AS, &lim);
  lim.rlim_cur = mapped_bytes() + headroom;
  if (setrlimit(RLIMIT_AS, &lim) != 0) {
    std::perror("setrlimit");
    return 1;
  }

  // 1. The handler frees the reserve; the retried allocation succeeds.
  std::set_new_handler(release_reserve);
  g_calls = 0;
  char *p = new char[block];
  p[0] = 1;
  p[block - 1] = 2;
  check(g_calls == 1 && g_reserve == nullptr,
        "new calls the new-handler once, which frees a reserve, and then succeeds");

  // 2. The handler has nothing left: it uninstalls itself and new throws.
  g_calls = 0;
  check(new_throws(block) && g_calls == 1 && std::get_new_handler() == nullptr,
        "new throws std::bad_alloc once the handler uninstalls itself");

  // 3. No handler: new throws, nothrow new returns null, aligned forms alike.
  check(new_throws(block), "new without a handler throws std::bad_alloc");
  check(new (std::nothrow) char[block] == nullptr, "nothrow new without a handler returns null");
  bool aligned_threw = false;
  try {
    ::operator delete (::operator new (block, std::align_val_t{4096}), std::align_val_t{4096});
  } catch (const std::bad_alloc &) {
    aligned_threw = true;
  }
  check(aligned_threw, "aligned new without a handler throws std::bad_alloc");

  // 4. A handler that throws: new passes the exception on, nothrow new returns null.
  std::set_new_handler(throw_bad_alloc);
  g_calls = 0;
  check(new_throws(block) && g_calls == 1, "new passes on the handler's std::bad_alloc");
  g_calls = 0;
  check(::operator new(block, std::nothrow) == nullptr &&g_calls == 1,
        "nothrow new returns null when the handler throws");

  // 5. Aligned new retries after the handler too: the block of case 1 is the reserve.
  g_reserve = p;
  std::set_new_handler(release_reserve);
  g_calls = 0;
  void *q = ::operator new (block, std::align_val_t{4096});
  check(q != nullptr && reinterpret_cast<std::uintptr_t>(q) % 4096 == 0 && g_calls == 1,
        "aligned new calls the handler, which frees a reserve, and then succeeds");
  ::operator delete (q, std::align_val_t{4096});
  std::set_new_handler(nullptr);

  std::printf("new_handler: %d check(s) failed\n", failures);
  return failures == 0 ? 0 : 1;
}
