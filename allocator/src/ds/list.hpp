// Intrusive doubly-linked list. Nodes carry their own links (a `links` member chosen
// by pointer-to-member), so pushing and removing never allocates and is O(1).
#pragma once

#include "common/defs.hpp"

namespace ramalloc::detail {

template <typename T>
struct list_links {
  T *prev = nullptr;
  T *next = nullptr;
};

template <typename T, list_links<T> T::*Links>
class intrusive_list {
public:
  bool empty() const noexcept { return head_ == nullptr; }
  T *front() const noexcept { return head_; }
  T *back() const noexcept { return tail_; }
  std::size_t size() const noexcept { return count_; }

  void push_front(T *n) noexcept {
    auto &l = n->*Links;
    l.prev = nullptr;
    l.next = head_;
    if (head_)
      (head_->*Links).prev = n;
    else
      tail_ = n;
    head_ = n;
    ++count_;
  }
  void push_back(T *n) noexcept {
    auto &l = n->*Links;
    l.next = nullptr;
    l.prev = tail_;
    if (tail_)
      (tail_->*Links).next = n;
    else
      head_ = n;
    tail_ = n;
    ++count_;
  }
  void remove(T *n) noexcept {
    auto &l = n->*Links;
    if (l.prev)
      (l.prev->*Links).next = l.next;
    else
      head_ = l.next;
    if (l.next)
      (l.next->*Links).prev = l.prev;
    else
      tail_ = l.prev;
    l.prev = l.next = nullptr;
    RAMALLOC_ASSERT(count_ > 0);
    --count_;
  }
  T *pop_front() noexcept {
    T *n = head_;
    if (n)
      remove(n);
    return n;
  }
  T *pop_back() noexcept {
    T *n = tail_;
    if (n)
      remove(n);
    return n;
  }
  static T *next(T *n) noexcept { return (n->*Links).next; }

private:
  T *head_ = nullptr;
  T *tail_ = nullptr;
  std::size_t count_ = 0;
};

} // namespace ramalloc::detail
