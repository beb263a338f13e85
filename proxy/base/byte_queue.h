// ByteQueue: a FIFO of bytes in pooled 16 KiB chunks.
//
// The data plane copies each byte once into a queue and hands the chunks to
// the kernel with writev (Peek fills iovecs without copying). Chunks come
// from a per-thread free list (ChunkPool), so a busy connection allocates
// nothing per byte forwarded.
//
// An empty queue holds no memory at all: the chunks form an intrusive list
// (no container to allocate), and the last chunk goes back to the pool as
// soon as the queue drains. An idle stream or connection (a proxy holds a
// hundred thousand of them, each with a queue or two) so costs the 24 bytes
// of the queue itself, not a 16 KiB chunk kept for the next write.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace podless::proxy {

class ByteQueue {
 public:
  static constexpr size_t kChunkSize = 16 << 10;

  ByteQueue() = default;
  ~ByteQueue();
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Whether the queue holds a chunk (it does exactly while it is not empty).
  bool holds_memory() const { return head_ != nullptr; }

  void Append(std::string_view bytes);
  // Fills up to `max` iovecs with the queued bytes, front first, without
  // removing them; returns how many were filled. Bytes appended later never
  // move the ones already peeked (chunks are not reallocated).
  size_t Peek(uv_buf_t* bufs, size_t max) const;
  // The first contiguous run of bytes.
  std::string_view Front() const;
  // Removes `n` bytes from the front; chunks emptied go back to the pool.
  void Drain(size_t n);
  // Copies up to `n` bytes into `out` and removes them; returns the count.
  size_t Read(uint8_t* out, size_t n);
  void Clear() { Drain(size_); }

 private:
  friend class ChunkPool;
  // Invariant: every chunk in the list holds unread bytes (begin < end).
  struct Chunk {
    Chunk* next = nullptr;
    uint32_t begin = 0;
    uint32_t end = 0;
    char data[kChunkSize];
  };
  static Chunk* NewChunk();
  static void FreeChunk(Chunk* chunk);

  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t size_ = 0;
};

// The calling thread's free list of ByteQueue chunks. Chunks freed beyond
// kMaxPooled go back to malloc, so the pool bounds what a burst leaves
// behind (16 MiB per thread at most).
class ChunkPool {
 public:
  static constexpr size_t kMaxPooled = 1024;
  // Chunks waiting for reuse on this thread.
  static size_t pooled();
  // Bytes of the chunks waiting for reuse in this thread's pool, and in
  // every thread's: memory held that no queue uses (a bounded, per-thread
  // cost, not a per-connection one).
  static size_t pooled_bytes();
  static size_t pooled_bytes_all_threads();
  // Chunks taken from the pool or malloc and not yet given back, on this
  // thread (a chunk freed on another thread than the one that took it is
  // counted there).
  static int64_t outstanding();
};

}  // namespace podless::proxy
