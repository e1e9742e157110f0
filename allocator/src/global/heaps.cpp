#include "global/heaps.hpp"

#include <new>
#include <pthread.h>
#include <sys/auxv.h>

#include "ds/tagged_stack.hpp"
#include "mem/checked.hpp"
#include "pal/meta_arena.hpp"

namespace ramalloc::detail {

// initial-exec: the TLS slot is at a fixed offset, so reading it never calls into the
// dynamic linker (which may allocate) — required once the override is preloaded.
constinit thread_local heap_state *t_current __attribute__((tls_model("initial-exec"))) = &g_unbound;

namespace {

constinit tagged_stack<heap_state, &heap_state::stack_next> g_pool{};
// Orphans: heaps whose owner is gone but which still hold live blocks or resident free
// memory. Thread heaps may be adopted by a new thread; heaps made with the `heap` class
// (possibly over a static buffer) must not become some thread's default heap, so they
// wait on their own stack to be drained.
constinit tagged_stack<heap_state, &heap_state::stack_next> g_orphans{};
constinit tagged_stack<heap_state, &heap_state::stack_next> g_orphaned_user_heaps{};
// The thread orphan handed off last waits here, not on g_orphans: it still holds its
// owner's last objects, which other threads are about to free, so a starting thread
// takes it only when the stack is empty (see hand_off_thread_heap). Exchanged, never
// locked.
constinit std::atomic<heap_state *> g_newest_orphan{nullptr};
// Thread hand-offs under way (low 32 bits) and completed (high 32 bits): between taking
// the slot and pushing the orphan it held, that orphan is on neither; a starting thread
// that finds both empty while this word moves looks again (bounded: adoption_tries).
constinit std::atomic<std::uint64_t> g_hand_offs{0};
constinit std::atomic<heap_state *> g_all_heaps{nullptr};
constinit std::atomic<std::uint64_t> g_heaps_live{0}, g_adopted{0};
// g_orphans_waiting (mem/heap.cpp) counts the orphans on both stacks and in the slot.
constinit std::atomic<std::uint64_t> g_invalid_frees{0};

// When a thread last handed its heap off at exit (see service_orphan_step).
constinit std::atomic<std::uint64_t> g_last_thread_orphan_ms{0};

constinit pthread_key_t g_thread_key{};
constinit pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

// Set once this thread's exit hook has handed its heap off. The C library runs key
// destructors in rounds (at most PTHREAD_DESTRUCTOR_ITERATIONS) and stops after a round
// in which no destructor set a value again, so a heap bound after the hook ran would be
// handed off only if another round followed: in the last round, never. So a thread past
// its hook never binds a heap again; its allocations adopt a heap for one allocation
// and hand it straight back (alloc_unbound).
constinit thread_local bool t_exited __attribute__((tls_model("initial-exec"))) = false;

/// pthread key destructor: the thread is exiting. O(1): no page is walked; the heap is
/// orphaned (or pooled if empty) and drained later by other threads' steps.
void on_thread_exit(void *value) noexcept {
  annotate_scope in_allocator;
  auto *h = static_cast<heap_state *>(value);
  t_exited = true;
  if (t_current == h)
    t_current = &g_unbound;
  g_last_thread_orphan_ms.store(now_ms(), std::memory_order_relaxed);
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
         h->parked_count.load(std::memory_order_relaxed) == 0 && h->cache.empty() &&
         h->idle.empty() &&
         (h->dirty_fifo.empty() ||
          h->committed.get() <= g_options.reserve.load(std::memory_order_relaxed));
}

/// Forgets a static-buffer heap's region (its memory is the caller's, not ours) and
/// recycles the region's header.
void drop_static_region(heap_state *h) noexcept {
  region *r = h->static_region;
  if (r == nullptr)
    return;
  if (annotations_enabled)
    annotate_returned(r->base, r->map_size);
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
  static_region_recycle(r); // its header is allocator metadata (mem/region.cpp)
}

std::size_t service_orphan_step(std::size_t budget) noexcept;

/// Marks `h` orphaned and counts it, before it is put where it waits.
void mark_orphaned(heap_state *h) noexcept {
  h->status.store(heap_status::orphaned, std::memory_order_relaxed);
  g_orphan_service.store(&service_orphan_step, std::memory_order_release);
  g_orphans_waiting.fetch_add(1, std::memory_order_relaxed);
}

/// Puts an orphan where it waits (a serviced orphan going back, or a user heap).
void orphan(heap_state *h) noexcept {
  mark_orphaned(h);
  (h->thread_heap ? g_orphans : g_orphaned_user_heaps).push(h);
}

constexpr std::uint64_t hand_off_done = std::uint64_t{1} << 32;

/// Orphans a thread heap whose owner just let it go: it takes the newest-orphan slot and
/// the orphan it displaces goes on the stack. O(1): one exchange, at most one push, two
/// counter updates, no retry. The stack is LIFO, so a starting thread adopts the newest
/// of the *other* orphans: under thread churn, adopting the heap orphaned moments ago
/// (plain LIFO) piled a new life's blocks on the previous one, whose objects the next
/// threads were about to free, and every heap grew to the peak of such pile-ups
/// (thread-churn: up to 4,700 blocks in one heap where a life holds 3,000; about 1.4 MiB
/// resident per heap instead of 1.9 with this order). Popping two orphans and pushing
/// the younger back had the same effect but left the stack empty for a moment to every
/// other starting thread, which then made a heap of its own.
void hand_off_thread_heap(heap_state *h) noexcept {
  mark_orphaned(h);
  g_hand_offs.fetch_add(1, std::memory_order_acq_rel);
  // acq_rel: publishes h to whoever takes the slot, and makes `older` (published by its
  // own hand-off) ours to push.
  if (heap_state *older = g_newest_orphan.exchange(h, std::memory_order_acq_rel))
    g_orphans.push(older);
  g_hand_offs.fetch_add(hand_off_done - 1, std::memory_order_acq_rel);
}

/// A thread orphan off the stack, else the newest one from its slot; nullptr if both are
/// empty. Exclusive: the caller owns the heap.
heap_state *take_thread_orphan() noexcept {
  heap_state *h = g_orphans.pop();
  if (h == nullptr && g_newest_orphan.load(std::memory_order_relaxed) != nullptr)
    h = g_newest_orphan.exchange(nullptr, std::memory_order_acquire);
  if (h != nullptr)
    g_orphans_waiting.fetch_sub(1, std::memory_order_relaxed);
  return h;
}

/// An orphaned `heap`-class heap (never adopted, only serviced); nullptr if none.
heap_state *take_user_orphan() noexcept {
  heap_state *h = g_orphaned_user_heaps.pop();
  if (h != nullptr)
    g_orphans_waiting.fetch_sub(1, std::memory_order_relaxed);
  return h;
}

/// How many times a starting thread looks again for an orphan while hand-offs move
/// them (each look: one pop, one exchange at most, and a short pause).
constexpr unsigned adoption_tries = 8;

/// The thread orphan a starting thread adopts (take_thread_orphan), or nullptr when
/// there is none. If both places were empty while a hand-off was under way or finished
/// meanwhile, an orphan may have been between the slot and the stack: it looks again, at
/// most adoption_tries times, rather than make a heap that is one too many once that
/// orphan lands. Bounded: a hand-off takes a few instructions, and an exiting thread
/// preempted in the middle of one costs at worst one heap made early, which the next
/// starting thread adopts.
heap_state *take_orphan_to_adopt() noexcept {
  for (unsigned tries = 0;; ++tries) {
    const std::uint64_t before = g_hand_offs.load(std::memory_order_acquire);
    if (heap_state *h = take_thread_orphan()) {
      // A new owner, judged on its own reclaim calls (auto purge, the dirty cap), not on
      // the dead owner's or a servicing step's.
      h->last_reclaim_ms = 0;
      h->status.store(heap_status::owned, std::memory_order_relaxed);
      return h;
    }
    const std::uint64_t after = g_hand_offs.load(std::memory_order_acquire);
    if ((after == before && (after & (hand_off_done - 1)) == 0) || tries + 1 == adoption_tries)
      return nullptr;
    spin_pause();
  }
}

/// Takes an orphan for servicing: thread heaps and user heaps by turns, so neither
/// kind starves the other.
heap_state *take_orphan() noexcept {
  static constinit std::atomic<unsigned> turn{0};
  const bool user_first = (turn.fetch_add(1, std::memory_order_relaxed) & 1) != 0;
  heap_state *o = user_first ? take_user_orphan() : take_thread_orphan();
  if (o == nullptr)
    o = user_first ? take_thread_orphan() : take_user_orphan();
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
  heap_owe_reserve(h); // paid by reclaim steps, never inside an acquire
  g_heaps_live.fetch_add(1, std::memory_order_relaxed);
  return h;
}

bool thread_exited() noexcept {
  return t_exited;
}

heap_state *adopt_for_one_allocation() noexcept {
  heap_state *h = take_orphan_to_adopt();
  if (h != nullptr)
    return h;
  h = heap_create();
  if (h != nullptr)
    h->thread_heap = true; // an orphan like any exited thread's: the next one adopts it
  return h;
}

heap_state *bind_thread(bool even_after_exit) noexcept {
  if (t_exited && !even_after_exit)
    return nullptr; // nothing might hand a heap bound now off: see alloc_unbound
  load_options_once();
  pthread_once(&g_key_once, create_key);
  heap_state *h = take_orphan_to_adopt();
  if (h != nullptr) {
    g_adopted.fetch_add(1, std::memory_order_relaxed);
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

void *unbound_alloc_class(unsigned cls) noexcept {
  return alloc_binding([cls](heap_state *h) { return heap_alloc_class<true>(h, cls); });
}

void heap_release(heap_state *h, bool drain) noexcept {
  // Checked mode's quarantined blocks go back to their pages while h still has an owner
  // (at most heap_state::quarantine_slots of them), and blocks kept from other heaps go
  // back to those (at most rcache_classes * rcache_slots).
  quarantine_drain(h);
  rcache_drain(h);
  if (drain)
    heap_flush(h);
  if (is_drained(h)) {
    retire(h);
    return;
  }
  if (h->thread_heap)
    hand_off_thread_heap(h);
  else
    orphan(h);
}

namespace {

/// Pays at most `budget` units of orphan `o`'s debt (taken off its stack: exclusive),
/// then retires it if drained or puts it back.
std::size_t service_one(heap_state *o, std::size_t budget) noexcept {
  std::size_t spent = 0;
  heap_reclaim(o, budget, &spent);
  o->orphans_serviced.add(1);
  if (is_drained(o))
    retire(o);
  else
    orphan(o);
  return spent;
}

/// A thread orphan for servicing, once no thread has exited for purge_delay.
heap_state *take_thread_orphan_if_quiet() noexcept {
  const std::uint64_t quiet = now_ms() - g_last_thread_orphan_ms.load(std::memory_order_relaxed);
  if (quiet < g_options.purge_delay_ms.load(std::memory_order_relaxed))
    return nullptr;
  return take_thread_orphan();
}

/// Services one orphan a step (g_orphan_service on slow paths, and reclaim's left-over
/// budget): a thread heap orphaned moments ago is about to be adopted by a thread that
/// is starting (the cheapest drain of all); popping it from under that thread would make
/// it create a heap of its own (thread-churn with reclaim steps: one heap more, 1.5 MiB
/// more resident). So thread orphans are left alone until no thread has exited for
/// purge_delay; heaps made with the `heap` class are never adopted and are serviced at
/// once.
std::size_t service_orphan_step(std::size_t budget) noexcept {
  // Thread heaps and user heaps by turns, so that neither kind starves the other.
  static constinit std::atomic<unsigned> turn{0};
  const bool threads_first = (turn.fetch_add(1, std::memory_order_relaxed) & 1) != 0;
  heap_state *o = threads_first ? take_thread_orphan_if_quiet() : nullptr;
  if (o == nullptr)
    o = take_user_orphan();
  if (o == nullptr && !threads_first)
    o = take_thread_orphan_if_quiet();
  if (o == nullptr)
    return 0;
  return service_one(o, budget);
}

} // namespace

std::size_t service_orphans(std::size_t budget) noexcept {
  if (budget == 0)
    return 0;
  return service_orphan_step(budget);
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
  out->heaps_orphaned = g_orphans_waiting.load(std::memory_order_relaxed);
  out->orphans_adopted = g_adopted.load(std::memory_order_relaxed);
  out->invalid_frees = g_invalid_frees.load(std::memory_order_relaxed);
}

void count_invalid_free() noexcept {
  g_invalid_frees.fetch_add(1, std::memory_order_relaxed);
}

} // namespace ramalloc::detail
