// TcpStream: a Stream over any connected stream socket on libuv, TCP (IPv4
// or IPv6) or Unix, and TcpConnector to dial a TCP address.
//
// Every socket of the agent rides on it: the data plane's connections, the
// admin and gRPC API servers, the readiness prober, the CLI's client and the
// etcd client's connection, so all of them share one read/write loop, the
// write-stall timeout, the watermarks and one deferred-delete scheme.
//
// A TcpStream embeds its uv_tcp_t and frees itself in the handle's close
// callback (libuv's rule: memory is released only there, after every pending
// write callback has run). Writes are queued in a ByteQueue and handed to the
// kernel with one writev at a time.
//
// Unix sockets: Adopt() takes an AF_UNIX socket as well (uv_tcp_open only
// makes the fd non-blocking and registers it; reads, writev, shutdown(2) and
// close are the same system calls for both families). What is TCP-only is
// harmless there: TCP_NODELAY is refused by the kernel and ignored,
// Reset()'s SO_LINGER 0 turns into a plain close (the peer sees EOF, there
// is no RST on a Unix socket), and the address getters return 0.
// tests/proxy/tcp_stream_test.cc runs a Unix socket pair through it.
#pragma once

#include <netinet/in.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "proxy/base/byte_queue.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/metrics.h"
#include "proxy/base/stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "workloads/result.h"

namespace podless::proxy {

class TcpStream final : public Stream, private DeferredTask {
 public:
  // Accepts a pending connection on `server`; null (and nothing leaks) when
  // accept fails.
  static TcpStream* Accept(Dispatcher& dispatcher, uv_stream_t* server);
  // Takes over `fd`, a connected stream socket (TCP or Unix, from accept4
  // or connect); null (and `fd` closed) when libuv refuses it.
  static TcpStream* Adopt(Dispatcher& dispatcher, int fd);

  // A peer that stops reading must not hold the connection (and the bytes
  // queued for it) forever: when bytes are waiting for the kernel and none
  // of them has been taken for `timeout_ms`, the connection is aborted
  // (handler: OnClosed(true)) and `fired` (may be null) is counted. An idle
  // connection with nothing to send never times out. 0 turns it off.
  void SetWriteStallTimeout(uint64_t timeout_ms, Counter* fired);

  // Backpressure marks: OnWritable() fires when the queued bytes fall below
  // `low` after having exceeded `high` (stream.h's kHighWatermark and
  // kLowWatermark by default). (0, 1) reports every drained queue: a writer
  // that sends one piece at a time hears when the kernel has taken it.
  void SetWatermarks(size_t high, size_t low);

  // This connection's id in the log (`conn=N`), unique in the process.
  uint64_t id() const { return id_; }

  // Stream
  void SetHandler(StreamHandler* handler) override;
  void Write(std::string_view bytes) override;
  void End() override;
  void Reset() override;
  size_t QueuedBytes() const override { return out_.size(); }
  void SetReadPaused(bool paused) override;

  // Closes the socket at once, as close(2) does: the peer sees FIN (RST if
  // our side holds unread input) and queued bytes are dropped. Unlike
  // Reset() it does not force an abort. No callback follows.
  void Close();

  // The address the peer dialed (getsockname) and the peer's address, host
  // byte order; 0 when unknown.
  uint32_t LocalAddress() const;
  uint16_t LocalPort() const;
  uint32_t PeerAddress() const;
  uv_tcp_t* tcp() { return &tcp_; }

 private:
  friend class TcpConnector;
  explicit TcpStream(Dispatcher& dispatcher);
  ~TcpStream() override = default;

  void StartReading();
  void OnRead(ssize_t nread, const uv_buf_t* buf);
  void Flush();
  void OnWriteDone(int status);
  void MaybeFinish();
  void Fail();
  void SetNoDelay();
  void CloseHandle();
  void ArmStallTimer();
  void OnStallTick();
  // Bytes the kernel has taken so far (libuv's queue shrinks on partial writes).
  uint64_t BytesWritten() const;
  // DeferredTask: a read, write or shutdown that failed synchronously.
  void RunDeferred() override { Fail(); }

  Dispatcher& dispatcher_;
  const uint64_t id_;
  uv_tcp_t tcp_;
  // A shutdown starts only when no write is in flight and no write may
  // follow it (End() was called and the queue is empty), so the two
  // requests share their memory.
  union {
    uv_write_t write_req_;
    uv_shutdown_t shutdown_req_;
  };
  StreamHandler* handler_ = nullptr;
  ByteQueue out_;
  size_t in_flight_ = 0;
  uint64_t submitted_ = 0;  // bytes handed to uv_try_write / uv_write so far
  uint64_t stall_timeout_ms_ = 0;
  Counter* stall_fired_ = nullptr;
  // Created on first use: most connections never queue bytes long enough.
  TimerPtr stall_timer_;
  uint64_t stall_mark_ = 0;   // BytesWritten() at the last progress
  uint64_t stall_since_ = 0;  // loop time of the last progress
  bool read_paused_ = false;
  bool reading_ = false;
  bool eof_ = false;
  bool end_requested_ = false;
  bool shutdown_started_ = false;
  bool shutdown_done_ = false;
  size_t high_watermark_ = kHighWatermark;
  size_t low_watermark_ = kLowWatermark;
  bool above_high_ = false;
  bool closed_ = false;  // uv_close called; no more handler calls
};

// Dials a TCP address, IPv4 or IPv6, with a timeout. Destroying the
// connector cancels the attempt; the callback is then never called.
class TcpConnector {
 public:
  using Callback = std::function<void(Result<TcpStream*>)>;
  explicit TcpConnector(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  ~TcpConnector();
  TcpConnector(const TcpConnector&) = delete;
  TcpConnector& operator=(const TcpConnector&) = delete;

  // `address` host byte order. The callback runs once, from the loop; it may
  // destroy the connector.
  // `netns_fd` >= 0: the socket is made inside that network namespace (a
  // sandboxed process replica's, proxy/base/netns.h).
  void Connect(uint32_t address, uint16_t port, uint64_t timeout_ms, Callback callback,
               int netns_fd = -1);
  // Any address: `address` is a sockaddr_in or sockaddr_in6 (a
  // sockaddr_storage from getaddrinfo, say). Errors name it as
  // FormatSockaddr does.
  void Connect(const sockaddr& address, uint64_t timeout_ms, Callback callback, int netns_fd = -1);

 private:
  void Finish(Result<TcpStream*> result);

  Dispatcher& dispatcher_;
  TcpStream* stream_ = nullptr;  // owned until handed over
  uv_connect_t* request_ = nullptr;
  TimerPtr timer_;  // the timeout, or the error's report on the next turn
  Callback callback_;
  std::string target_;
};

// "127.64.0.5:8080" (host byte order address).
std::string FormatAddressPort(uint32_t address, uint16_t port);
// "127.64.0.5:8080" or "[::1]:8080"; "?" for a family other than IPv4 and IPv6.
std::string FormatSockaddr(const sockaddr& address);
sockaddr_in MakeSockaddr(uint32_t address, uint16_t port);

}  // namespace podless::proxy
