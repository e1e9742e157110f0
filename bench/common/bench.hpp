// Shared support for the workload programs in bench/workloads: command-line options,
// the two allocation modes (malloc/new, which LD_PRELOAD can replace, and ramalloc's
// native API with reclaim steps), a cheap random generator, RSS readings, a TSC timer
// and a log-linear latency histogram, and the one-line JSON result every program prints.
//
// Nothing here allocates on a timed path: histograms and sample buffers are sized before
// a workload starts.
#pragma once

#include <ramalloc/ramalloc.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dlfcn.h>
#include <fcntl.h>
#include <new>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>
#include <x86intrin.h>

namespace bench {

class histogram;

// --- command line -----------------------------------------------------------------

/// `--key=value`, `--key value` and bare `--flag` arguments. Unknown keys are an error
/// (a typo must not silently run the default).
class options {
public:
  options(int argc, char **argv, std::initializer_list<std::string_view> known) {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "-h" || a == "--help") {
        std::fprintf(stderr, "options:");
        for (auto k : known)
          std::fprintf(stderr, " --%.*s", int(k.size()), k.data());
        std::fprintf(stderr, "\n");
        std::exit(0);
      }
      if (a.substr(0, 2) != "--")
        die("unexpected argument", a);
      a.remove_prefix(2);
      std::string_view key = a, value = "1";
      if (auto eq = a.find('='); eq != std::string_view::npos) {
        key = a.substr(0, eq);
        value = a.substr(eq + 1);
      } else if (i + 1 < argc && argv[i + 1][0] != '-') {
        value = argv[++i];
      }
      if (std::find(known.begin(), known.end(), key) == known.end())
        die("unknown option --", key);
      keys_.emplace_back(key);
      values_.emplace_back(value);
    }
  }
  bool has(std::string_view key) const { return find(key) != nullptr; }
  std::string str(std::string_view key, std::string def) const {
    const std::string *v = find(key);
    return v ? *v : def;
  }
  double num(std::string_view key, double def) const {
    const std::string *v = find(key);
    if (!v)
      return def;
    char *end = nullptr;
    double d = std::strtod(v->c_str(), &end);
    if (end == v->c_str() || *end != '\0')
      die("not a number for --", key);
    return d;
  }

private:
  const std::string *find(std::string_view key) const {
    for (std::size_t i = keys_.size(); i-- > 0;)
      if (keys_[i] == key)
        return &values_[i];
    return nullptr;
  }
  [[noreturn]] static void die(const char *what, std::string_view s) {
    std::fprintf(stderr, "%s%.*s\n", what, int(s.size()), s.data());
    std::exit(2);
  }
  std::vector<std::string> keys_, values_;
};

/// The scale knob: `--scale S` or RAMALLOC_BENCH_SCALE (1 = full size). Every count a
/// workload uses is `base * scale`, at least `min`.
inline double scale_of(const options &o) {
  const char *env = std::getenv("RAMALLOC_BENCH_SCALE");
  double s = o.num("scale", env ? std::atof(env) : 1.0);
  return s > 0 ? s : 1.0;
}
inline std::uint64_t scaled(double base, double scale, std::uint64_t min = 1) {
  return std::max<std::uint64_t>(min, static_cast<std::uint64_t>(base * scale));
}
inline unsigned default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 2;
}

// --- allocation modes -----------------------------------------------------------------

/// Native mode's reclaim policy, the same for every workload (documented in
/// bench/README.md): every `every` allocator operations a thread calls
/// `ramalloc::reclaim(budget)`, like a server loop paying its debt once per iteration.
struct reclaim_policy {
  std::uint32_t every = 128;
  std::uint32_t budget = 32;
};
inline reclaim_policy g_reclaim;

inline void read_reclaim_policy(const options &o) {
  g_reclaim.every = static_cast<std::uint32_t>(std::max(1.0, o.num("reclaim-every", 128)));
  g_reclaim.budget = static_cast<std::uint32_t>(std::max(1.0, o.num("reclaim-budget", 32)));
}

/// malloc/free (or operator new/delete): whatever allocator LD_PRELOAD put in front of
/// the C library. One object per thread; `step()` is a no-op.
struct malloc_mode {
  static constexpr const char *name = "malloc";
  static constexpr bool native = false;
  void *alloc(std::size_t n) noexcept { return std::malloc(n); }
  void release(void *p) noexcept { std::free(p); }
  /// operator new/delete, for the workloads that model C++ objects.
  void *alloc_new(std::size_t n) { return ::operator new(n); }
  void release_new(void *p) noexcept { ::operator delete(p); }
  /// Called once per allocator operation (native mode pays debt here); with `Latency`
  /// the reclaim steps it takes are timed into `h`.
  template <bool Latency = false>
  void step(histogram * = nullptr) noexcept {}
  void finish() noexcept {}
};

/// ramalloc's native API on the calling thread's heap, paying debt with reclaim steps
/// per the policy above. One object per thread.
struct native_mode {
  static constexpr const char *name = "native";
  static constexpr bool native = true;
  void *alloc(std::size_t n) noexcept { return ramalloc::acquire(n); }
  void release(void *p) noexcept { ramalloc::discard(p); }
  void *alloc_new(std::size_t n) noexcept { return ramalloc::acquire(n); }
  void release_new(void *p) noexcept { ramalloc::discard(p); }
  template <bool Latency = false>
  void step(histogram *h = nullptr) noexcept;
  /// A thread about to stop serving pays what its loop would have paid next.
  void finish() noexcept { ramalloc::reclaim(g_reclaim.budget); }
  std::uint64_t reclaims = 0;

private:
  std::uint32_t ops_ = 0;
};

/// Runs `body.template operator()<Mode>()` with the mode chosen by `--native`.
template <class Body>
int dispatch(const options &o, Body &&body) {
  read_reclaim_policy(o);
  if (o.has("native"))
    return body.template operator()<native_mode>();
  return body.template operator()<malloc_mode>();
}

// --- small helpers ---------------------------------------------------------------------

/// xoshiro-style generator: a few cycles per number, no allocation, per thread.
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  std::uint64_t next() noexcept {
    // splitmix64
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n).
  std::uint64_t below(std::uint64_t n) noexcept {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  /// Uniform in [lo, hi].
  std::size_t range(std::size_t lo, std::size_t hi) noexcept { return lo + below(hi - lo + 1); }
};

/// Keeps the compiler from eliding an allocation whose result it can see unused.
inline void escape(void *p) noexcept {
  asm volatile("" : : "g"(p) : "memory");
}

/// Writes the first cache line of a block (and one byte per 4 KiB page after it), like
/// a program initialising a header: every allocator pays the same touch.
inline void touch(void *p, std::size_t n) noexcept {
  auto *c = static_cast<unsigned char *>(p);
  std::memset(c, 0x5A, std::min<std::size_t>(n, 64));
  for (std::size_t off = 4096; off < n; off += 4096)
    c[off] = 1;
  escape(p);
}

inline double now_s() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// --- memory readings --------------------------------------------------------------------

/// A field of /proc/self/status in KiB (VmRSS, VmHWM), read without allocating.
inline std::uint64_t proc_status_kb(const char *field) noexcept {
  int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[8192];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  const std::size_t flen = std::strlen(field);
  for (char *line = buf; line && *line;) {
    if (std::strncmp(line, field, flen) == 0 && line[flen] == ':')
      return std::strtoull(line + flen + 1, nullptr, 10);
    line = std::strchr(line, '\n');
    if (line)
      ++line;
  }
  return 0;
}
inline std::uint64_t rss_kb() noexcept {
  return proc_status_kb("VmRSS");
}
inline std::uint64_t peak_rss_kb() noexcept {
  return proc_status_kb("VmHWM");
}

/// Current RSS in KiB from /proc/self/statm (cheaper than status; for frequent samples).
inline std::uint64_t statm_rss_kb() noexcept {
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  char *p = std::strchr(buf, ' ');
  if (!p)
    return 0;
  return std::strtoull(p + 1, nullptr, 10) *
         (static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) / 1024);
}

/// Involuntary context switches of the whole process so far: a noise indicator for
/// latency tails on a shared machine.
inline long involuntary_switches() noexcept {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nivcsw;
}

// --- timing ---------------------------------------------------------------------------

/// TSC reads fenced so the timed operation cannot drift out of the window:
/// lfence;rdtsc;lfence before, rdtscp;lfence after (no cpuid: it traps under a hypervisor).
inline std::uint64_t tsc_begin() noexcept {
  _mm_lfence();
  std::uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
}
inline std::uint64_t tsc_end() noexcept {
  unsigned aux;
  std::uint64_t t = __rdtscp(&aux);
  _mm_lfence();
  return t;
}

/// TSC ticks per nanosecond, measured against CLOCK_MONOTONIC over ~30 ms.
inline double tsc_per_ns() {
  static double cached = [] {
    double t0 = now_s();
    std::uint64_t c0 = tsc_begin();
    while (now_s() - t0 < 0.03) {
    }
    double t1 = now_s();
    std::uint64_t c1 = tsc_end();
    return double(c1 - c0) / ((t1 - t0) * 1e9);
  }();
  return cached;
}

/// Log-linear histogram of TSC ticks: exact below 32, then 32 buckets per power of two
/// (bucket width <= 1/32 of its value, so a reported percentile is at most ~3% above
/// the true one). Fixed size; record() is a few instructions and never allocates.
class histogram {
public:
  static constexpr int sub_bits = 5;
  static constexpr int sub = 1 << sub_bits;
  static constexpr int buckets = (64 - sub_bits + 1) * sub;

  void record(std::uint64_t v) noexcept {
    ++counts_[index(v)];
    ++total_;
    if (v > max_)
      max_ = v;
  }
  void merge(const histogram &o) noexcept {
    for (int i = 0; i < buckets; ++i)
      counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
  }
  std::uint64_t total() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  /// Smallest recorded bucket bound with at least q of the samples at or below it.
  std::uint64_t percentile(double q) const noexcept {
    if (total_ == 0)
      return 0;
    const std::uint64_t want = static_cast<std::uint64_t>(std::ceil(q * double(total_)));
    std::uint64_t seen = 0;
    for (int i = 0; i < buckets; ++i) {
      seen += counts_[i];
      if (seen >= want && seen > 0)
        return std::min(upper(i), max_);
    }
    return max_;
  }
  /// Appends `"<prefix>p50_ns":..,"<prefix>p99_ns":..,...` to a result line.
  template <class Result>
  void report(Result &r, const std::string &prefix) const {
    const double k = 1.0 / tsc_per_ns();
    const struct {
      const char *name;
      double value;
    } fields[] = {{"count", double(total_)},
                  {"p50_ns", double(percentile(0.50)) * k},
                  {"p99_ns", double(percentile(0.99)) * k},
                  {"p999_ns", double(percentile(0.999)) * k},
                  {"p9999_ns", double(percentile(0.9999)) * k},
                  {"max_ns", double(max_) * k}};
    for (const auto &f : fields) {
      std::string key = prefix;
      key.append(f.name);
      r.num(key, f.value);
    }
  }
  /// Writes "upper_bound_ns count" lines for non-empty buckets (for CDF plots).
  bool dump(const char *path) const {
    std::FILE *f = std::fopen(path, "w");
    if (!f)
      return false;
    const double k = 1.0 / tsc_per_ns();
    for (int i = 0; i < buckets; ++i)
      if (counts_[i])
        std::fprintf(f, "%.1f %" PRIu64 "\n", double(std::min(upper(i), max_)) * k, counts_[i]);
    std::fclose(f);
    return true;
  }

private:
  static int index(std::uint64_t v) noexcept {
    if (v < std::uint64_t(sub))
      return static_cast<int>(v);
    const int e = 63 - std::countl_zero(v);
    const int shift = e - sub_bits;
    return (shift + 1) * sub + static_cast<int>((v >> shift) & (sub - 1));
  }
  static std::uint64_t upper(int i) noexcept {
    if (i < sub)
      return static_cast<std::uint64_t>(i);
    const int shift = i / sub - 1;
    const std::uint64_t m = static_cast<std::uint64_t>(i % sub);
    return ((sub + m + 1) << shift) - 1;
  }
  std::uint64_t counts_[buckets] = {};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

template <bool Latency>
void native_mode::step(histogram *h) noexcept {
  if (++ops_ < g_reclaim.every)
    return;
  ops_ = 0;
  ++reclaims;
  if constexpr (Latency) {
    const std::uint64_t t0 = tsc_begin();
    ramalloc::reclaim(g_reclaim.budget);
    h->record(tsc_end() - t0);
  } else {
    ramalloc::reclaim(g_reclaim.budget);
  }
}

/// Median cost of an empty timed window, in ns: the floor under every latency figure
/// (reported as timer_overhead_ns; latencies are not corrected for it).
inline double timer_overhead_ns() {
  histogram h;
  for (int i = 0; i < 100000; ++i) {
    std::uint64_t t0 = tsc_begin();
    std::uint64_t t1 = tsc_end();
    h.record(t1 - t0);
  }
  return double(h.percentile(0.5)) / tsc_per_ns();
}

// --- results ----------------------------------------------------------------------------

/// One line of JSON on stdout: {"bench":..., "mode":..., key: value...}. The comparison
/// script reads the last line that starts with '{'.
class result {
public:
  result(const char *bench, const char *mode) {
    line_ = "{\"bench\":\"";
    line_ += bench;
    line_ += "\",\"mode\":\"";
    line_ += mode;
    line_ += "\"";
    native_ = std::string_view(mode) == "native";
  }
  result &num(const std::string &key, double v) {
    char buf[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
      std::snprintf(buf, sizeof buf, "%.0f", v);
    else if (std::isfinite(v))
      std::snprintf(buf, sizeof buf, "%.6g", v);
    else
      std::snprintf(buf, sizeof buf, "null");
    append_key(key);
    line_ += buf;
    return *this;
  }
  result &str(const std::string &key, const std::string &v) {
    append_key(key);
    line_ += '"';
    line_ += v;
    line_ += '"';
    return *this;
  }
  /// Adds ramalloc's own statistics when ramalloc serves this run: in native mode the
  /// linked library's, under LD_PRELOAD=libramalloc.so the preloaded one's (found with
  /// dlsym: the program's own copy is not exported, so the lookup only finds a preload).
  result &ramalloc_stats(bool native) {
    using get_fn = void (*)(ram_stats *);
    get_fn get =
        native ? &ram_get_stats : reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "ram_get_stats"));
    if (get == nullptr)
      return *this;
    ram_stats s{};
    get(&s);
    num("ram_committed_kb", double(s.committed_bytes / 1024));
    num("ram_live_kb", double(s.live_bytes / 1024));
    num("ram_pending_debt", double(s.pending_debt));
    num("ram_pages_purged", double(s.pages_purged));
    num("ram_heaps_live", double(s.heaps_live));
    num("ram_heaps_orphaned", double(s.heaps_orphaned));
    num("ram_orphans_adopted", double(s.orphans_adopted));
    return *this;
  }
  /// Adds peak and current RSS and prints the line.
  void print() {
    ramalloc_stats(native_);
    num("peak_rss_kb", double(peak_rss_kb()));
    num("final_rss_kb", double(rss_kb()));
    num("nivcsw", double(involuntary_switches()));
    line_ += "}\n";
    std::fputs(line_.c_str(), stdout);
    std::fflush(stdout);
  }

private:
  void append_key(const std::string &key) {
    line_ += ",\"";
    line_ += key;
    line_ += "\":";
  }
  std::string line_;
  bool native_ = false;
};

/// A spin-then-yield wait, for hand-offs between threads on a machine with few cores
/// (pure spinning starves the thread being waited for).
struct backoff {
  unsigned n = 0;
  void pause() noexcept {
    if (++n < 64)
      _mm_pause();
    else
      std::this_thread::yield();
  }
  void reset() noexcept { n = 0; }
};

/// Reports the latency histograms of a run the same way in every workload: all
/// operations, allocations, frees, and (native mode) the reclaim calls; optionally dumps
/// the combined histogram for the latency plots.
inline void report_latency(result &res, const histogram &alloc, const histogram &free,
                           const histogram &reclaim, bool native, const std::string &hist_path) {
  histogram all;
  all.merge(alloc);
  all.merge(free);
  res.num("timer_overhead_ns", timer_overhead_ns());
  all.report(res, "lat_");
  alloc.report(res, "alloc_");
  free.report(res, "free_");
  if (native)
    reclaim.report(res, "reclaim_");
  if (!hist_path.empty())
    all.dump(hist_path.c_str());
}

} // namespace bench
