// Prints what the configure step found, then does a little threaded work.
#include "config.h"

#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

int main() {
  std::cout << "preload_demo " << PRELOAD_DEMO_VERSION << ", " << PRELOAD_DEMO_GREETING << '\n'
            << "sizeof(void *) " << PRELOAD_DEMO_SIZEOF_VOID_P << ", malloc.h " << HAVE_MALLOC_H
            << ", malloc_usable_size " << HAVE_MALLOC_USABLE_SIZE << ", reallocarray "
            << HAVE_REALLOCARRAY << ", no_such_header " << HAVE_NO_SUCH_HEADER << ", pmr "
            << HAVE_PMR << '\n';
  std::vector<std::map<int, std::string>> parts(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&parts, t] {
      for (int i = 0; i < 20000; ++i)
        parts[t][i] = std::to_string(i * (t + 1));
    });
  for (auto &th : threads)
    th.join();
  std::size_t total = 0;
  for (const auto &m : parts)
    for (const auto &[k, v] : m)
      total += v.size() + static_cast<std::size_t>(k % 3);
  std::cout << "total " << total << '\n';
  return 0;
}
