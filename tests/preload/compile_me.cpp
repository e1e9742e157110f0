// The g++ workload of the preload test (run_preload_tests.sh): a program heavy enough on
// templates (regex, maps, variant, ranges, iostreams) that the compiler allocates a lot
// while building it. The test compiles it with and without LD_PRELOAD=libramalloc.so and
// requires the same object file and the same output from the program.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <ranges>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

using value = std::variant<std::int64_t, double, std::string, std::vector<std::int64_t>>;

struct describe {
  std::string operator()(std::int64_t v) const { return "int " + std::to_string(v); }
  std::string operator()(double v) const {
    std::ostringstream s;
    s << "double " << std::fixed << std::setprecision(3) << v;
    return s.str();
  }
  std::string operator()(const std::string &v) const { return "string '" + v + "'"; }
  std::string operator()(const std::vector<std::int64_t> &v) const {
    return "vector of " + std::to_string(v.size()) + " summing to " +
           std::to_string(std::accumulate(v.begin(), v.end(), std::int64_t{0}));
  }
};

template <class Key, class Value>
std::map<Value, std::set<Key>> invert(const std::unordered_map<Key, Value> &m) {
  std::map<Value, std::set<Key>> out;
  for (const auto &[k, v] : m)
    out[v].insert(k);
  return out;
}

std::uint64_t lcg(std::uint64_t &state) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return state >> 33;
}

std::string make_text(std::size_t words) {
  static const char *vocabulary[] = {"alloc", "free",   "page",   "span",  "heap",  "region",
                                     "debt",  "budget", "orphan", "inbox", "slice", "class"};
  std::uint64_t state = 42;
  std::string text;
  for (std::size_t i = 0; i < words; ++i) {
    text += vocabulary[lcg(state) % std::size(vocabulary)];
    text += (i % 11 == 10) ? ".\n" : " ";
    if (i % 17 == 0)
      text += std::to_string(lcg(state) % 10000) + " ";
  }
  return text;
}

} // namespace

int main() {
  const std::string text = make_text(20000);

  // Word frequencies through a regex iterator.
  std::unordered_map<std::string, int> counts;
  const std::regex word(R"([a-z]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator();
       ++it)
    ++counts[it->str()];
  for (const auto &[n, words] : invert(counts)) {
    std::cout << n << ":";
    for (const auto &w : words)
      std::cout << ' ' << w;
    std::cout << '\n';
  }

  // Numbers, sorted and filtered through ranges.
  std::vector<std::int64_t> numbers;
  const std::regex number(R"(\b[0-9]+\b)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number);
       it != std::sregex_iterator(); ++it)
    numbers.push_back(std::stoll(it->str()));
  std::ranges::sort(numbers);
  auto big = numbers | std::views::filter([](std::int64_t n) { return n > 9000; }) |
             std::views::transform([](std::int64_t n) { return n % 1000; });
  std::cout << "numbers " << numbers.size() << ", big ones mod 1000:";
  for (std::int64_t n : big | std::views::take(10))
    std::cout << ' ' << n;
  std::cout << '\n';

  // Variants.
  std::vector<value> values{std::int64_t{7}, 2.5, std::string("ramalloc"), numbers};
  for (const value &v : values)
    std::cout << std::visit(describe{}, v) << '\n';

  // A regex replace over the whole text, hashed.
  const std::string replaced =
      std::regex_replace(text, std::regex("(heap|page) ([a-z]+)"), "$2<-$1");
  std::cout << "replaced " << replaced.size() << " bytes, hash "
            << std::hash<std::string>{}(replaced) << '\n';
  std::optional<std::size_t> first = replaced.find("<-");
  std::cout << "first arrow at " << first.value_or(0) << '\n';
  return 0;
}
