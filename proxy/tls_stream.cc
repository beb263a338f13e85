#include "proxy/tls_stream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <utility>

#include "workloads/chain_verifier.h"

namespace podless::proxy {

namespace {

constexpr size_t kRecordSize = 16 << 10;
constexpr uint8_t kAlpnH2[] = {2, 'h', '2'};
// After a failed handshake the alert is flushed; the socket is dropped when
// the peer has not closed it within this time.
constexpr uint64_t kLingerAfterFailureMs = 1000;

int SslIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::string SslErrorString(const char* what) {
  uint32_t code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return what;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return std::string(what) + ": " + buf;
}

int SelectAlpn(SSL*, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len,
               void*) {
  // ALPN "h2" is mandatory for HBONE; anything else ends the handshake with
  // a no_application_protocol alert.
  for (unsigned i = 0; i < in_len;) {
    unsigned len = in[i];
    if (i + 1 + len > in_len) break;
    if (len == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *out_len = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

Result<bssl::UniquePtr<SSL_CTX>> NewHboneContext() {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return MakeError(ErrorCode::kInternal, SslErrorString("SSL_CTX_new"));
  if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION)) {
    return MakeError(ErrorCode::kInternal, SslErrorString("TLS 1.3 not available"));
  }
  // Identity is verified on every connection; resumption would skip it.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

// The SVID's DER buffers go to the connection as they are (BoringSSL sends
// CRYPTO_BUFFERs; an X509 would be re-encoded on every handshake).
Status UseSvid(SSL* ssl, const workloads::Svid& svid) {
  std::vector<CRYPTO_BUFFER*> chain;
  chain.reserve(1 + svid.intermediates.size());
  chain.push_back(svid.leaf.get());
  for (const auto& cert : svid.intermediates) chain.push_back(cert.get());
  if (!SSL_set_chain_and_key(ssl, chain.data(), chain.size(), svid.private_key.get(), nullptr)) {
    return MakeError(ErrorCode::kInternal, SslErrorString("loading the SVID"));
  }
  return {};
}

}  // namespace

// --- TlsContext -------------------------------------------------------------

Result<TlsContextPtr> TlsContext::CreateServer(Directory& directory) {
  auto ctx = NewHboneContext();
  if (!ctx.ok()) return ctx.error();
  TlsContextPtr context(new TlsContext(&directory, /*server=*/true));
  context->ctx_ = std::move(ctx).value();
  SSL_CTX_set_alpn_select_cb(context->ctx_.get(), SelectAlpn, nullptr);
  SSL_CTX_set_cert_verify_callback(context->ctx_.get(), &TlsStream::VerifyPeerTrampoline, nullptr);
  return context;
}

Result<TlsContextPtr> TlsContext::CreateClient(Directory& directory) {
  auto ctx = NewHboneContext();
  if (!ctx.ok()) return ctx.error();
  TlsContextPtr context(new TlsContext(&directory, /*server=*/false));
  context->ctx_ = std::move(ctx).value();
  SSL_CTX_set_cert_verify_callback(context->ctx_.get(), &TlsStream::VerifyPeerTrampoline, nullptr);
  return context;
}

std::shared_ptr<const TlsContext> TlsContext::CreateCustomClient(bssl::UniquePtr<SSL_CTX> ctx,
                                                                 TlsFailureDescriber describe) {
  std::shared_ptr<TlsContext> context(new TlsContext(nullptr, /*server=*/false));
  context->ctx_ = std::move(ctx);
  context->describe_ = std::move(describe);
  context->requires_alpn_h2_ = true;
  return context;
}

TlsContextPtr TlsContext::AdoptServer(bssl::UniquePtr<SSL_CTX> ctx) {
  TlsContextPtr context(new TlsContext(nullptr, /*server=*/true));
  context->ctx_ = std::move(ctx);
  return context;
}

// --- TlsStream ----------------------------------------------------------------

int TlsStream::VerifyPeerTrampoline(X509_STORE_CTX* store_ctx, void* arg) {
  return VerifyPeer(store_ctx, arg);
}

TlsStream::TlsStream(Dispatcher& dispatcher, const TlsContext& context, Stream* transport,
                     HandshakeCallback callback)
    : dispatcher_(dispatcher),
      context_(context),
      transport_(transport),
      ssl_(SSL_new(context.ctx())),
      handshake_callback_(std::move(callback)) {
  SSL_set_ex_data(ssl_.get(), SslIndex(), this);
  BIO* bio = NewTransportBio(this);
  SSL_set_bio(ssl_.get(), bio, bio);  // one BIO, both directions: SSL takes one reference
}

BIO* TlsStream::NewTransportBio(TlsStream* self) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "podless transport");
    BIO_meth_set_write(m, &TlsStream::BioWrite);
    BIO_meth_set_read(m, &TlsStream::BioRead);
    BIO_meth_set_ctrl(m, &TlsStream::BioCtrl);
    return m;
  }();
  BIO* bio = BIO_new(method);
  BIO_set_data(bio, self);
  BIO_set_init(bio, 1);
  return bio;
}

int TlsStream::BioWrite(BIO* bio, const char* data, int len) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  // The transport copies what it cannot hand to the kernel at once. Once it
  // is gone the records have nowhere to go and are dropped.
  if (self->transport_ != nullptr && len > 0) {
    self->transport_->Write(std::string_view(data, static_cast<size_t>(len)));
  }
  return len;
}

int TlsStream::BioRead(BIO* bio, char* out, int len) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  // Held bytes arrived first, so they are read first.
  if (!self->cipher_in_.empty()) {
    return static_cast<int>(self->cipher_in_.Read(reinterpret_cast<uint8_t*>(out), len));
  }
  if (self->unread_.empty()) {
    BIO_set_retry_read(bio);  // "wait for more", not end of stream
    return -1;
  }
  size_t n = std::min(self->unread_.size(), static_cast<size_t>(len));
  std::memcpy(out, self->unread_.data(), n);
  self->unread_.remove_prefix(n);
  return static_cast<int>(n);
}

long TlsStream::BioCtrl(BIO*, int cmd, long, void*) {
  // Writes reach the transport at once: flushing has nothing left to do.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

TlsStream::~TlsStream() = default;

TlsStream* TlsStream::FromSsl(const SSL* ssl) {
  return static_cast<TlsStream*>(SSL_get_ex_data(ssl, SslIndex()));
}

TlsStream* TlsStream::Accept(Dispatcher& dispatcher, const TlsContext& context,
                             TcpStream* transport, uint64_t handshake_timeout_ms,
                             HandshakeCallback callback) {
  auto* self = new TlsStream(dispatcher, context, transport, std::move(callback));
  self->local_replica_address_ = transport->LocalAddress();
  SSL_set_accept_state(self->ssl_.get());
  if (!context.custom()) SSL_set_cert_cb(self->ssl_.get(), &TlsStream::SelectCertificate, self);
  self->StartHandshake(handshake_timeout_ms);
  return self;
}

TlsStream* TlsStream::Connect(Dispatcher& dispatcher, const TlsContext& context, Stream* transport,
                              workloads::SvidPtr svid, std::string expected_peer, std::string sni,
                              uint64_t handshake_timeout_ms, HandshakeCallback callback) {
  auto* self = new TlsStream(dispatcher, context, transport, std::move(callback));
  self->svid_ = std::move(svid);
  self->expected_peer_ = std::move(expected_peer);
  self->local_identity_ = self->svid_->id.ToString();
  SSL_set_connect_state(self->ssl_.get());
  SSL_set_alpn_protos(self->ssl_.get(), kAlpnH2, sizeof(kAlpnH2));
  if (!sni.empty()) SSL_set_tlsext_host_name(self->ssl_.get(), sni.c_str());
  Status loaded = UseSvid(self->ssl_.get(), *self->svid_);
  if (!loaded.ok()) self->verify_error_ = loaded.error().message;
  self->StartHandshake(handshake_timeout_ms);
  return self;
}

TlsStream* TlsStream::ConnectToName(Dispatcher& dispatcher,
                                    std::shared_ptr<const TlsContext> context, Stream* transport,
                                    std::string server_name, uint64_t handshake_timeout_ms,
                                    HandshakeCallback callback) {
  auto* self = new TlsStream(dispatcher, *context, transport, std::move(callback));
  self->context_owner_ = std::move(context);
  self->server_name_ = std::move(server_name);
  SSL* ssl = self->ssl_.get();
  SSL_set_connect_state(ssl);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  const std::string& name = self->server_name_;
  unsigned char ip[sizeof(in6_addr)];
  bool ok;
  if (inet_pton(AF_INET, name.c_str(), ip) == 1 || inet_pton(AF_INET6, name.c_str(), ip) == 1) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1;
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = X509_VERIFY_PARAM_set1_host(param, name.data(), name.size()) == 1 &&
         SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
  }
  if (!ok) {
    ERR_clear_error();
    // Fails in the handshake's first step, from the loop.
    self->verify_error_ = "cannot check a certificate against the name \"" + name + "\"";
    SSL_set_verify(ssl, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 0; });
  }
  self->StartHandshake(handshake_timeout_ms);
  return self;
}

std::string TlsStream::DescribeFailure(const char* what) {
  if (!context_.custom() || !context_.describe_failure()) return SslErrorString(what);
  const uint32_t code = ERR_get_error();
  ERR_clear_error();
  return context_.describe_failure()(ssl_.get(), code, server_name_);
}

void TlsStream::StartHandshake(uint64_t timeout_ms) {
  transport_->SetHandler(this);
  handshake_timer_ = std::make_unique<Timer>(dispatcher_.loop(), [this] { OnHandshakeTimer(); });
  handshake_timer_->Start(timeout_ms);
  // The first flight (ClientHello) goes out on the next turn, so the callback
  // is never called from inside Accept()/Connect().
  dispatcher_.Schedule(this);
}

void TlsStream::OnHandshakeTimer() {
  if (dead_) {
    // Lingering after a failure (FailHandshake): drop the socket now.
    if (transport_ == nullptr) return;
    transport_->Reset();
    transport_ = nullptr;
    Destroy();
    return;
  }
  FailHandshake(MakeError(ErrorCode::kDeadlineExceeded, "TLS handshake timed out"));
}

int TlsStream::SelectCertificate(SSL* ssl, void* arg) {
  auto* self = static_cast<TlsStream*>(arg);
  Directory& directory = self->context_.directory();
  const LocalReplica* replica = nullptr;
  // SNI naming a hosted replica's address selects it; anything else falls
  // back to the address the peer dialed.
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) {
    in_addr addr{};
    if (inet_pton(AF_INET, sni, &addr) == 1) {
      replica = directory.FindLocalReplica(ntohl(addr.s_addr));
    }
  }
  if (replica == nullptr) replica = directory.FindLocalReplica(self->local_replica_address_);
  if (replica == nullptr) {
    self->verify_error_ =
        "no workload is hosted at " + FormatAddressPort(self->local_replica_address_, 0);
    return 0;
  }
  if (!self->certificate_fetch_) {
    auto fetch = std::make_shared<CertificateFetch>();
    self->certificate_fetch_ = fetch;
    std::weak_ptr<CertificateFetch> weak = fetch;
    directory.CertificateAsync(*replica, [self, weak](Result<workloads::SvidPtr> svid) {
      auto fetch = weak.lock();
      if (!fetch) return;  // the stream is gone
      fetch->svid = std::move(svid);
      fetch->done = true;
      if (fetch->waiting && !self->dead_) self->dispatcher_.Schedule(self);  // resume
    });
  }
  CertificateFetch& fetch = *self->certificate_fetch_;
  if (!fetch.done) {
    fetch.waiting = true;
    return -1;  // SSL_ERROR_WANT_X509_LOOKUP: called again once it arrived
  }
  if (!fetch.svid.ok()) {
    self->verify_error_ = "no certificate for " + replica->name + ": " + fetch.svid.error().message;
    return 0;
  }
  self->svid_ = fetch.svid.value();
  Status loaded = UseSvid(ssl, *self->svid_);
  if (!loaded.ok()) {
    self->verify_error_ = loaded.error().message;
    return 0;
  }
  self->local_replica_address_ = replica->address;
  self->local_identity_ = self->svid_->id.ToString();
  return 1;
}

int TlsStream::VerifyPeer(X509_STORE_CTX* store_ctx, void*) {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  TlsStream* self = FromSsl(ssl);
  Directory& directory = self->context_.directory();
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  if (leaf == nullptr) {
    self->verify_error_ = "peer sent no certificate";
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  auto id = workloads::VerifySpiffeChain(leaf, X509_STORE_CTX_get0_untrusted(store_ctx),
                                         directory.TrustStore(), directory.TrustDomain(),
                                         static_cast<int64_t>(time(nullptr)));
  if (!id.ok()) {
    // Already "peer certificate rejected: <why>".
    self->verify_error_ = id.error().message;
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  std::string identity = id->ToString();
  if (!self->expected_peer_.empty() && identity != self->expected_peer_) {
    self->verify_error_ = "peer is " + identity + ", expected " + self->expected_peer_;
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  self->peer_identity_ = std::move(identity);
  return 1;
}

void TlsStream::DriveHandshake() {
  if (dead_ || handshake_done_) return;
  int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    const uint8_t* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_len);
    if (context_.requires_alpn_h2() && (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0)) {
      FailHandshake(MakeError(ErrorCode::kPermissionDenied, "peer did not negotiate ALPN h2"));
      return;
    }
    if (!context_.custom() && peer_identity_.empty()) {
      FailHandshake(MakeError(ErrorCode::kPermissionDenied, "peer identity not verified"));
      return;
    }
    handshake_done_ = true;
    if (handshake_timer_) handshake_timer_->Stop();
    HandshakeCallback callback = std::move(handshake_callback_);
    callback(Status{});
    // Application data may have arrived with the last handshake flight.
    if (!dead_) dispatcher_.Schedule(this);
    return;
  }
  int err = SSL_get_error(ssl_.get(), rc);
  // WANT_X509_LOOKUP: the certificate is being issued (SelectCertificate).
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
      err == SSL_ERROR_WANT_X509_LOOKUP) {
    return;
  }
  std::string reason;
  if (!verify_error_.empty()) {
    reason = "TLS handshake failed: " + verify_error_;
  } else if (context_.custom() && context_.describe_failure()) {
    reason = "TLS handshake failed: " + DescribeFailure("");
  } else {
    reason = SslErrorString("TLS handshake failed");
  }
  ERR_clear_error();
  FailHandshake(MakeError(ErrorCode::kPermissionDenied, std::move(reason)));
}

void TlsStream::FailHandshake(Error error) {
  if (dead_) return;
  dead_ = true;
  failure_ = error.message;
  HandshakeCallback callback = std::move(handshake_callback_);
  if (transport_ != nullptr) {
    // Let the alert reach the peer, then drop the socket if it lingers.
    transport_->End();
    // OnHandshakeTimer drops it.
    if (handshake_timer_) handshake_timer_->Start(kLingerAfterFailureMs);
  }
  if (callback) callback(std::move(error));
}

void TlsStream::Destroy() {
  if (delete_scheduled_) return;
  delete_scheduled_ = true;
  if (destroy_callback_) std::exchange(destroy_callback_, nullptr)();
  dead_ = true;
  handler_ = nullptr;
  handshake_timer_.reset();
  dispatcher_.Cancel(this);
  dispatcher_.DeferredDelete(std::unique_ptr<TlsStream>(this));
}

void TlsStream::RunDeferred() {
  if (dead_) return;
  if (write_failed_) {
    Abort();
    return;
  }
  if (!handshake_done_) {
    DriveHandshake();
    return;
  }
  ReadPlaintext();
}

void TlsStream::SetHandler(StreamHandler* handler) {
  handler_ = handler;
  if (!dead_) dispatcher_.Schedule(this);
}

void TlsStream::OnData(std::string_view bytes) {
  if (dead_) return;  // lingering after a failure: discard
  // SSL reads the records straight from `bytes` (BioRead); what it leaves
  // (a partial record, or everything while paused) is kept for later.
  if (cipher_in_.empty()) {
    unread_ = bytes;
  } else {
    cipher_in_.Append(bytes);
  }
  if (!handshake_done_) {
    DriveHandshake();
  }
  if (handshake_done_ && !dead_) ReadPlaintext();
  if (!dead_ && !unread_.empty()) cipher_in_.Append(unread_);
  unread_ = {};
}

void TlsStream::ReadPlaintext() {
  char buf[kRecordSize];
  while (!read_paused_ && !dead_ && handler_ != nullptr && !peer_ended_) {
    int n = SSL_read(ssl_.get(), buf, sizeof(buf));
    if (n > 0) {
      handler_->OnData(std::string_view(buf, n));
      continue;
    }
    int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      peer_ended_ = true;
      handler_->OnEnd();
      break;
    }
    failure_ = DescribeFailure("TLS");
    Abort();
    return;
  }
}

void TlsStream::Write(std::string_view bytes) {
  if (dead_ || end_requested_ || bytes.empty()) return;
  if (plain_out_.empty() && handshake_done_ && transport_->QueuedBytes() < kHighWatermark) {
    // Nothing queued ahead: seal straight from the caller's bytes, one
    // record per 16 KiB, and queue (copy) only what backpressure leaves.
    while (!bytes.empty() && transport_->QueuedBytes() < kHighWatermark) {
      std::string_view record = bytes.substr(0, kRecordSize);
      if (!Seal(record)) return;
      bytes.remove_prefix(record.size());
    }
  }
  plain_out_.Append(bytes);
  if (QueuedBytes() > kHighWatermark) above_high_ = true;
  EncryptQueued();
}

bool TlsStream::Seal(std::string_view bytes) {
  int rc = SSL_write(ssl_.get(), bytes.data(), static_cast<int>(bytes.size()));
  if (rc > 0) return true;
  ERR_clear_error();
  // Never call the handler from inside its own Write(): fail next turn.
  write_failed_ = true;
  dispatcher_.Schedule(this);
  return false;
}

void TlsStream::EncryptQueued() {
  if (!handshake_done_ || dead_) return;
  // One SSL_write per record, sealed from the queue's own chunks; stop while
  // the socket is backed up.
  while (!plain_out_.empty() && transport_->QueuedBytes() < kHighWatermark) {
    std::string_view record = plain_out_.Front().substr(0, kRecordSize);
    if (!Seal(record)) return;
    plain_out_.Drain(record.size());
  }
  if (plain_out_.empty() && end_requested_ && !end_sent_) {
    end_sent_ = true;
    SSL_shutdown(ssl_.get());  // close_notify
    transport_->End();
  }
}

void TlsStream::End() {
  if (dead_ || end_requested_) return;
  end_requested_ = true;
  EncryptQueued();
}

size_t TlsStream::QueuedBytes() const {
  return plain_out_.size() + (transport_ != nullptr ? transport_->QueuedBytes() : 0);
}

void TlsStream::SetReadPaused(bool paused) {
  read_paused_ = paused;
  if (dead_ || transport_ == nullptr) return;
  transport_->SetReadPaused(paused);
  // Records already decrypted-ready in SSL are delivered on the next turn.
  if (!paused) dispatcher_.Schedule(this);
}

void TlsStream::OnWritable() {
  if (dead_) return;
  EncryptQueued();
  if (!dead_ && above_high_ && QueuedBytes() < kLowWatermark) {
    above_high_ = false;
    if (handler_ != nullptr) handler_->OnWritable();
  }
}

void TlsStream::OnEnd() {
  if (dead_) return;
  if (!handshake_done_) {
    FailHandshake(
        MakeError(ErrorCode::kUnavailable, "peer closed the connection during the TLS handshake"));
    return;
  }
  if (!peer_ended_) {
    // FIN without close_notify: treated as the end of the peer's data.
    peer_ended_ = true;
    if (handler_ != nullptr) handler_->OnEnd();
  }
}

void TlsStream::OnClosed(bool reset) {
  transport_ = nullptr;  // the transport is gone
  if (dead_) {
    Destroy();
    return;
  }
  if (!handshake_done_) {
    dead_ = true;
    failure_ = "connection closed during the TLS handshake";
    HandshakeCallback callback = std::move(handshake_callback_);
    Destroy();
    if (callback) {
      callback(MakeError(ErrorCode::kUnavailable, "connection closed during the TLS handshake"));
    }
    return;
  }
  StreamHandler* handler = handler_;
  Destroy();
  if (handler != nullptr) handler->OnClosed(reset);
}

void TlsStream::Abort() {
  if (dead_) return;
  StreamHandler* handler = handler_;
  if (transport_ != nullptr) transport_->Reset();
  transport_ = nullptr;
  Destroy();
  if (handler != nullptr) handler->OnClosed(true);
}

void TlsStream::Reset() {
  // A stream lingering after a failed handshake (dead_) is dropped too.
  if (delete_scheduled_) return;
  if (transport_ != nullptr) transport_->Reset();
  transport_ = nullptr;
  Destroy();
}

}  // namespace podless::proxy
