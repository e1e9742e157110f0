// Uses the installed ramalloc through both of its headers. Exits non-zero on failure.
#include <ramalloc/ramalloc.h>
#include <ramalloc/ramalloc.hpp>

#include <cstdio>
#include <cstring>

namespace {

int failures = 0;

void expect(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: FAILED: %s\n", what);
    ++failures;
  }
}

} // namespace

int main() {
  // C++ API: acquire, query (start and interior), discard.
  void *block = ramalloc::acquire(100);
  expect(block != nullptr, "ramalloc::acquire(100) returns a block");
  if (block != nullptr) {
    std::memset(block, 0xAB, 100);
    auto info = ramalloc::query(block);
    expect(info.has_value(), "query(block) knows the block");
    expect(info && info->is_start, "query(block) reports the block start");
    expect(info && info->usable_size >= 100, "usable size >= request");
    auto inner = ramalloc::query(static_cast<char *>(block) + 50);
    expect(inner && !inner->is_start && inner->start == block,
           "query(interior) finds the block start");
    ramalloc::discard(block);
  }
  int on_stack = 0;
  expect(!ramalloc::query(&on_stack).has_value(), "query(stack) says not ours");

  // C API: ram_malloc / ram_free.
  auto *text = static_cast<char *>(ram_malloc(32));
  expect(text != nullptr, "ram_malloc(32) returns a block");
  if (text != nullptr) {
    std::strcpy(text, "installed ramalloc works");
    expect(ram_usable_size(text) >= 32, "ram_usable_size >= 32");
    ram_free(text);
  }

  ramalloc::flush();
  if (failures != 0) {
    std::fprintf(stderr, "consumer: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("consumer: installed ramalloc found through find_package and works\n");
  return 0;
}
