// heap_strand<Executor>: an Asio strand that owns a ramalloc::heap.
#pragma once

#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <ramalloc/ramalloc.hpp>

#include "ramalloc/io/config.hpp"
#include "ramalloc/io/detail/heap_strand_state.hpp"
#include "ramalloc/io/heap_registry.hpp"

#include <asio/execution.hpp>
#include <asio/execution_context.hpp>
#include <asio/prefer.hpp>
#include <asio/query.hpp>
#include <asio/require.hpp>
#include <asio/strand.hpp>

namespace ramalloc::io {

template <typename Executor>
class heap_strand;

namespace detail {

/// Where the registry posts a quiet strand's service tasks: a plain asio::strand (not a
/// heap_strand, which would keep this state alive through itself).
template <typename Executor>
class heap_strand_state_for final : public heap_strand_state {
public:
  heap_strand_state_for(std::shared_ptr<registry_core> core, const strand_options &opts,
                        asio::strand<Executor> strand)
      : heap_strand_state(std::move(core), opts), strand_(std::move(strand)) {}

private:
  struct service_task {
    std::shared_ptr<heap_strand_state> state;
    bool flush;
    service_task(std::shared_ptr<heap_strand_state> s, bool f) : state(std::move(s)), flush(f) {}
    service_task(service_task &&other) noexcept = default;
    service_task(const service_task &) = delete;
    ~service_task() {
      if (state)
        state->service_done();
    }
    void operator()() { state->service_step(flush); }
  };

  void enqueue_service(std::shared_ptr<heap_strand_state> self, bool flush) override {
    heap_invoker<service_task> task(self, service_task(self, flush));
    asio::execution::execute(asio::require(strand_, asio::execution::blocking.never),
                             std::move(task));
  }

  asio::strand<Executor> strand_;
};

template <typename Executor>
asio::execution_context &context_of(const Executor &ex) {
  if constexpr (asio::can_query<const Executor &, asio::execution::context_t>::value)
    return asio::query(ex, asio::execution::context);
  else
    return ex.context();
}

template <typename T>
struct is_asio_strand : std::false_type {};
template <typename E>
struct is_asio_strand<asio::strand<E>> : std::true_type {};

} // namespace detail

/// A strand (Asio's `asio::strand<Executor>` underneath) that owns a `ramalloc::heap`.
/// Usable everywhere Asio takes an executor: `post`, `dispatch`, `defer`,
/// `bind_executor`, `co_spawn`, I/O objects constructed on it, `any_io_executor`.
///
/// While one of its handlers runs, its heap is the thread's current heap
/// (`ramalloc::heap_scope`), so what the handler allocates — `ramalloc::acquire`, a
/// `handler_allocator`, and plain `new`/`malloc` when the override is linked — comes
/// from the strand's heap, whichever worker thread runs it. Handlers run inline by
/// `dispatch` count too; strands nested inline restore the previous heap on the way out.
/// The strand guarantees one handler at a time, so the heap has one owner at a time (the
/// kit checks it: two threads inside one heap strand is a fatal error).
///
/// Debt: every `handlers_per_step` handlers, a handler's exit pays
/// `heap.reclaim(reclaim_budget)` — a bounded step, never a flush. A strand that went
/// quiet is serviced by the context's workers: their service tick posts a budgeted
/// reclaim task onto the strand (never touching the heap from outside it).
///
/// Copies share the strand and the heap; the heap goes with the last copy (and the last
/// queued handler), per `strand_options::teardown`.
///
/// Time: execute is the strand's cost plus O(1); the debt step O(budget). Thread-safety
/// as asio::strand: a heap_strand object may be used from any thread.
template <typename Executor>
class heap_strand {
public:
  using inner_executor_type = Executor;

  /// Use make_heap_strand() to create one.
  heap_strand(std::shared_ptr<detail::heap_strand_state> state,
              asio::strand<Executor> strand) noexcept
      : state_(std::move(state)), strand_(std::move(strand)) {}

  /// Converting copy (same heap, same strand), when the inner executors convert.
  template <typename Other>
  requires(!std::is_same_v<Other, Executor> &&
           std::is_constructible_v<asio::strand<Executor>, const asio::strand<Other> &>)
      heap_strand(const heap_strand<Other> &other)
  noexcept // NOLINT: implicit like asio::strand
      : state_(other.state()), strand_(other.get_strand()) {}

  heap_strand(const heap_strand &) noexcept = default;
  heap_strand(heap_strand &&) noexcept = default;
  heap_strand &operator=(const heap_strand &) noexcept = default;
  heap_strand &operator=(heap_strand &&) noexcept = default;
  ~heap_strand() = default;

  /// The heap its handlers allocate from. Only its owner (code running on this strand)
  /// may allocate from it directly; get_stats() and id() are safe anywhere.
  ramalloc::heap &heap() const noexcept { return state_->heap(); }

  /// Tears the zone down now: frees every block of the heap at once in O(pages)
  /// (ramalloc::heap::release_all; no destructor runs, every pointer into the heap
  /// becomes invalid and a later free of one is reported). Call it from a handler of
  /// this strand (the heap's owner), while no other thread frees one of its blocks;
  /// elsewhere it throws std::logic_error. Returns the spans visited.
  std::size_t release_all() const {
    if (!strand_.running_in_this_thread())
      throw std::logic_error("ramalloc::io::heap_strand::release_all: call it from a handler "
                             "of the strand (the heap's owner)");
    return state_->heap().release_all();
  }

  /// The underlying asio::strand (executes without installing the heap: do not post
  /// allocating work to it directly).
  const asio::strand<Executor> &get_strand() const noexcept { return strand_; }
  inner_executor_type get_inner_executor() const noexcept { return strand_.get_inner_executor(); }

  /// True when called from a handler of this strand.
  bool running_in_this_thread() const noexcept { return strand_.running_in_this_thread(); }

  // --- the standard executor model (asio::execution) -----------------------------------

  /// Forwards a query to the strand (and from there to the inner executor).
  template <typename Property>
  requires asio::can_query < const asio::strand<Executor>
  &, Property > ::value auto query(const Property &p) const
                noexcept(asio::is_nothrow_query<const asio::strand<Executor> &, Property>::value) ->
                typename asio::query_result<const asio::strand<Executor> &, Property>::type {
    return asio::query(strand_, p);
  }

  /// Forwards a requirement; the result is a heap_strand on the same heap.
  template <typename Property>
  requires asio::can_require < const asio::strand<Executor>
  &, Property > ::value &&detail::is_asio_strand<std::decay_t<typename asio::require_result<
                    const asio::strand<Executor> &, Property>::type>>::value auto
                require(const Property &p) const
                noexcept(asio::is_nothrow_require<const asio::strand<Executor> &, Property>::value)
                    -> heap_strand<typename std::decay_t<typename asio::require_result<
                        const asio::strand<Executor> &, Property>::type>::inner_executor_type> {
    return {state_, asio::require(strand_, p)};
  }

  /// Forwards a preference; the result is a heap_strand on the same heap.
  template <typename Property>
  requires asio::can_prefer < const asio::strand<Executor>
  &, Property > ::value &&detail::is_asio_strand<std::decay_t<typename asio::prefer_result<
                    const asio::strand<Executor> &, Property>::type>>::value auto
                prefer(const Property &p) const
                noexcept(asio::is_nothrow_prefer<const asio::strand<Executor> &, Property>::value)
                    -> heap_strand<typename std::decay_t<typename asio::prefer_result<
                        const asio::strand<Executor> &, Property>::type>::inner_executor_type> {
    return {state_, asio::prefer(strand_, p)};
  }

  /// Runs `f` on the strand with the heap current (inline when the properties and the
  /// calling thread allow it, as asio::strand does).
  template <typename Function>
  requires asio::execution::can_execute < const asio::strand<Executor>
  &, detail::heap_invoker < std::decay_t < Function >>> ::value void execute(Function &&f) const {
    asio::execution::execute(
        strand_, detail::heap_invoker<std::decay_t<Function>>(state_, std::forward<Function>(f)));
  }

  // --- the Networking TS executor model (when the inner executor has it) ---------------

  asio::execution_context &context() const noexcept requires
      requires(const asio::strand<Executor> &s) {
    s.context();
  }
  { return strand_.context(); }
  void on_work_started() const noexcept requires requires(const asio::strand<Executor> &s) {
    s.on_work_started();
  }
  { strand_.on_work_started(); }
  void on_work_finished() const noexcept requires requires(const asio::strand<Executor> &s) {
    s.on_work_finished();
  }
  { strand_.on_work_finished(); }
  template <typename Function, typename Allocator>
  requires requires(const asio::strand<Executor> &s, Allocator a) { s.context(); }
  void dispatch(Function &&f, const Allocator &a) const {
    strand_.dispatch(
        detail::heap_invoker<std::decay_t<Function>>(state_, std::forward<Function>(f)), a);
  }
  template <typename Function, typename Allocator>
  requires requires(const asio::strand<Executor> &s, Allocator a) { s.context(); }
  void post(Function &&f, const Allocator &a) const {
    strand_.post(detail::heap_invoker<std::decay_t<Function>>(state_, std::forward<Function>(f)),
                 a);
  }
  template <typename Function, typename Allocator>
  requires requires(const asio::strand<Executor> &s, Allocator a) { s.context(); }
  void defer(Function &&f, const Allocator &a) const {
    strand_.defer(detail::heap_invoker<std::decay_t<Function>>(state_, std::forward<Function>(f)),
                  a);
  }

  /// Same heap and same strand (with the same properties).
  friend bool operator==(const heap_strand &a, const heap_strand &b) noexcept {
    return a.state_ == b.state_ && a.strand_ == b.strand_;
  }
  friend bool operator!=(const heap_strand &a, const heap_strand &b) noexcept { return !(a == b); }

  /// Internal: the shared state.
  const std::shared_ptr<detail::heap_strand_state> &state() const noexcept { return state_; }

private:
  std::shared_ptr<detail::heap_strand_state> state_;
  asio::strand<Executor> strand_;
};

/// A heap strand on `ex` with a heap of its own, registered with the heap_registry of
/// ex's execution context. Throws std::bad_alloc when no heap can be created.
template <typename Executor>
requires asio::execution::is_executor<Executor>::value ||
    asio::is_executor<Executor>::value heap_strand<Executor>
    make_heap_strand(const Executor &ex, const strand_options &opts = {}) {
  asio::execution_context &ctx = detail::context_of(ex);
  heap_registry &registry = asio::use_service<heap_registry>(ctx);
  asio::strand<Executor> strand(ex);
  auto state =
      std::make_shared<detail::heap_strand_state_for<Executor>>(registry.core(), opts, strand);
  state->attach();
  return heap_strand<Executor>(std::move(state), std::move(strand));
}

/// A heap strand on the context's executor (io_context, thread_pool...).
template <typename ExecutionContext>
requires std::is_convertible_v<ExecutionContext &, asio::execution_context &>
    heap_strand<typename ExecutionContext::executor_type>
    make_heap_strand(ExecutionContext &ctx, const strand_options &opts = {}) {
  return make_heap_strand(ctx.get_executor(), opts);
}

} // namespace ramalloc::io
