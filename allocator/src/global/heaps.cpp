#include "global/heaps.hpp"

#include <new>
#include <pthread.h>
#include <sys/auxv.h>

#include "ds/tagged_stack.hpp"
#include "pal/meta_arena.hpp"

namespace ramalloc::detail {

// initial-exec: the TLS slot is at a fixed offset, so reading it never calls into the
// dynamic linker (which may allocate) — required once the override is preloaded.
constinit thread_local heap_state *t_current __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

constinit tagged_stack<heap_state, &heap_state::stack_next> g_pool{};
// Orphans: heaps whose owner is gone but which still hold live blocks or resident free
// memory. Thread heaps may be adopted by a new thread; heaps made with the `heap` class
// (possibly over a static buffer) must not become some thread's default heap, so they
// wait on their own stack to be drained.
constinit tagged_stack<heap_state, &heap_state::stack_next> g_orphans{};
constinit tagged_stack<heap_state, &heap_state::stack_next> g_orphaned_user_heaps{};
constinit std::atomic<heap_state *> g_all_heaps{nullptr};
constinit std::atomic<std::uint64_t> g_heaps_live{0}, g_orphan_count{0}, g_adopted{0};
constinit std::atomic<std::uint64_t> g_invalid_frees{0};

constinit pthread_key_t g_thread_key{};
constinit pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

/// pthread key destructor: the thread is exiting. O(1): no page is walked; the heap is
/// orphaned (or pooled if empty) and drained later by other threads' reclaim steps.
void on_thread_exit(void *value) noexcept {
  auto *h = static_cast<heap_state *>(value);
  if (t_current == h)
    t_current = nullptr;
  heap_release(h, /*drain=*/false);
}

void create_key() noexcept {
  RAMALLOC_CHECK(pthread_key_create(&g_thread_key, on_thread_exit) == 0,
                 "pthread_key_create failed: no thread-exit hook for heaps");
  // The canary key comes from the kernel's per-process random bytes (no syscall).
  if (const auto *rnd = reinterpret_cast<const std::uint64_t *>(getauxval(AT_RANDOM))) {
    std::uint64_t k;
    __builtin_memcpy(&k, rnd, sizeof k);
    g_canary_key.store(k, std::memory_order_relaxed);
  }
}

bool is_drained(const heap_state *h) noexcept {
  // Empty current pages wait on the idle list: a pooled heap keeps nothing resident
  // but its reserve, so those must have been retired too.
  return heap_live_blocks(h) == 0 && h->inbox_count.load(std::memory_order_relaxed) == 0 &&
         h->cache.empty() && h->idle.empty() &&
         (h->dirty_fifo.empty() ||
          h->committed.get() <= g_options.reserve.load(std::memory_order_relaxed));
}

/// Forgets a static-buffer heap's region (its memory is the caller's, not ours) and
/// recycles the region's header.
void drop_static_region(heap_state *h) noexcept {
  region *r = h->static_region;
  if (r == nullptr)
    return;
  page_map_unregister(r->base, r->map_size);
  for (auto &l : h->avail)
    l = {};
  for (auto &c : h->current)
    c = &g_empty_page;
  h->cache = {};
  h->dirty_bins = {};
  h->clean_bins = {};
  h->dirty_fifo = {};
  h->regions = {};
  h->static_region = nullptr;
  h->reserved.sub(r->map_size);
  h->committed.sub(r->map_size);
  h->reserve_done = false;
  static_region_recycle(r); // its header is allocator metadata (mem/region.cpp)
}

void orphan(heap_state *h) noexcept {
  h->status.store(heap_status::orphaned, std::memory_order_relaxed);
  g_orphan_count.fetch_add(1, std::memory_order_relaxed);
  (h->thread_heap ? g_orphans : g_orphaned_user_heaps).push(h);
}

/// Takes an orphan for servicing: thread heaps and user heaps by turns, so neither
/// kind starves the other.
heap_state *take_orphan() noexcept {
  static constinit std::atomic<unsigned> turn{0};
  const bool user_first = (turn.fetch_add(1, std::memory_order_relaxed) & 1) != 0;
  heap_state *o = user_first ? g_orphaned_user_heaps.pop() : g_orphans.pop();
  if (o == nullptr)
    o = user_first ? g_orphans.pop() : g_orphaned_user_heaps.pop();
  if (o != nullptr)
    g_orphan_count.fetch_sub(1, std::memory_order_relaxed);
  return o;
}

void retire(heap_state *h) noexcept {
  drop_static_region(h);
  h->status.store(heap_status::pooled, std::memory_order_relaxed);
  g_heaps_live.fetch_sub(1, std::memory_order_relaxed);
  g_pool.push(h);
}

} // namespace

heap_state *heap_create(bool without_memory) noexcept {
  load_options_once();
  pthread_once(&g_key_once, create_key);
  heap_state *h = g_pool.pop();
  if (h != nullptr && without_memory && !h->regions.empty()) {
    g_pool.push(h);
    h = nullptr;
  }
  if (h == nullptr) {
    void *mem = meta_alloc(sizeof(heap_state), alignof(heap_state));
    if (mem == nullptr)
      return nullptr;
    h = new (mem) heap_state{};
    heap_init(h);
    new (h->handle_storage) heap(detail::heap_access::borrowed(h));
    heap_state *top = g_all_heaps.load(std::memory_order_relaxed);
    do {
      h->all_next = top;
    } while (!g_all_heaps.compare_exchange_weak(top, h, std::memory_order_release,
                                                std::memory_order_relaxed));
  }
  h->status.store(heap_status::owned, std::memory_order_relaxed);
  h->thread_heap = false;
  g_heaps_live.fetch_add(1, std::memory_order_relaxed);
  return h;
}

heap_state *bind_thread() noexcept {
  load_options_once();
  pthread_once(&g_key_once, create_key);
  heap_state *h = g_orphans.pop();
  if (h != nullptr) {
    g_orphan_count.fetch_sub(1, std::memory_order_relaxed);
    g_adopted.fetch_add(1, std::memory_order_relaxed);
    h->status.store(heap_status::owned, std::memory_order_relaxed);
  } else {
    h = heap_create();
    if (h == nullptr)
      return nullptr;
    h->thread_heap = true;
  }
  t_current = h;
  // Arms (or, during thread teardown, re-arms) the exit hook for this heap.
  pthread_setspecific(g_thread_key, h);
  return h;
}

void heap_release(heap_state *h, bool drain) noexcept {
  if (drain)
    heap_flush(h);
  if (is_drained(h)) {
    retire(h);
    return;
  }
  orphan(h);
}

std::size_t service_orphans(std::size_t budget) noexcept {
  if (budget == 0)
    return 0;
  heap_state *o = take_orphan(); // exclusive: ours until it goes back on a stack
  if (o == nullptr)
    return 0;
  std::size_t spent = 0;
  heap_reclaim(o, budget, &spent);
  o->orphans_serviced.add(1);
  if (is_drained(o))
    retire(o);
  else
    orphan(o);
  return spent;
}

void flush_orphans() noexcept {
  heap_state *kept = nullptr;
  while (heap_state *o = take_orphan()) {
    heap_flush(o);
    if (is_drained(o)) {
      retire(o);
    } else {
      o->stack_next.store(kept, std::memory_order_relaxed);
      kept = o;
    }
  }
  while (kept != nullptr) {
    heap_state *next = kept->stack_next.load(std::memory_order_relaxed);
    orphan(kept);
    kept = next;
  }
}

void global_stats(ram_stats *out) noexcept {
  *out = ram_stats{};
  for (heap_state *h = g_all_heaps.load(std::memory_order_acquire); h != nullptr; h = h->all_next)
    heap_stats(h, out);
  out->heaps_live = g_heaps_live.load(std::memory_order_relaxed);
  out->heaps_orphaned = g_orphan_count.load(std::memory_order_relaxed);
  out->orphans_adopted = g_adopted.load(std::memory_order_relaxed);
  out->invalid_frees = g_invalid_frees.load(std::memory_order_relaxed);
}

void count_invalid_free() noexcept {
  g_invalid_frees.fetch_add(1, std::memory_order_relaxed);
}

} // namespace ramalloc::detail
