#include "api/spiffe_workload_api.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <ctime>

#include "proxy/base/timer.h"
#include "spiffe/workload.pb.h"
#include "workloads/pem_file.h"

namespace podless::api {
namespace {

// The file declares no package (as the specification's does), so the
// service's wire name is just "SpiffeWorkloadAPI".
constexpr char kService[] = "/SpiffeWorkloadAPI/";

std::string Der(const CRYPTO_BUFFER* cert) {
  auto bytes = workloads::CryptoBufferBytes(cert);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string Der(X509* cert) {
  uint8_t* out = nullptr;
  int length = i2d_X509(cert, &out);
  if (length <= 0) return "";
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(length));
  OPENSSL_free(out);
  return der;
}

// The trust bundle (PEM roots) as concatenated DER certificates.
std::string BundleDer(const std::string& pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::string der;
  while (true) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    der += Der(cert.get());
  }
  return der;
}

std::string TrustDomainId(const runtime::Agent& agent) {
  return "spiffe://" + agent.config().trust_domain;
}

}  // namespace

// One open FetchX509SVID call.
struct SpiffeWorkloadApi::SvidStream {
  uint64_t id = 0;
  std::string ns;
  std::string replica;  // "<workload>-<ordinal>"
  // Who asked: the stream is re-attested on every tick and ends when the
  // process exits or leaves its replica, or the replica's identity changes.
  pid_t pid = 0;
  uint64_t start_time = 0;
  uint32_t address = 0;
  std::string spiffe_id;
  std::string serial_sent;
  ServerStreamWriter<X509SVIDResponse> writer;
  proxy::TimerPtr timer;  // the next Refresh
  explicit SvidStream(ServerStreamWriter<X509SVIDResponse> w) : writer(std::move(w)) {}
};

SpiffeWorkloadApi::SpiffeWorkloadApi(uv_loop_t* loop, runtime::Agent& agent,
                                     const runtime::Supervisor& supervisor,
                                     GrpcServerOptions options)
    : loop_(loop),
      agent_(agent),
      certificates_(agent.certificates()),
      supervisor_(supervisor),
      server_(loop, std::move(options)) {
  server_.AddServerStreaming<X509SVIDRequest, X509SVIDResponse>(
      std::string(kService) + "FetchX509SVID",
      [this](const CallContext& context, const X509SVIDRequest&,
             ServerStreamWriter<X509SVIDResponse> writer) {
        auto ref = Attest(context);
        if (!ref) {
          writer.Finish(ref.error());
          return;
        }
        const auto& workload = std::get<workloads::Workload>(ref->workload->object);
        auto stream = std::make_unique<SvidStream>(std::move(writer));
        stream->id = next_stream_++;
        stream->ns = workload.metadata.ns;
        stream->replica = workload.metadata.name + "-" + std::to_string(ref->ordinal);
        stream->pid = context.pid;
        stream->start_time = context.start_time;
        stream->address = ref->workload->addresses[ref->ordinal];
        stream->spiffe_id = agent_.SpiffeIdFor(workload);
        stream->timer =
            std::make_unique<proxy::Timer>(loop_, [this, s = stream.get()] { Refresh(*s); });
        SvidStream& raw = *stream;
        uint64_t id = stream->id;
        streams_[id] = std::move(stream);
        // Erasing inside the cancel callback is safe: the stream's timer dies
        // with it and calls nothing after, and nothing else points at it.
        raw.writer.OnCancel([this, id] { streams_.erase(id); });
        if (streams_.count(id)) Refresh(raw);
      });

  server_.AddServerStreaming<X509BundlesRequest, X509BundlesResponse>(
      std::string(kService) + "FetchX509Bundles",
      [this](const CallContext& context, const X509BundlesRequest&,
             ServerStreamWriter<X509BundlesResponse> writer) {
        auto ref = Attest(context);
        if (!ref) {
          writer.Finish(ref.error());
          return;
        }
        // The bundle changes only with the CA, i.e. never while the agent
        // runs: one message, and the stream stays open as the API expects.
        X509BundlesResponse response;
        (*response.mutable_bundles())[TrustDomainId(agent_)] = BundleDer(agent_.ca().BundlePem());
        writer.Write(response);
      });
}

SpiffeWorkloadApi::~SpiffeWorkloadApi() { Close(); }

Status SpiffeWorkloadApi::Listen(const std::string& socket_path) {
  return server_.Listen(socket_path);
}

void SpiffeWorkloadApi::Close() {
  server_.Close();
  streams_.clear();
}

Result<runtime::ReplicaRef> SpiffeWorkloadApi::Attest(const CallContext& context) const {
  auto header = context.metadata.find(kWorkloadApiHeader);
  if (header == context.metadata.end() || header->second != "true") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "security header missing from request: metadata \"workload.spiffe.io: true\"");
  }
  auto address = supervisor_.ReplicaOfPid(context.pid);
  if (!address) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "caller (pid " + std::to_string(context.pid) +
                         ") is not a process of a workload this agent supervises");
  }
  std::optional<runtime::ReplicaRef> ref = agent_.FindReplica(*address);
  if (!ref) {
    return MakeError(ErrorCode::kPermissionDenied, "the caller's replica no longer exists");
  }
  return *ref;
}

void SpiffeWorkloadApi::Refresh(SvidStream& stream) {
  std::optional<runtime::ReplicaRef> ref = agent_.FindReplica(stream.address);
  std::string gone;
  if (!runtime::IsSameProcess(stream.pid, stream.start_time)) {
    gone = "the caller (pid " + std::to_string(stream.pid) + ") has exited";
  } else if (supervisor_.ReplicaOfPid(stream.pid) != stream.address || !ref) {
    gone = "the caller (pid " + std::to_string(stream.pid) + ") no longer belongs to " + stream.ns +
           "/" + stream.replica;
  } else if (agent_.SpiffeIdFor(std::get<workloads::Workload>(ref->workload->object)) !=
             stream.spiffe_id) {
    gone = "the identity of " + stream.ns + "/" + stream.replica + " changed";
  }
  if (!gone.empty()) {
    stream.writer.Finish(MakeError(ErrorCode::kPermissionDenied, gone));
    streams_.erase(stream.id);
    return;
  }
  auto svid = certificates_.Certificate(stream.spiffe_id);
  if (!svid) {
    // Issuance failed (the replica and its identity were checked above): the
    // caller gets nothing it could not verify.
    stream.writer.Finish(MakeError(ErrorCode::kPermissionDenied, svid.error().message));
    streams_.erase(stream.id);
    return;
  }
  const workloads::Svid& current = **svid;
  if (current.serial_hex != stream.serial_sent) {
    X509SVIDResponse response;
    X509SVID* out = response.add_svids();
    out->set_spiffe_id(current.id.ToString());
    std::string chain = Der(current.leaf.get());
    for (const auto& intermediate : current.intermediates) chain += Der(intermediate.get());
    out->set_x509_svid(chain);
    std::vector<uint8_t> key = current.PrivateKeyPkcs8Der();
    out->set_x509_svid_key(std::string(key.begin(), key.end()));
    out->set_bundle(BundleDer(agent_.ca().BundlePem()));
    if (!stream.writer.Write(response)) return;  // cancelled: OnCancel erases it
    stream.serial_sent = current.serial_hex;
  }
  // The manager re-issues once half of the lifetime is left; look again then.
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const int64_t refresh_at = certificates_.RefreshAt(current);
  // At least once a second, to end the stream soon after its caller goes.
  const uint64_t delay_ms =
      static_cast<uint64_t>(std::clamp<int64_t>((refresh_at - now) * 1000 + 100, 100, 1'000));
  stream.timer->Start(delay_ms);
}

}  // namespace podless::api
