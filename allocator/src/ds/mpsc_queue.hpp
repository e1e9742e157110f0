// Intrusive multi-producer / single-consumer queue (Vyukov's design).
//
// push is wait-free: one atomic exchange and one store, whatever other producers do.
// pop is for the single consumer (the heap's owner) and O(1); it may report "empty"
// while a producer is between its two steps: that element is picked up by a later pop,
// never lost. Nodes are never freed while queued (page descriptors live as long as the
// process), so there is no reclamation problem.
#pragma once

#include <atomic>

#include "common/defs.hpp"

namespace ramalloc::detail {

template <typename T, std::atomic<T *> T::*Next>
class mpsc_queue {
public:
  /// `stub` is a node owned by the queue's holder; it must outlive the queue.
  void init(T *stub) noexcept {
    stub_ = stub;
    (stub->*Next).store(nullptr, std::memory_order_relaxed);
    head_ = stub;
    tail_.store(stub, std::memory_order_relaxed);
  }

  /// Any thread. acq_rel on the exchange orders the node's contents (and everything the
  /// producer wrote before, e.g. the block it freed) before the consumer sees the node.
  void push(T *n) noexcept {
    (n->*Next).store(nullptr, std::memory_order_relaxed);
    T *prev = tail_.exchange(n, std::memory_order_acq_rel);
    (prev->*Next).store(n, std::memory_order_release);
  }

  /// Consumer only. nullptr when empty (or when the next producer has not finished).
  T *pop() noexcept {
    T *head = head_;
    T *next = (head->*Next).load(std::memory_order_acquire);
    if (head == stub_) {
      if (next == nullptr)
        return nullptr;
      head_ = next;
      head = next;
      next = (head->*Next).load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    if (head != tail_.load(std::memory_order_acquire))
      return nullptr; // producer mid-push
    push(stub_);
    next = (head->*Next).load(std::memory_order_acquire);
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    return nullptr;
  }

  /// Consumer only: a hint, exact when no push is in flight.
  bool empty() const noexcept {
    return head_ == stub_ && (stub_->*Next).load(std::memory_order_acquire) == nullptr;
  }

private:
  T *head_ = nullptr;
  T *stub_ = nullptr;
  alignas(sharing_span) std::atomic<T *> tail_{nullptr}; // producers' words: a pair of lines apart
};

} // namespace ramalloc::detail
