// Per-thread live heap bytes, for benchmarks that hold state on two loops in
// one process (the client node on the main thread, the server node on its
// own) and must tell their costs apart: RSS is one figure for the whole
// process and counts allocator slack, this counts what each thread's code
// has allocated and not freed.
//
// It interposes malloc and friends (as glibc allows: all of malloc, free,
// calloc, realloc and the aligned variants) and forwards to glibc's own
// __libc_* entry points, adding each block's real size (usable size plus the
// 8-byte chunk header) to a counter of the calling thread. libuv, nghttp2
// and BoringSSL allocate with malloc, C++ with operator new (which calls
// malloc), so every byte of the proxy is seen. A block freed by another
// thread than the one that allocated it moves bytes between the two
// counters; the benchmarks only compare a thread's counter before and after
// work done on that thread.
//
// Include this header in exactly one translation unit of a benchmark
// executable (it defines the malloc symbols).
#pragma once

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

extern "C" {
void* __libc_malloc(size_t size);
void __libc_free(void* ptr);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* ptr, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
}

// Sanitizers own malloc: under one, nothing is interposed and the counters
// stay 0 (benchmarks then leave the per-thread figures out).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PODLESS_THREAD_HEAP_COUNTED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define PODLESS_THREAD_HEAP_COUNTED 0
#endif
#endif
#ifndef PODLESS_THREAD_HEAP_COUNTED
#define PODLESS_THREAD_HEAP_COUNTED 1
#endif

namespace podless::bench {

inline constexpr bool kThreadHeapCounted = PODLESS_THREAD_HEAP_COUNTED;

namespace thread_heap_detail {
// Initial-exec TLS in the executable: reading it never allocates, so it is
// safe inside malloc itself.
[[gnu::tls_model("initial-exec")]] inline thread_local int64_t live_bytes = 0;
// Every thread's, so the other threads' share is the total less one's own.
inline std::atomic<int64_t> process_bytes{0};
constexpr size_t kChunkHeader = sizeof(size_t);

inline size_t BlockBytes(void* ptr) {
  return ptr == nullptr ? 0 : malloc_usable_size(ptr) + kChunkHeader;
}
inline void Add(int64_t bytes) {
  live_bytes += bytes;
  process_bytes.fetch_add(bytes, std::memory_order_relaxed);
}
inline void* Counted(void* ptr) {
  Add(static_cast<int64_t>(BlockBytes(ptr)));
  return ptr;
}
}  // namespace thread_heap_detail

// Heap bytes the calling thread has allocated and not freed (see above).
inline int64_t ThreadHeapBytes() { return thread_heap_detail::live_bytes; }
// The same for the whole process (every thread).
inline int64_t ProcessHeapBytes() {
  return thread_heap_detail::process_bytes.load(std::memory_order_relaxed);
}

}  // namespace podless::bench

#if PODLESS_THREAD_HEAP_COUNTED
extern "C" {
void* malloc(size_t size) noexcept {
  return podless::bench::thread_heap_detail::Counted(__libc_malloc(size));
}
void free(void* ptr) noexcept {
  podless::bench::thread_heap_detail::Add(
      -static_cast<int64_t>(podless::bench::thread_heap_detail::BlockBytes(ptr)));
  __libc_free(ptr);
}
void* calloc(size_t count, size_t size) noexcept {
  return podless::bench::thread_heap_detail::Counted(__libc_calloc(count, size));
}
void* realloc(void* ptr, size_t size) noexcept {
  int64_t old = static_cast<int64_t>(podless::bench::thread_heap_detail::BlockBytes(ptr));
  void* moved = __libc_realloc(ptr, size);
  // On failure the old block stays allocated; realloc(p, 0) frees it.
  if (moved == nullptr && size != 0) return nullptr;
  podless::bench::thread_heap_detail::Add(-old);
  return podless::bench::thread_heap_detail::Counted(moved);
}
void* memalign(size_t alignment, size_t size) noexcept {
  return podless::bench::thread_heap_detail::Counted(__libc_memalign(alignment, size));
}
void* aligned_alloc(size_t alignment, size_t size) noexcept { return memalign(alignment, size); }
int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* ptr = memalign(alignment, size);
  if (ptr == nullptr) return ENOMEM;
  *out = ptr;
  return 0;
}
void* valloc(size_t size) noexcept { return memalign(4096, size); }
void* pvalloc(size_t size) noexcept { return memalign(4096, (size + 4095) & ~size_t{4095}); }
}
#endif  // PODLESS_THREAD_HEAP_COUNTED
