// ByteQueue and its per-thread ChunkPool: bytes come out in order however
// they were appended, peeked bytes never move, and an idle queue holds no
// memory (its last chunk goes back to the pool the moment it drains, and
// the pool hands it to the next queue instead of malloc).
#include "proxy/base/byte_queue.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace podless::proxy {
namespace {

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i * 7 % 26);
  return s;
}

TEST_CASE("ByteQueue: returns the bytes in order across chunk boundaries") {
  ByteQueue queue;
  std::string data = Pattern(3 * ByteQueue::kChunkSize + 123);
  for (size_t at = 0; at < data.size(); at += 1000) queue.Append(data.substr(at, 1000));
  CHECK(queue.size() == data.size());
  uv_buf_t bufs[8];
  size_t count = queue.Peek(bufs, 8);
  CHECK(count == 4);
  std::string peeked;
  for (size_t i = 0; i < count; ++i) peeked.append(bufs[i].base, bufs[i].len);
  CHECK(peeked == data);
  std::string out(data.size(), '\0');
  CHECK(queue.Read(reinterpret_cast<uint8_t*>(out.data()), 5000) == 5000);
  CHECK(queue.Front() == std::string_view(data).substr(5000, ByteQueue::kChunkSize - 5000));
  CHECK(queue.Read(reinterpret_cast<uint8_t*>(out.data()) + 5000, out.size()) ==
        data.size() - 5000);
  CHECK(out == data);
  CHECK(queue.empty());
}

TEST_CASE("ByteQueue: bytes already peeked stay in place while more are appended") {
  ByteQueue queue;
  queue.Append("hello");
  uv_buf_t first;
  REQUIRE(queue.Peek(&first, 1) == 1);
  queue.Append(Pattern(2 * ByteQueue::kChunkSize));
  uv_buf_t again;
  REQUIRE(queue.Peek(&again, 1) == 1);
  CHECK(again.base == first.base);
  CHECK(std::string_view(first.base, 5) == "hello");
}

TEST_CASE("ByteQueue: an emptied queue holds no chunk") {
  ByteQueue queue;
  CHECK_FALSE(queue.holds_memory());
  int64_t outstanding = ChunkPool::outstanding();
  queue.Append("x");
  CHECK(queue.holds_memory());
  CHECK(ChunkPool::outstanding() == outstanding + 1);
  queue.Drain(1);
  CHECK(queue.empty());
  CHECK_FALSE(queue.holds_memory());
  CHECK(ChunkPool::outstanding() == outstanding);
  // A partly read queue keeps only the chunks that still hold bytes.
  queue.Append(Pattern(ByteQueue::kChunkSize + 10));
  CHECK(ChunkPool::outstanding() == outstanding + 2);
  queue.Drain(ByteQueue::kChunkSize);
  CHECK(ChunkPool::outstanding() == outstanding + 1);
  queue.Clear();
  CHECK_FALSE(queue.holds_memory());
  CHECK(ChunkPool::outstanding() == outstanding);
}

TEST_CASE("ByteQueue: a chunk given back is reused by the next queue") {
  {
    ByteQueue warm;
    warm.Append("w");
  }
  size_t pooled = ChunkPool::pooled();
  REQUIRE(pooled >= 1);
  ByteQueue queue;
  queue.Append("y");
  CHECK(ChunkPool::pooled() == pooled - 1);
  queue.Drain(1);
  CHECK(ChunkPool::pooled() == pooled);
}

TEST_CASE("ChunkPool: keeps at most kMaxPooled free chunks") {
  std::vector<ByteQueue> queues(ChunkPool::kMaxPooled + 8);
  for (auto& queue : queues) queue.Append("z");
  CHECK(ChunkPool::outstanding() >= static_cast<int64_t>(queues.size()));
  for (auto& queue : queues) queue.Clear();
  CHECK(ChunkPool::pooled() == ChunkPool::kMaxPooled);
}

}  // namespace
}  // namespace podless::proxy
