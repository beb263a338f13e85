#include "api/kube/kubeconfig.h"

#include <doctest.h>
#include <openssl/base64.h>
#include <yaml-cpp/yaml.h>

#include <string>

namespace podless::api::kube {
namespace {

std::string Unbase64(const std::string& text) {
  size_t length = 0;
  REQUIRE(EVP_DecodedLength(&length, text.size()));
  std::string out(length, '\0');
  REQUIRE(EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &length, out.size(),
                           reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  out.resize(length);
  return out;
}

TEST_CASE("Kubeconfig: one cluster, user and context, current, with the PEM data inline") {
  YAML::Node config =
      YAML::Load(KubeconfigYaml("127.0.0.1:6443", "CA PEM\n", "CERT PEM\n", "KEY PEM\n"));
  CHECK(config["apiVersion"].as<std::string>() == "v1");
  CHECK(config["kind"].as<std::string>() == "Config");
  CHECK(config["current-context"].as<std::string>() == "podless");
  YAML::Node cluster = config["clusters"][0];
  CHECK(cluster["name"].as<std::string>() == "podless");
  CHECK(cluster["cluster"]["server"].as<std::string>() == "https://127.0.0.1:6443");
  CHECK(Unbase64(cluster["cluster"]["certificate-authority-data"].as<std::string>()) == "CA PEM\n");
  YAML::Node user = config["users"][0];
  CHECK(user["name"].as<std::string>() == "podless-admin");
  CHECK(Unbase64(user["user"]["client-certificate-data"].as<std::string>()) == "CERT PEM\n");
  CHECK(Unbase64(user["user"]["client-key-data"].as<std::string>()) == "KEY PEM\n");
  YAML::Node context = config["contexts"][0];
  CHECK(context["context"]["cluster"].as<std::string>() == "podless");
  CHECK(context["context"]["user"].as<std::string>() == "podless-admin");
}

TEST_CASE("Kubeconfig: a server on every address is reached on loopback") {
  YAML::Node config = YAML::Load(KubeconfigYaml("0.0.0.0:7443", "a", "b", "c"));
  CHECK(config["clusters"][0]["cluster"]["server"].as<std::string>() == "https://127.0.0.1:7443");
  config = YAML::Load(KubeconfigYaml("localhost:6443", "a", "b", "c"));
  CHECK(config["clusters"][0]["cluster"]["server"].as<std::string>() == "https://localhost:6443");
}

}  // namespace
}  // namespace podless::api::kube
