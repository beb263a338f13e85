// proxy::TlsStream with a caller's profile (etcd's, runtime/etcd/etcd_tls.h)
// against a real etcd serving TLS (tests/runtime/etcd_process.h): BoringSSL's
// chain verification against --etcd-ca only, the endpoint's host checked
// against the certificate, the failures worded for an operator.
#include <doctest.h>

#include <optional>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/base/tcp_stream.h"
#include "proxy/base/uv_handle.h"
#include "proxy/tls_stream.h"
#include "runtime/etcd/etcd_tls.h"
#include "tests/runtime/etcd_process.h"
#include "tests/testing/run_loop.h"

namespace podless::runtime {
namespace {

using namespace std::chrono_literals;
using testing::EtcdProcess;
using testing::RunUntil;

// A TLS etcd, and one TLS handshake with it through TcpConnector and
// TlsStream::ConnectToName.
struct TlsFixture {
  TlsFixture() : etcd(EtcdProcess::kTls), dispatcher(loop.get()) {
    const Status started = etcd.Start();
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
    const std::string& url = etcd.client_url();
    port = static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
  }

  EtcdTlsFiles ClientFiles() const {
    return {.ca_file = etcd.pki().ca_cert,
            .cert_file = etcd.pki().client_cert,
            .key_file = etcd.pki().client_key};
  }

  // The handshake's outcome with `files` as the profile, the certificate
  // required to name `server_name`.
  Status Handshake(const EtcdTlsFiles& files, const std::string& server_name) {
    auto context = EtcdTlsContext::Load(files);
    REQUIRE_MESSAGE(context.ok(), (context.ok() ? "" : context.error().message));
    proxy::TcpConnector connector(dispatcher);
    std::optional<Result<proxy::TcpStream*>> connected;
    connector.Connect(0x7f000001, port, 5000,
                      [&](Result<proxy::TcpStream*> r) { connected.emplace(std::move(r)); });
    REQUIRE(RunUntil(
        loop.get(), [&] { return connected.has_value(); }, 10s));
    REQUIRE(connected->ok());
    std::optional<Status> done;
    proxy::TlsStream* tls = proxy::TlsStream::ConnectToName(
        dispatcher, (*context)->stream_context(), **connected, server_name, 5000,
        [&](Status s) { done.emplace(std::move(s)); });
    tls->SetDestroyCallback([&] { tls = nullptr; });
    REQUIRE(RunUntil(
        loop.get(), [&] { return done.has_value(); }, 10s));
    // A failed one too: it lingers to flush its alert.
    if (tls != nullptr) tls->Reset();
    return *done;
  }

  proxy::UvLoop loop;
  EtcdProcess etcd;
  proxy::Dispatcher dispatcher;
  uint16_t port = 0;
};

TEST_CASE("TlsStream with etcd's profile: completes with the CA and the name etcd's cert has") {
  TlsFixture f;
  const Status done = f.Handshake(f.ClientFiles(), "127.0.0.1");
  CHECK_MESSAGE(done.ok(), (done.ok() ? "" : done.error().message));
}

TEST_CASE("TlsStream with etcd's profile: refuses a server whose CA is not the profile's") {
  TlsFixture f;
  EtcdTlsFiles files = f.ClientFiles();
  files.ca_file = f.etcd.pki().other_ca_cert;
  const Status done = f.Handshake(files, "127.0.0.1");
  REQUIRE_FALSE(done.ok());
  INFO(done.error().message);
  CHECK(done.error().message.find("certificate verify failed") != std::string::npos);
  CHECK(done.error().message.find(files.ca_file) != std::string::npos);
}

TEST_CASE("TlsStream with etcd's profile: refuses a certificate that does not name the host") {
  TlsFixture f;
  // etcd's certificate names only IP:127.0.0.1.
  const Status by_name = f.Handshake(f.ClientFiles(), "localhost");
  REQUIRE_FALSE(by_name.ok());
  INFO(by_name.error().message);
  CHECK(by_name.error().message.find("certificate verify failed: hostname mismatch") !=
        std::string::npos);
  CHECK(by_name.error().message.find("\"localhost\"") != std::string::npos);

  const Status other_ip = f.Handshake(f.ClientFiles(), "127.0.0.2");
  REQUIRE_FALSE(other_ip.ok());
  INFO(other_ip.error().message);
  CHECK(other_ip.error().message.find("IP address mismatch") != std::string::npos);
}

}  // namespace
}  // namespace podless::runtime
