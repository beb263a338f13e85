#include "proxy/base/dispatcher.h"

#include <utility>

namespace podless::proxy {

namespace {
constexpr size_t kReadBufferSize = 64 << 10;
}

DeferredTask::~DeferredTask() {
  if (scheduled_on_ != nullptr) scheduled_on_->Cancel(this);
}

Dispatcher::Dispatcher(uv_loop_t* loop) : loop_(loop), read_buffer_(new char[kReadBufferSize]) {
  // uv_idle_init always returns 0. The idle handle keeps its `data = this`
  // trampoline: it is the Dispatcher's own, started and stopped only here.
  (void)uv_idle_init(loop_, idle_.get());
  idle_->data = this;
}

Dispatcher::~Dispatcher() {
  for (DeferredTask* task : tasks_) {
    if (task != nullptr) task->scheduled_on_ = nullptr;
  }
  for (DeferredTask* task : running_) {
    if (task != nullptr) task->scheduled_on_ = nullptr;
  }
  // Posted deletions still run so nothing leaks.
  auto posted = std::move(posted_);
  for (auto& fn : posted) fn();
}

void Dispatcher::Arm() {
  if (!uv_is_active(idle_.handle())) {
    // uv_idle_start fails only for a null callback.
    (void)uv_idle_start(idle_.get(), [](uv_idle_t* idle) {
      if (idle->data != nullptr) static_cast<Dispatcher*>(idle->data)->RunQueue();
    });
  }
}

void Dispatcher::Schedule(DeferredTask* task) {
  if (task->scheduled_on_ != nullptr) return;
  task->scheduled_on_ = this;
  task->slot_ = tasks_.size();
  tasks_.push_back(task);
  Arm();
}

void Dispatcher::Cancel(DeferredTask* task) {
  if (task->scheduled_on_ != this) return;
  // The task is either waiting in tasks_ or in the batch being run now.
  for (auto* queue : {&tasks_, &running_}) {
    if (task->slot_ < queue->size() && (*queue)[task->slot_] == task)
      (*queue)[task->slot_] = nullptr;
  }
  task->scheduled_on_ = nullptr;
}

void Dispatcher::Post(std::function<void()> fn) {
  posted_.push_back(std::move(fn));
  Arm();
}

void Dispatcher::RunQueue() {
  // Work scheduled while running goes to the next turn, so a task that
  // reschedules itself cannot starve the loop.
  running_.swap(tasks_);
  tasks_.clear();
  auto posted = std::move(posted_);
  posted_.clear();
  // A task run here may destroy a later one; Cancel() clears its slot in
  // running_, so it is skipped.
  for (size_t i = 0; i < running_.size(); ++i) {
    DeferredTask* task = running_[i];
    if (task == nullptr) continue;
    running_[i] = nullptr;
    task->scheduled_on_ = nullptr;
    task->RunDeferred();
  }
  running_.clear();
  for (auto& fn : posted) fn();
  if (tasks_.empty() && posted_.empty()) (void)uv_idle_stop(idle_.get());  // Always 0.
}

uv_buf_t Dispatcher::ReadBuffer() { return uv_buf_init(read_buffer_.get(), kReadBufferSize); }

}  // namespace podless::proxy
