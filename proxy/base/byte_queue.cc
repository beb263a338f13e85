#include "proxy/base/byte_queue.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <vector>

namespace podless::proxy {

namespace {
// Freed chunks wait here for reuse; raw storage, the Chunk is destroyed.
struct FreeChunks {
  std::vector<void*> free;
  int64_t outstanding = 0;
  ~FreeChunks();
};
thread_local FreeChunks free_chunks;
// Sum of every thread's free.size(); touched once per 16 KiB chunk.
std::atomic<size_t> pooled_all_threads{0};
}  // namespace

FreeChunks::~FreeChunks() {
  pooled_all_threads.fetch_sub(free.size(), std::memory_order_relaxed);
  for (void* p : free) ::operator delete(p);
}

size_t ChunkPool::pooled() { return free_chunks.free.size(); }
int64_t ChunkPool::outstanding() { return free_chunks.outstanding; }
size_t ChunkPool::pooled_bytes() { return free_chunks.free.size() * sizeof(ByteQueue::Chunk); }
size_t ChunkPool::pooled_bytes_all_threads() {
  return pooled_all_threads.load(std::memory_order_relaxed) * sizeof(ByteQueue::Chunk);
}

ByteQueue::Chunk* ByteQueue::NewChunk() {
  ++free_chunks.outstanding;
  if (free_chunks.free.empty()) return new Chunk;
  void* storage = free_chunks.free.back();
  free_chunks.free.pop_back();
  pooled_all_threads.fetch_sub(1, std::memory_order_relaxed);
  return new (storage) Chunk;
}

void ByteQueue::FreeChunk(Chunk* chunk) {
  --free_chunks.outstanding;
  if (free_chunks.free.size() < ChunkPool::kMaxPooled) {
    chunk->~Chunk();
    free_chunks.free.push_back(chunk);
    pooled_all_threads.fetch_add(1, std::memory_order_relaxed);
  } else {
    delete chunk;
  }
}

ByteQueue::~ByteQueue() {
  while (head_ != nullptr) {
    Chunk* next = head_->next;
    FreeChunk(head_);
    head_ = next;
  }
}

void ByteQueue::Append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (tail_ == nullptr || tail_->end == kChunkSize) {
      Chunk* chunk = NewChunk();
      if (tail_ == nullptr) {
        head_ = chunk;
      } else {
        tail_->next = chunk;
      }
      tail_ = chunk;
    }
    size_t n = std::min(bytes.size(), kChunkSize - tail_->end);
    std::memcpy(tail_->data + tail_->end, bytes.data(), n);
    tail_->end += n;
    size_ += n;
    bytes.remove_prefix(n);
  }
}

size_t ByteQueue::Peek(uv_buf_t* bufs, size_t max) const {
  size_t count = 0;
  for (const Chunk* chunk = head_; chunk != nullptr && count < max; chunk = chunk->next) {
    bufs[count++] =
        uv_buf_init(const_cast<char*>(chunk->data + chunk->begin), chunk->end - chunk->begin);
  }
  return count;
}

std::string_view ByteQueue::Front() const {
  if (head_ == nullptr) return {};
  return {head_->data + head_->begin, head_->end - head_->begin};
}

void ByteQueue::Drain(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  while (n > 0) {
    Chunk* head = head_;
    size_t take = std::min<size_t>(n, head->end - head->begin);
    head->begin += take;
    n -= take;
    if (head->begin == head->end) {
      // Consumed (nothing peeked from it can still be in flight: peeked
      // bytes are drained only once written). Even the last chunk goes back,
      // so an idle queue holds nothing.
      head_ = head->next;
      if (head_ == nullptr) tail_ = nullptr;
      FreeChunk(head);
    }
  }
}

size_t ByteQueue::Read(uint8_t* out, size_t n) {
  size_t copied = 0;
  while (copied < n && size_ > 0) {
    std::string_view front = Front();
    size_t take = std::min(front.size(), n - copied);
    std::memcpy(out + copied, front.data(), take);
    copied += take;
    Drain(take);
  }
  return copied;
}

}  // namespace podless::proxy
