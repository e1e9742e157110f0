// RAMALLOC_SHOW_STATS=1: a readable statistics table on stderr at exit.
// RAMALLOC_STATS_JSON=path: the same figures as a JSON object in `path`.
// Formatting goes to stack buffers and out with write(2): no allocation at exit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "ramalloc/ramalloc.h"

namespace {

struct field {
  const char *name;
  unsigned long long value;
  bool bytes;
};

void write_all(int fd, const char *s, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(fd, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}

void human(char *out, std::size_t cap, unsigned long long v) noexcept {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double d = static_cast<double>(v);
  unsigned u = 0;
  while (d >= 1024.0 && u < 4) {
    d /= 1024.0;
    ++u;
  }
  if (u == 0)
    std::snprintf(out, cap, "%llu B", v);
  else
    std::snprintf(out, cap, "%.1f %s", d, units[u]);
}

// Programs may close stderr before the library's destructor runs (GNU coreutils do, in
// an atexit handler), so the table goes to a duplicate taken at load time. Only a
// convenience: without it (no constructor run) the report falls back to fd 2.
int g_report_fd = STDERR_FILENO;

__attribute__((constructor)) void keep_stderr_for_report() noexcept {
  const char *show = std::getenv("RAMALLOC_SHOW_STATS");
  if (show == nullptr || *show == '\0' || std::strcmp(show, "0") == 0)
    return;
  const int fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (fd >= 0)
    g_report_fd = fd;
}

__attribute__((destructor)) void report_at_exit() noexcept {
  const char *show = std::getenv("RAMALLOC_SHOW_STATS");
  const char *json = std::getenv("RAMALLOC_STATS_JSON");
  const bool want_table = show != nullptr && std::strcmp(show, "0") != 0 && *show != '\0';
  if (!want_table && (json == nullptr || *json == '\0'))
    return;
  ram_stats s{};
  ram_get_stats(&s);
  const field fields[] = {
      {"live_bytes", s.live_bytes, true},
      {"live_blocks", s.live_blocks, false},
      {"committed_bytes", s.committed_bytes, true},
      {"reserved_bytes", s.reserved_bytes, true},
      {"pending_debt", s.pending_debt, false},
      {"remote_frees", s.remote_frees, false},
      {"pages_purged", s.pages_purged, false},
      {"bytes_purged", s.bytes_purged, true},
      {"heaps_live", s.heaps_live, false},
      {"heaps_orphaned", s.heaps_orphaned, false},
      {"orphans_adopted", s.orphans_adopted, false},
      {"orphans_serviced", s.orphans_serviced, false},
      {"invalid_frees", s.invalid_frees, false},
  };
  char line[160];
  if (want_table) {
    int n = std::snprintf(line, sizeof line, "ramalloc statistics (pid %d, at exit)\n",
                          static_cast<int>(::getpid()));
    write_all(g_report_fd, line, static_cast<std::size_t>(n));
    for (const field &f : fields) {
      char value[48];
      if (f.bytes)
        human(value, sizeof value, f.value);
      else
        std::snprintf(value, sizeof value, "%llu", f.value);
      n = std::snprintf(line, sizeof line, "  %-18s %16s\n", f.name, value);
      write_all(g_report_fd, line, static_cast<std::size_t>(n));
    }
  }
  if (json != nullptr && *json != '\0') {
    const int fd = ::open(json, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int n = std::snprintf(line, sizeof line,
                                  "ramalloc: RAMALLOC_STATS_JSON: cannot open %.100s\n", json);
      write_all(g_report_fd, line, static_cast<std::size_t>(n));
      return;
    }
    write_all(fd, "{", 1);
    bool first = true;
    for (const field &f : fields) {
      const int n =
          std::snprintf(line, sizeof line, "%s\"%s\": %llu", first ? "" : ", ", f.name, f.value);
      write_all(fd, line, static_cast<std::size_t>(n));
      first = false;
    }
    write_all(fd, "}\n", 2);
    ::close(fd);
  }
}

} // namespace
