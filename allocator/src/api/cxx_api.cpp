// The C++ API (ramalloc.hpp) over the core.
#include <cstdio>

#include "api/cxx_runtime.hpp"
#include "api/dispatch.hpp"
#include "global/heaps.hpp"

namespace ramalloc {

using namespace detail;

namespace detail {
bool apply_option(const char *name, const char *value) noexcept;
bool apply_options(const options &o) noexcept;
void set_error_handler(ram_error_fn fn, void *context) noexcept;
#if defined(RAMALLOC_DEBUG)
void read_max_steps(std::uint64_t &a, std::uint64_t &d) noexcept;
void clear_max_steps() noexcept;
#endif
} // namespace detail

// --- the five operations ------------------------------------------------------------------

void *acquire(std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return alloc_current([size](heap_state *h) { return alloc_native(h, size); });
}

void *acquire(std::size_t size, std::size_t align) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return alloc_current([=](heap_state *h) { return alloc_aligned(h, size, align); });
}

void discard(void *p) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  free_and_report(p); // null: nothing (free_unusual)
}

std::size_t reclaim(std::size_t budget) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  heap_state *h = current_state();
  if (h == nullptr)
    return 0;
  std::size_t spent = 0;
  std::size_t pending = heap_reclaim(h, budget, &spent);
  // Budget left over goes to heaps whose threads exited.
  if (spent < budget)
    service_orphans(budget - spent);
  return pending;
}

void flush() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  heap_state *h = current_state();
  if (h == nullptr)
    return;
  flush_orphans();
  heap_flush(h);
}

std::optional<block_info> query(const void *p) noexcept {
  // Tells the tools nothing: query is safe for any pointer from any thread, racing the
  // block's free (the tools' state of a block being freed elsewhere must not be read or
  // changed here). ram_usable_size / malloc_usable_size, whose caller owns a live block,
  // make its usable bytes accessible to the tools.
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return query_block(p);
}

std::optional<block_info> detail::query_block(const void *p) noexcept {
  region *r = region_of(p);
  if (r == nullptr)
    return std::nullopt;
  block_info info;
  const auto *b = static_cast<const std::byte *>(p);
  // Every racy field is read once, and the answer is checked for consistency (the block
  // holds p and lies inside its span or mapping): a query racing with the block's free or
  // its page's reformatting may be stale, but never describes memory outside it.
  if (r->kind == region_kind::huge) {
    const void *owner = r->owner.load(std::memory_order_relaxed);
    std::byte *start = r->huge_start;
    const std::size_t usable = r->huge_usable;
    if (owner == nullptr || b < start || static_cast<std::size_t>(b - start) >= usable)
      return std::nullopt;
    info.start = start;
    info.usable_size = usable;
    info.owner = owner;
    info.kind = block_info::block_kind::huge;
  } else {
    const page *pg = span_of(r, p);
    if (pg == nullptr)
      return std::nullopt;
    std::byte *span = r->slice_address(r->index_of(pg));
    const auto off = static_cast<std::size_t>(b - span);
    const std::uint32_t bs = pg->block_size.load(std::memory_order_relaxed);
    const std::uint32_t cap = pg->capacity.load(std::memory_order_relaxed);
    const std::uint32_t slices = pg->slices.load(std::memory_order_relaxed);
    if (bs == 0 || std::size_t{bs} > std::size_t{slices} * slice_size)
      return std::nullopt;
    if (cap == 1) {
      if (off >= bs)
        return std::nullopt;
      info.start = span;
      info.kind = block_info::block_kind::large;
    } else {
      const std::uint32_t idx = pg->block_index(off);
      const std::size_t first = std::size_t{idx} * bs;
      if (idx >= cap || off < first || off - first >= bs ||
          first + bs > std::size_t{slices} * slice_size)
        return std::nullopt; // the unused tail of the page (or a page being reformatted)
      info.start = span + first;
      info.kind = slices == 1 ? block_info::block_kind::small : block_info::block_kind::medium;
    }
    info.usable_size = bs;
    info.owner = r->owner.load(std::memory_order_relaxed);
  }
  info.is_start = info.start == p;
  return info;
}

stats get_stats() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  stats s{};
  global_stats(&s);
  return s;
}

// --- options -------------------------------------------------------------------------------

options get_options() noexcept {
  load_options_once();
  options o;
  o.purge_delay_ms = g_options.purge_delay_ms.load(std::memory_order_relaxed);
  o.purge_budget = g_options.purge_budget.load(std::memory_order_relaxed);
  o.reserve = g_options.reserve.load(std::memory_order_relaxed);
  o.page_cache = g_options.page_cache.load(std::memory_order_relaxed);
  o.debt_slice = g_options.debt_slice.load(std::memory_order_relaxed);
  o.debt_interval = g_options.debt_interval.load(std::memory_order_relaxed);
  o.remote_cache = g_options.remote_cache.load(std::memory_order_relaxed);
  o.verbose = g_options.verbose.load(std::memory_order_relaxed);
  o.auto_purge = g_options.auto_purge.load(std::memory_order_relaxed);
  o.checked = g_options.checked.load(std::memory_order_relaxed);
  o.on_invalid =
      static_cast<options::on_invalid_mode>(g_options.on_invalid.load(std::memory_order_relaxed));
  return o;
}

bool set_options(const options &o) noexcept {
  load_options_once();
  return apply_options(o);
}

bool set_option(const char *name, const char *value) noexcept {
  load_options_once();
  return apply_option(name, value);
}

// --- heaps -----------------------------------------------------------------------------------

namespace {
/// heap_create inside an annotate_scope (a constructor's member initialiser runs before
/// its body).
heap_state *create_state(bool without_memory = false) noexcept {
  annotate_scope in_allocator;
  return heap_create(without_memory);
}
} // namespace

heap::heap() : state_(create_state()), owned_(true) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (state_ == nullptr)
    cxx_throw_bad_alloc();
  heap_pay_reserve(state_); // set-up, not an allocation: the reserve is resident at once
}

heap::heap(void *buffer, std::size_t size)
    : state_(create_state(/*without_memory=*/true)), owned_(true) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (state_ == nullptr)
    cxx_throw_bad_alloc();
  if (const char *why = heap_init_static(state_, buffer, size)) {
    heap_release(state_, false);
    char what[256];
    std::snprintf(what, sizeof what, "ramalloc::heap: unusable static buffer: %s", why);
    cxx_throw_invalid_argument(what);
  }
}

heap::heap(borrowed_tag, heap_state *state) noexcept : state_(state), owned_(false) {}

heap::~heap() {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (!owned_)
    return;
  RAMALLOC_CHECK(t_current != state_,
                 "ramalloc::heap destroyed while a heap_scope still makes it current");
  heap_release(state_, /*drain=*/true);
}

void *heap::acquire(std::size_t size) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return alloc_native(state_, size);
}

void *heap::acquire(std::size_t size, std::size_t align) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  if (!is_pow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  return alloc_aligned(state_, size, align);
}

std::size_t heap::reclaim(std::size_t budget) noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return heap_reclaim(state_, budget);
}
void heap::flush() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  heap_flush(state_);
}

std::size_t heap::release_all() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return heap_release_all(state_);
}

stats heap::get_stats() const noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  stats s{};
  heap_stats(state_, &s);
  return s;
}

const void *heap::id() const noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  return state_;
}

heap_scope::heap_scope(heap &h) noexcept : previous_(t_current) {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  t_current = heap_access::state(h);
}
heap_scope::~heap_scope() {
  t_current = previous_;
}

heap &current_heap() noexcept {
  annotate_scope in_allocator; // tools: common/annotate.hpp
  // A heap that lasts: during thread teardown too (it is then handed off by the next
  // key-destructor round, if the C library runs one).
  heap_state *h = t_current != &g_unbound ? t_current : bind_thread(/*even_after_exit=*/true);
  RAMALLOC_CHECK(h != nullptr, "out of memory creating the thread's heap");
  return heap_access::handle(h);
}

step_counts max_steps() noexcept {
  step_counts c;
#if defined(RAMALLOC_DEBUG)
  read_max_steps(c.max_acquire_steps, c.max_discard_steps);
#endif
  return c;
}

void reset_max_steps() noexcept {
#if defined(RAMALLOC_DEBUG)
  clear_max_steps();
#endif
}

} // namespace ramalloc
