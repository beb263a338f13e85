#include "runtime/state/config.h"

#include <uv.h>

#include <doctest.h>

#include <string>
#include <vector>

namespace podless::runtime {
namespace {

std::string ErrorOf(const std::vector<std::string>& args) {
  auto config = ParseRunFlags(args);
  return config.ok() ? "" : config.error().message;
}

TEST_CASE("Config: --root-namespace defaults to istio-system, takes a namespace or nothing") {
  auto config = ParseRunFlags({});
  REQUIRE(config.ok());
  CHECK(config->root_namespace == "istio-system");
  config = ParseRunFlags({"--root-namespace", "mesh-root"});
  REQUIRE(config.ok());
  CHECK(config->root_namespace == "mesh-root");
  config = ParseRunFlags({"--root-namespace", ""});
  REQUIRE(config.ok());
  CHECK(config->root_namespace.empty());
  CHECK(ErrorOf({"--root-namespace", "Bad_NS"}).find("--root-namespace: invalid namespace") !=
        std::string::npos);
}

TEST_CASE("Config: cluster flags parse, and --etcd alone is not enough") {
  auto config = ParseRunFlags({"--etcd", "http://10.0.0.9:2379,http://10.0.0.8:2379", "--node-name",
                               "n1", "--node-address", "10.0.0.1", "--cluster-cidr", "10.64.0.0/16",
                               "--node-cidr-prefix", "20", "--lease-ttl", "3s"});
  REQUIRE(config.ok());
  CHECK(config->cluster.enabled());
  CHECK(config->cluster.etcd_endpoints.size() == 2);
  CHECK(config->cluster.node_cidr_prefix == 20);
  CHECK(config->cluster.lease_ttl == std::chrono::seconds(3));
  CHECK_FALSE(config->node_cidr_set);

  CHECK(ErrorOf({"--etcd", "http://e:2379", "--node-cidr", "10.1.0.0/24"}).find("--node-address") !=
        std::string::npos);
  CHECK(ErrorOf({"--etcd", "http://e:2379", "--node-address", "10.0.0.1"}).find("--cluster-cidr") !=
        std::string::npos);
  CHECK(ErrorOf({"--node-address", "10.0.0.1"}).find("add --etcd") != std::string::npos);
  CHECK(ErrorOf({"--node-cidr-prefix", "33"}).find("--node-cidr-prefix") != std::string::npos);
  CHECK(ErrorOf({"--lease-ttl", "1s"}).find("--lease-ttl") != std::string::npos);
  CHECK(ErrorOf({"--etcd-prefix", "/x"}).find("end with /") != std::string::npos);
  CHECK(ErrorOf({"--etcd", "http://e:2379", "--node-address", "10.0.0.1", "--node-cidr",
                 "10.1.0.0/24", "--node-name", "Bad_Name"})
            .find("--node-name") != std::string::npos);
}

TEST_CASE("Config: proxy timeouts and limits take durations and counts; 0 turns one off") {
  auto config = ParseRunFlags(
      {"--hbone-preface-timeout", "2s", "--stream-stall-timeout", "0",
       "--max-hbone-connections-per-peer", "8", "--max-plaintext-connections-per-peer", "9",
       "--plaintext-idle-timeout", "90s", "--max-plaintext-address-sockets", "0"});
  REQUIRE(config.ok());
  CHECK(config->max_plaintext_address_sockets == 0);
  CHECK(config->proxy.plaintext.max_connections_per_peer == 9);
  CHECK(config->proxy.inbound.plaintext_idle_timeout_ms == 90'000);
  CHECK(config->proxy.hbone.preface_timeout_ms == 2000);
  CHECK(config->proxy.hbone.stream_stall_timeout_ms == 0);
  CHECK(config->proxy.hbone.max_connections_per_peer == 8);
  CHECK(config->proxy.hbone.handshake_timeout_ms == proxy::kDefaultHandshakeTimeoutMs);
  CHECK(ErrorOf({"--hbone-handshake-timeout", "0"}).find("must be > 0") != std::string::npos);
  CHECK(ErrorOf({"--max-hbone-streams-per-connection", "many"}).find("expected a number") !=
        std::string::npos);
}

TEST_CASE("Config: a flag that several proxy parts share reaches every one of them") {
  auto config =
      ParseRunFlags({"--write-stall-timeout", "7s", "--hbone-handshake-timeout", "3s",
                     "--max-unauthenticated-connections", "11", "--hbone-idle-timeout", "2m"});
  REQUIRE(config.ok());
  const proxy::ProxyConfig& p = config->proxy;
  CHECK(p.hbone.write_stall_timeout_ms == 7000);
  CHECK(p.outbound.write_stall_timeout_ms == 7000);
  CHECK(p.plaintext.write_stall_timeout_ms == 7000);
  CHECK(p.hbone.handshake_timeout_ms == 3000);
  CHECK(p.pool.handshake_timeout_ms == 3000);
  CHECK(p.hbone.max_unauthenticated_connections == 11);
  CHECK(p.outbound.max_unauthenticated_connections == 11);
  CHECK(p.pool.idle_timeout_ms == 120'000);

  // The node's defaults where a part alone leaves a limit off.
  auto defaults = ParseRunFlags({});
  REQUIRE(defaults.ok());
  CHECK(defaults->proxy.plaintext.write_stall_timeout_ms == proxy::kDefaultWriteStallTimeoutMs);
  CHECK(defaults->proxy.plaintext.max_connections_per_peer == proxy::kDefaultMaxConnectionsPerPeer);
  CHECK(defaults->proxy.outbound.max_unauthenticated_connections ==
        proxy::DefaultMaxUnauthenticatedConnections());
}

TEST_CASE("Config: admission caps, the SVID cache bound and the inbound idle timeout") {
  auto config =
      ParseRunFlags({"--max-objects", "10", "--max-replicas", "0", "--max-apply-objects", "5",
                     "--svid-cache-size", "7", "--hbone-server-idle-timeout", "90s"});
  REQUIRE(config.ok());
  CHECK(config->limits.max_objects == 10);
  CHECK(config->limits.max_replicas == 0);  // off
  CHECK(config->limits.max_apply_objects == 5);
  CHECK(config->svid_cache_size == 7);
  CHECK(config->proxy.hbone.idle_timeout_ms == 90'000);

  auto defaults = ParseRunFlags({});
  REQUIRE(defaults.ok());
  CHECK(defaults->limits.max_objects == 2'000'000);
  CHECK(defaults->svid_cache_size == 100'000);
  CHECK(defaults->proxy.hbone.idle_timeout_ms == 300'000);

  CHECK(ErrorOf({"--svid-cache-size", "0"}).find("--svid-cache-size: must be at least 1") !=
        std::string::npos);
  CHECK(ErrorOf({"--max-replicas", "-1"}).find("--max-replicas") != std::string::npos);
  CHECK(ErrorOf({"--hbone-server-idle-timeout", "soon"}).find("--hbone-server-idle-timeout") !=
        std::string::npos);
}

TEST_CASE("Config: --workers defaults to one per core; 0 keeps the proxy on the main loop") {
  auto defaults = ParseRunFlags({});
  REQUIRE(defaults.ok());
  CHECK(defaults->workers == uv_available_parallelism());
  CHECK(defaults->workers >= 1);
  auto none = ParseRunFlags({"--workers", "0"});
  REQUIRE(none.ok());
  CHECK(none->workers == 0);
  CHECK(ErrorOf({"--workers", "257"}).find("--workers: at most 256") != std::string::npos);
  CHECK(ErrorOf({"--workers", "two"}).find("--workers: expected a number") != std::string::npos);
}

TEST_CASE("Config: no flags means one node on embedded defaults") {
  auto config = ParseRunFlags({});
  REQUIRE(config.ok());
  CHECK_FALSE(config->cluster.enabled());
  CHECK(config->node_cidr == "127.64.0.0/10");
  CHECK_FALSE(config->node_name.empty());
}

}  // namespace
}  // namespace podless::runtime
