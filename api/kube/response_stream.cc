#include "api/kube/response_stream.h"

#include <utility>

namespace podless::api::kube {

bool ResponseStream::Write(std::string_view bytes) {
  if (over_) return false;
  // One write is always taken into an empty queue (an event larger than
  // the limit, a big object, is not a slow reader): the queue holds at
  // most the limit or one write.
  if (queued() > 0 && queued() + bytes.size() > limit_) {
    // A client that does not read: cut it, free what it queued.
    cut_ = true;
    over_ = true;
    queue_.clear();
    queue_.shrink_to_fit();
    taken_ = 0;
    ReleaseProducer();
    Notify();
    return false;
  }
  queue_.append(bytes);
  Notify();
  return true;
}

void ResponseStream::End() {
  if (over_) return;
  over_ = true;
  ReleaseProducer();
  Notify();
}

std::string ResponseStream::Take(size_t max) {
  const size_t n = std::min(max, queued());
  std::string out = queue_.substr(taken_, n);
  taken_ += n;
  if (taken_ == queue_.size()) {
    queue_.clear();
    taken_ = 0;
  } else if (taken_ > (64 << 10) && taken_ > queue_.size() / 2) {
    queue_.erase(0, taken_);
    taken_ = 0;
  }
  return out;
}

void ResponseStream::Cancel() {
  over_ = true;
  queue_.clear();
  queue_.shrink_to_fit();
  taken_ = 0;
  readable_ = nullptr;
  ReleaseProducer();
}

void ResponseStream::ReleaseProducer() {
  // Moved out first: the callback may drop the last other reference.
  if (auto release = std::exchange(release_, nullptr)) release();
}

void ResponseStream::Notify() {
  if (readable_) {
    auto readable = readable_;  // a copy: the callback may reset readable_
    readable();
  }
}

}  // namespace podless::api::kube
