#include "proxy/byte_queue.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

namespace podless::proxy {

namespace {
// Enough for many connections' worth of burst; the rest goes back to malloc.
constexpr size_t kMaxPooledChunks = 1024;
}  // namespace

namespace {
// Freed chunks wait here for reuse; raw storage, the Chunk is destroyed.
struct ChunkPool {
  std::vector<void*> free;
  ~ChunkPool() {
    for (void* p : free) ::operator delete(p);
  }
};
thread_local ChunkPool chunk_pool;
}  // namespace

ByteQueue::Chunk* ByteQueue::NewChunk() {
  if (chunk_pool.free.empty()) return new Chunk;
  void* storage = chunk_pool.free.back();
  chunk_pool.free.pop_back();
  return new (storage) Chunk;
}

void ByteQueue::FreeChunk(Chunk* chunk) {
  if (chunk_pool.free.size() < kMaxPooledChunks) {
    chunk->~Chunk();
    chunk_pool.free.push_back(chunk);
  } else {
    delete chunk;
  }
}

ByteQueue::~ByteQueue() {
  for (Chunk* chunk : chunks_) FreeChunk(chunk);
}

void ByteQueue::Append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (chunks_.empty() || chunks_.back()->end == kChunkSize) {
      chunks_.push_back(NewChunk());
    }
    Chunk* tail = chunks_.back();
    size_t n = std::min(bytes.size(), kChunkSize - tail->end);
    std::memcpy(tail->data + tail->end, bytes.data(), n);
    tail->end += n;
    size_ += n;
    bytes.remove_prefix(n);
  }
}

size_t ByteQueue::Peek(uv_buf_t* bufs, size_t max) const {
  size_t count = 0;
  for (const Chunk* chunk : chunks_) {
    if (count == max) break;
    if (chunk->end == chunk->begin) continue;
    bufs[count++] =
        uv_buf_init(const_cast<char*>(chunk->data + chunk->begin), chunk->end - chunk->begin);
  }
  return count;
}

std::string_view ByteQueue::Front() const {
  for (const Chunk* chunk : chunks_) {
    if (chunk->end != chunk->begin) return {chunk->data + chunk->begin, chunk->end - chunk->begin};
  }
  return {};
}

void ByteQueue::Drain(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  while (n > 0) {
    Chunk* head = chunks_.front();
    size_t take = std::min<size_t>(n, head->end - head->begin);
    head->begin += take;
    n -= take;
    // Only the tail chunk can be partly filled; a consumed head is released.
    if (head->begin == head->end && (head->end == kChunkSize || chunks_.size() > 1)) {
      chunks_.pop_front();
      FreeChunk(head);
    }
  }
  if (size_ == 0 && !chunks_.empty()) {
    // Nothing queued (so nothing peeked is still in flight): start over.
    chunks_.front()->begin = chunks_.front()->end = 0;
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
