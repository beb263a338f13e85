// ByteQueue: a FIFO of bytes in pooled 16 KiB chunks.
//
// The data plane copies each byte once into a queue and hands the chunks to
// the kernel with writev (Peek fills iovecs without copying). Chunks come
// from a per-thread free list, so a busy connection allocates nothing per
// byte forwarded.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
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

  void Append(std::string_view bytes);
  // Fills up to `max` iovecs with the queued bytes, front first, without
  // removing them; returns how many were filled. Bytes appended later never
  // move the ones already peeked (chunks are not reallocated).
  size_t Peek(uv_buf_t* bufs, size_t max) const;
  // The first contiguous run of bytes.
  std::string_view Front() const;
  // Removes `n` bytes from the front.
  void Drain(size_t n);
  // Copies up to `n` bytes into `out` and removes them; returns the count.
  size_t Read(uint8_t* out, size_t n);
  void Clear() { Drain(size_); }

 private:
  struct Chunk {
    uint32_t begin = 0;
    uint32_t end = 0;
    char data[kChunkSize];
  };
  static Chunk* NewChunk();
  static void FreeChunk(Chunk* chunk);

  std::deque<Chunk*> chunks_;
  size_t size_ = 0;
};

}  // namespace podless::proxy
