// TlsStream: TLS 1.3 (BoringSSL) over another Stream (a TcpStream), with the
// HBONE profile: mutual authentication with X.509-SVIDs, ALPN "h2" required
// both ways, 16 KiB records.
//
// The SSL runs over two memory BIOs: ciphertext read from the transport is
// written into one, ciphertext SSL produces is taken from the other and
// written to the transport. Plaintext is itself presented as a Stream, so an
// HTTP/2 session runs over TLS or, in tests, over plain TCP alike.
//
// Server side: the certificate is chosen per connection in the handshake by
// the local address the peer dialed (TcpStream::LocalAddress), or by SNI when
// it is the IPv4 address of a replica this node hosts. The client's chain is
// verified with VerifySpiffeChain against Directory::TrustStore().
// Client side: the source replica's SVID is presented and the server's
// SPIFFE ID must equal the expected destination identity.
//
// Client side with a caller's profile (TlsContext::CreateCustomClient, e.g.
// the etcd client's, runtime/etcd/etcd_tls.h): the caller made the SSL_CTX (trust
// anchors, protocol versions, ALPN offer, client certificate) and BoringSSL's
// own chain verification runs against it; the stream adds the check that
// the certificate names the server (ConnectToName) and that the server chose
// ALPN "h2". Nothing of the HBONE profile applies to such a context.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/base/byte_queue.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/stream.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "proxy/directory.h"
#include "workloads/result.h"

namespace podless::proxy {

inline constexpr uint64_t kDefaultHandshakeTimeoutMs = 10'000;

// Why an SSL call of a custom-profile connection failed, as its user can act
// on it: `error` is the oldest code on BoringSSL's error queue (0 if none),
// `server_name` the name the certificate had to carry. Runs on the loop.
using TlsFailureDescriber =
    std::function<std::string(const SSL* ssl, uint32_t error, const std::string& server_name)>;

// One SSL_CTX for each role, shared by every connection of that role.
class TlsContext {
 public:
  // The HBONE profile (see the top of this file).
  static Result<std::unique_ptr<TlsContext>> CreateServer(Directory& directory);
  static Result<std::unique_ptr<TlsContext>> CreateClient(Directory& directory);
  // A client profile made by the caller: `ctx` must verify the peer
  // (SSL_VERIFY_PEER against its own trust anchors) and offer ALPN "h2".
  // `describe` (may be empty) words handshake and data-phase failures.
  static std::shared_ptr<const TlsContext> CreateCustomClient(bssl::UniquePtr<SSL_CTX> ctx,
                                                              TlsFailureDescriber describe);
  // A server context the caller made (certificate, peer verification and
  // ALPN are its own): the stream only runs the handshake and the records,
  // checks neither ALPN nor a SPIFFE identity, and the caller inspects the
  // peer through TlsStream::ssl() (the Kubernetes API server, api/kube/).
  static std::unique_ptr<TlsContext> AdoptServer(bssl::UniquePtr<SSL_CTX> ctx);

  SSL_CTX* ctx() const { return ctx_.get(); }
  // Only for the HBONE profile.
  Directory& directory() const { return *directory_; }
  bool server() const { return server_; }
  // Made by the caller (not HBONE's: no Directory, no SPIFFE identity check).
  bool custom() const { return directory_ == nullptr; }
  // The handshake fails unless the peer agreed to h2 (HBONE, etcd).
  bool requires_alpn_h2() const { return requires_alpn_h2_; }
  const TlsFailureDescriber& describe_failure() const { return describe_; }

 private:
  TlsContext(Directory* directory, bool server)
      : directory_(directory), server_(server), requires_alpn_h2_(directory != nullptr) {}
  Directory* directory_;  // null for a custom profile
  bool server_;
  bool requires_alpn_h2_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  TlsFailureDescriber describe_;
};
using TlsContextPtr = std::unique_ptr<TlsContext>;

class TlsStream final : public Stream, private StreamHandler, private DeferredTask {
 public:
  // Called once from the loop: ok after a complete handshake (then call
  // SetHandler), or the reason it failed (the stream is then gone).
  using HandshakeCallback = std::function<void(Status)>;

  // Server side of an accepted connection.
  static TlsStream* Accept(Dispatcher& dispatcher, const TlsContext& context, TcpStream* transport,
                           uint64_t handshake_timeout_ms, HandshakeCallback callback);
  // Client side: presents `svid`, requires the server to be `expected_peer`.
  // `sni` (may be empty) is sent as server_name.
  static TlsStream* Connect(Dispatcher& dispatcher, const TlsContext& context, Stream* transport,
                            workloads::SvidPtr svid, std::string expected_peer, std::string sni,
                            uint64_t handshake_timeout_ms, HandshakeCallback callback);

  // Client side with a custom profile (TlsContext::CreateCustomClient): the
  // server's certificate must name `server_name`, a DNS name (also sent as
  // SNI; no partial wildcards) or an IP literal without brackets (an IP SAN;
  // never sent as SNI, RFC 6066). The stream keeps `context` alive.
  static TlsStream* ConnectToName(Dispatcher& dispatcher, std::shared_ptr<const TlsContext> context,
                                  Stream* transport, std::string server_name,
                                  uint64_t handshake_timeout_ms, HandshakeCallback callback);

  // Why the stream failed: the handshake's reason, or the TLS error that
  // aborted the data phase (an alert from the peer, say). Readable until the
  // handler's OnClosed returns, and from the destroy callback.
  const std::string& failure() const { return failure_; }

  // The verified SPIFFE ID of the peer ("spiffe://td/ns/x/sa/y").
  const std::string& peer_identity() const { return peer_identity_; }
  // Server side: the hosted replica address whose certificate was presented.
  uint32_t local_replica_address() const { return local_replica_address_; }
  // Server side: the certificate's SPIFFE ID.
  const std::string& local_identity() const { return local_identity_; }

  // Called once when the stream is about to be deleted (also after a failed
  // handshake, when it lingers on its own to flush the alert): an owner that
  // must end lingering streams (HboneServer::Close) forgets it then.
  void SetDestroyCallback(std::function<void()> callback) {
    destroy_callback_ = std::move(callback);
  }
  // Deletion is already scheduled (the memory lives until the next turn).
  bool destroyed() const { return delete_scheduled_; }
  // The connection, for a caller-made context's own checks of the peer.
  SSL* ssl() const { return ssl_.get(); }

  // Stream
  void SetHandler(StreamHandler* handler) override;
  void Write(std::string_view bytes) override;
  void End() override;
  void Reset() override;
  size_t QueuedBytes() const override;
  void SetReadPaused(bool paused) override;

 private:
  TlsStream(Dispatcher& dispatcher, const TlsContext& context, Stream* transport,
            HandshakeCallback callback);

 public:
  // Only the Dispatcher deletes a TlsStream (after Destroy()).
  ~TlsStream() override;

 private:
  // StreamHandler (the transport's ciphertext)
  void OnData(std::string_view bytes) override;
  void OnEnd() override;
  void OnClosed(bool reset) override;
  void OnWritable() override;
  // DeferredTask: delivers plaintext SSL buffered while reading was paused.
  void RunDeferred() override;

  static int SelectCertificate(SSL* ssl, void* arg);
  static int VerifyPeer(X509_STORE_CTX* store_ctx, void* arg);
  friend class TlsContext;
  static int VerifyPeerTrampoline(X509_STORE_CTX* store_ctx, void* arg);
  static TlsStream* FromSsl(const SSL* ssl);

  void StartHandshake(uint64_t timeout_ms);
  void OnHandshakeTimer();
  void DriveHandshake();
  void FailHandshake(Error error);
  void ReadPlaintext();
  void EncryptQueued();
  // SSL_write of bytes the caller keeps alive; false once writing failed.
  bool Seal(std::string_view bytes);
  // The BIOs between SSL and the transport: sealed records go straight into
  // the transport's Write, and records are read straight from the bytes of
  // the current OnData (only what SSL leaves unread is kept, in cipher_in_),
  // so no ciphertext is copied into an intermediate memory BIO.
  static int BioWrite(BIO* bio, const char* data, int len);
  static int BioRead(BIO* bio, char* out, int len);
  static long BioCtrl(BIO* bio, int cmd, long larg, void* parg);
  static BIO* NewTransportBio(TlsStream* self);
  // A data-phase error: the transport is reset and the handler told.
  void Abort();
  // Stops all activity; deleted on the next turn.
  void Destroy();

  // Why the last SSL call failed, worded by a custom profile's describer.
  std::string DescribeFailure(const char* what);

  Dispatcher& dispatcher_;
  const TlsContext& context_;
  std::shared_ptr<const TlsContext> context_owner_;  // custom profiles only
  Stream* transport_;
  bssl::UniquePtr<SSL> ssl_;
  ByteQueue cipher_in_;      // ciphertext received but not yet read by SSL
  std::string_view unread_;  // the current OnData's bytes not yet read by SSL
  HandshakeCallback handshake_callback_;
  std::function<void()> destroy_callback_;
  TimerPtr handshake_timer_;  // the handshake's timeout, then the linger after a failure
  StreamHandler* handler_ = nullptr;
  ByteQueue plain_out_;
  workloads::SvidPtr svid_;  // kept alive while the SSL references its key
  // Server side: the certificate being fetched for the dialed replica (it may
  // be issued off the loop; the handshake pauses until it arrives). Only the
  // stream holds it, so a late answer for a gone stream finds it expired.
  struct CertificateFetch {
    bool done = false;
    bool waiting = false;  // the handshake paused on it
    Result<workloads::SvidPtr> svid = MakeError(ErrorCode::kInternal, "not fetched");
  };
  std::shared_ptr<CertificateFetch> certificate_fetch_;
  std::string expected_peer_;
  std::string peer_identity_;
  std::string local_identity_;
  std::string verify_error_;
  std::string server_name_;  // custom profiles: the name the certificate must carry
  std::string failure_;
  uint32_t local_replica_address_ = 0;
  bool handshake_done_ = false;
  bool read_paused_ = false;
  bool end_requested_ = false;
  bool end_sent_ = false;
  bool peer_ended_ = false;
  bool above_high_ = false;
  bool dead_ = false;
  bool delete_scheduled_ = false;
  bool write_failed_ = false;
};

}  // namespace podless::proxy
