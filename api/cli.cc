#include "api/cli.h"

#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <optional>

#include "api/ca_init_command.h"
#include "api/grpc_client.h"
#include "api/manifest_files.h"
#include "api/model_convert.h"
#include "api/output_format.h"
#include "api/run_command.h"
#include "podless/v1/runtime.pb.h"

namespace podless::api {
namespace {

using namespace std::chrono_literals;

constexpr char kUsage[] =
    "usage: podless [--socket PATH] COMMAND [args]\n"
    "\n"
    "Commands:\n"
    "  run [flags]                       run the node agent (podless run --help)\n"
    "  apply -f FILE|DIR|- [--dry-run]   create or update the objects of manifests, atomically\n"
    "  delete -f FILE|DIR|-              delete the objects a manifest declares\n"
    "  delete KIND NAME [-n NS]          delete one object\n"
    "  get KIND [NAME] [-n NS|-A] [-o wide|yaml|json]\n"
    "                                    list objects (KIND: workloads, services, policies)\n"
    "  get nodes [-o wide]               the cluster's nodes (this one alone outside a cluster)\n"
    "  describe KIND NAME [-n NS]        show one object in detail\n"
    "  watch [KIND] [-n NS]              stream changes (the current state first)\n"
    "  cert REPLICA [-n NS]              print a replica's X.509-SVID chain (issues it if needed)\n"
    "  credentials REPLICA [-n NS]       outbound proxy settings of a replica (HTTP_PROXY=...)\n"
    "  ca show|export                    the trust bundle: a summary, or the PEM\n"
    "  ca init --etcd URL --out DIR      create a cluster's root CA (see podless ca init --help)\n"
    "  logs WORKLOAD [-n NS] [--replica N] [-f] [--tail N] [--previous]\n"
    "                                    output of an exec workload's process\n"
    "\n"
    "The API socket is --socket, else $PODLESS_SOCKET, else ./podless-state/api.sock.\n";

constexpr auto kCallTimeout = 30s;
const std::string kMethod = "/podless.v1.Runtime/";

int Fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

// A change that ran out of time may still be made: the agent goes on with
// an apply or delete it has started, so say so rather than only "timed out".
int FailChange(const std::string& verb, const Error& error) {
  if (error.code != ErrorCode::kDeadlineExceeded) return Fail(error.message);
  return Fail(verb + ": the agent did not answer within " +
              std::to_string(std::chrono::seconds(kCallTimeout).count()) + " s (" + error.message +
              "); the " + verb + " may or may not have taken effect: check with `podless get`");
}

int Usage(const std::string& problem) {
  std::fprintf(stderr, "error: %s\n\n%s", problem.c_str(), kUsage);
  return 2;
}

// The flags every client verb shares, and its positional arguments.
struct ClientArgs {
  std::vector<std::string> positional;
  std::vector<std::string> files;  // -f
  std::string ns;                  // -n
  bool all_namespaces = false;     // -A
  std::string output;              // -o
  bool dry_run = false;
  bool ignore_not_found = false;
};

Result<ClientArgs> ParseClientArgs(const std::vector<std::string>& args) {
  ClientArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](const char* flag) -> Result<std::string> {
      if (i + 1 >= args.size()) {
        return MakeError(ErrorCode::kInvalidArgument, std::string(flag) + ": missing value");
      }
      return args[++i];
    };
    if (arg == "-f" || arg == "--filename") {
      auto v = value("-f");
      if (!v) return v.error();
      out.files.push_back(*v);
    } else if (arg == "-n" || arg == "--namespace") {
      auto v = value("-n");
      if (!v) return v.error();
      out.ns = *v;
    } else if (arg == "-o" || arg == "--output") {
      auto v = value("-o");
      if (!v) return v.error();
      out.output = *v;
    } else if (arg.rfind("-o", 0) == 0 && arg.size() > 2 && arg[2] != '-') {
      out.output = arg.substr(2);
    } else if (arg.rfind("--output=", 0) == 0) {
      out.output = arg.substr(9);
    } else if (arg.rfind("--namespace=", 0) == 0) {
      out.ns = arg.substr(12);
    } else if (arg == "-A" || arg == "--all-namespaces") {
      out.all_namespaces = true;
    } else if (arg == "--dry-run") {
      out.dry_run = true;
    } else if (arg == "--ignore-not-found") {
      out.ignore_not_found = true;
    } else if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
      return MakeError(ErrorCode::kInvalidArgument, "unknown flag " + arg);
    } else {
      out.positional.push_back(arg);
    }
  }
  return out;
}

Result<v1::Kind> ParseKind(const std::string& word) {
  if (word == "workloads" || word == "workload" || word == "wl") return v1::WORKLOAD;
  if (word == "services" || word == "service" || word == "svc") return v1::SERVICE;
  if (word == "policies" || word == "policy" || word == "authorizationpolicies" ||
      word == "authorizationpolicy" || word == "ap") {
    return v1::AUTHORIZATION_POLICY;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown kind \"" + word + "\" (workloads, services or policies)");
}

std::string KindWord(v1::Kind kind) {
  switch (kind) {
    case v1::WORKLOAD:
      return "workload";
    case v1::SERVICE:
      return "service";
    case v1::AUTHORIZATION_POLICY:
      return "authorizationpolicy";
    default:
      return "object";
  }
}

void PrintResults(const google::protobuf::RepeatedPtrField<v1::ApplyResult>& results,
                  bool dry_run) {
  for (const auto& result : results) {
    std::string line = KindWord(result.ref().kind()) + "/" + result.ref().name();
    if (result.ref().namespace_() != "default") line += " -n " + result.ref().namespace_();
    line += " " + result.action();
    if (dry_run) line += " (dry run)";
    std::printf("%s\n", line.c_str());
    // As kubectl prints the API server's warnings: on stderr, one a line.
    for (const auto& warning : result.warnings()) {
      std::fprintf(stderr, "Warning: %s/%s: %s\n", KindWord(result.ref().kind()).c_str(),
                   result.ref().name().c_str(), warning.c_str());
    }
  }
}

class Cli {
 public:
  explicit Cli(std::string socket) : socket_(std::move(socket)) {}

  int Run(const std::string& verb, const ClientArgs& args) {
    if (verb == "apply") return Apply(args);
    if (verb == "delete") return Delete(args);
    if (verb == "get") return Get(args);
    if (verb == "describe") return DescribeCmd(args);
    if (verb == "watch") return Watch(args);
    if (verb == "cert") return Cert(args);
    if (verb == "credentials") return Credentials(args);
    if (verb == "ca") return Ca(args);
    return Usage("unknown command \"" + verb + "\"");
  }

  // `logs` has kubectl's flags (-f is --follow here, not --filename).
  int Logs(const std::vector<std::string>& args) {
    v1::LogsRequest request;
    std::vector<std::string> positional;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      auto number = [&](int64_t* out) -> bool {
        if (i + 1 >= args.size()) return false;
        const std::string& text = args[++i];
        char* end = nullptr;
        long long value = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || *end != '\0' || value < 0) return false;
        *out = value;
        return true;
      };
      int64_t value = 0;
      if (arg == "-f" || arg == "--follow") {
        request.set_follow(true);
      } else if (arg == "--previous" || arg == "-p") {
        request.set_previous(true);
      } else if (arg == "--replica" || arg == "-r") {
        if (!number(&value) || value > UINT32_MAX) {
          return Usage("--replica needs a replica ordinal (0, 1, ...)");
        }
        request.mutable_replica()->set_value(static_cast<uint32_t>(value));
      } else if (arg == "--tail") {
        if (!number(&value)) return Usage("--tail needs a number of lines (0 or more)");
        request.mutable_tail_lines()->set_value(value);
      } else if (arg == "-n" || arg == "--namespace") {
        if (i + 1 >= args.size()) return Usage("-n: missing value");
        request.set_namespace_(args[++i]);
      } else if (arg.rfind("--namespace=", 0) == 0) {
        request.set_namespace_(arg.substr(12));
      } else if (arg.size() > 1 && arg[0] == '-') {
        return Usage("logs: unknown flag " + arg);
      } else {
        positional.push_back(arg);
      }
    }
    if (positional.size() != 1) return Usage("logs needs one WORKLOAD");
    request.set_workload(positional[0]);
    auto client = Client();
    if (!client) return Fail(client.error().message);
    Status status = (*client)->ServerStream<v1::LogsRequest, v1::LogChunk>(
        kMethod + "Logs", request,
        [](const v1::LogChunk& chunk) {
          std::fwrite(chunk.data().data(), 1, chunk.data().size(), stdout);
          std::fflush(stdout);
          return true;
        },
        request.follow() ? std::chrono::milliseconds(std::chrono::hours(24 * 365))
                         : std::chrono::milliseconds(kCallTimeout));
    if (!status) return Fail(status.error().message);
    return 0;
  }

 private:
  Result<GrpcClient*> Client() {
    if (!client_) {
      auto client = GrpcClient::Connect(socket_, 5000ms);
      if (!client) return client.error();
      client_ = std::move(*client);
    }
    return client_.get();
  }

  template <typename Req, typename Resp>
  Result<Resp> Call(const std::string& method, const Req& request) {
    auto client = Client();
    if (!client) return client.error();
    return (*client)->Call<Req, Resp>(kMethod + method, request, kCallTimeout);
  }

  // Reads -f files into a request's `files`.
  template <typename Req>
  Status AddFiles(const ClientArgs& args, Req& request) {
    for (const std::string& path : args.files) {
      auto files = ReadManifestFiles(path);
      if (!files) return files.error();
      for (const auto& file : *files) {
        v1::ManifestFile* out = request.add_files();
        out->set_name(file.name);
        out->set_text(file.text);
      }
    }
    return {};
  }

  int Apply(const ClientArgs& args) {
    if (args.files.empty()) return Usage("apply needs -f FILE|DIR|-");
    v1::ApplyRequest request;
    request.set_dry_run(args.dry_run);
    if (Status s = AddFiles(args, request); !s) return Fail(s.error().message);
    auto response = Call<v1::ApplyRequest, v1::ApplyResponse>("Apply", request);
    if (!response) return FailChange("apply", response.error());
    PrintResults(response->results(), args.dry_run);
    return 0;
  }

  int Delete(const ClientArgs& args) {
    v1::DeleteRequest request;
    request.set_ignore_not_found(args.ignore_not_found);
    if (!args.files.empty()) {
      if (Status s = AddFiles(args, request); !s) return Fail(s.error().message);
    } else {
      if (args.positional.size() < 2) return Usage("delete needs -f FILE or KIND NAME...");
      auto kind = ParseKind(args.positional[0]);
      if (!kind) return Fail(kind.error().message);
      for (size_t i = 1; i < args.positional.size(); ++i) {
        v1::ObjectRef* ref = request.add_refs();
        ref->set_kind(*kind);
        ref->set_namespace_(args.ns);
        ref->set_name(args.positional[i]);
      }
    }
    auto response = Call<v1::DeleteRequest, v1::DeleteResponse>("Delete", request);
    if (!response) return FailChange("delete", response.error());
    PrintResults(response->results(), false);
    return 0;
  }

  int GetNodes(const ClientArgs& args) {
    auto format = ParseOutputFormat(args.output);
    if (!format) return Fail(format.error().message);
    auto nodes = Call<v1::ListNodesRequest, v1::ListNodesResponse>("ListNodes", {});
    if (!nodes) return Fail(nodes.error().message);
    std::fputs(NodesTable(*nodes, *format == OutputFormat::kWide, time(nullptr)).c_str(), stdout);
    return 0;
  }

  int Get(const ClientArgs& args) {
    if (args.positional.empty()) {
      return Usage("get needs a KIND (workloads, services, policies, nodes)");
    }
    const std::string& word = args.positional[0];
    if (word == "nodes" || word == "node" || word == "no") return GetNodes(args);
    auto kind = ParseKind(args.positional[0]);
    if (!kind) return Fail(kind.error().message);
    auto format = ParseOutputFormat(args.output);
    if (!format) return Fail(format.error().message);
    std::vector<v1::Object> objects;
    const bool single = args.positional.size() > 1;
    if (single) {
      for (size_t i = 1; i < args.positional.size(); ++i) {
        v1::GetRequest request;
        request.mutable_ref()->set_kind(*kind);
        request.mutable_ref()->set_namespace_(args.ns);
        request.mutable_ref()->set_name(args.positional[i]);
        auto object = Call<v1::GetRequest, v1::Object>("Get", request);
        if (!object) return Fail(object.error().message);
        objects.push_back(std::move(*object));
      }
    } else {
      v1::ListRequest request;
      request.set_kind(*kind);
      request.set_namespace_(args.all_namespaces ? "" : (args.ns.empty() ? "default" : args.ns));
      auto list = Call<v1::ListRequest, v1::ListResponse>("List", request);
      if (!list) return Fail(list.error().message);
      objects.assign(list->objects().begin(), list->objects().end());
    }
    if (objects.size() == 1 && single &&
        (*format == OutputFormat::kYaml || *format == OutputFormat::kJson)) {
      std::fputs(FormatObject(objects[0], *format).c_str(), stdout);
      return 0;
    }
    if (objects.empty() && (*format == OutputFormat::kTable || *format == OutputFormat::kWide)) {
      std::fprintf(
          stderr, "No %ss found%s.\n", KindWord(*kind).c_str(),
          args.all_namespaces
              ? ""
              : (" in namespace " + (args.ns.empty() ? std::string("default") : args.ns)).c_str());
      return 0;
    }
    std::fputs(FormatList(objects, *kind, *format, args.all_namespaces).c_str(), stdout);
    return 0;
  }

  int DescribeCmd(const ClientArgs& args) {
    if (args.positional.size() < 2) return Usage("describe needs KIND NAME");
    auto kind = ParseKind(args.positional[0]);
    if (!kind) return Fail(kind.error().message);
    v1::GetRequest request;
    request.mutable_ref()->set_kind(*kind);
    request.mutable_ref()->set_namespace_(args.ns);
    request.mutable_ref()->set_name(args.positional[1]);
    auto object = Call<v1::GetRequest, v1::Object>("Get", request);
    if (!object) return Fail(object.error().message);
    std::fputs(Describe(*object).c_str(), stdout);
    return 0;
  }

  int Watch(const ClientArgs& args) {
    v1::WatchRequest request;
    if (!args.positional.empty()) {
      auto kind = ParseKind(args.positional[0]);
      if (!kind) return Fail(kind.error().message);
      request.add_kinds(*kind);
    }
    request.set_namespace_(args.all_namespaces ? "" : args.ns);
    auto client = Client();
    if (!client) return Fail(client.error().message);
    Status status = (*client)->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kMethod + "Watch", request,
        [](const v1::WatchEvent& event) {
          if (event.type() == v1::WatchEvent::SYNCED) {
            std::printf("SYNCED\n");
          } else {
            const v1::Object& o = event.object();
            std::string kind = o.has_workload()  ? "workload"
                               : o.has_service() ? "service"
                                                 : "authorizationpolicy";
            const v1::ObjectMeta& meta = o.has_workload()  ? o.workload().metadata()
                                         : o.has_service() ? o.service().metadata()
                                                           : o.authorization_policy().metadata();
            std::printf("%s %s/%s/%s\n", v1::WatchEvent::Type_Name(event.type()).c_str(),
                        kind.c_str(), meta.namespace_().c_str(), meta.name().c_str());
          }
          std::fflush(stdout);
          return true;
        },
        std::chrono::hours(24 * 365));
    if (!status) return Fail(status.error().message);
    return 0;
  }

  int Cert(const ClientArgs& args) {
    if (args.positional.size() != 1) return Usage("cert needs one REPLICA (e.g. web-0)");
    v1::GetCertificateRequest request;
    request.set_namespace_(args.ns);
    request.set_replica(args.positional[0]);
    auto cert = Call<v1::GetCertificateRequest, v1::Certificate>("GetCertificate", request);
    if (!cert) return Fail(cert.error().message);
    std::fputs(cert->chain_pem().c_str(), stdout);
    return 0;
  }

  // Prints shell assignments a process can be started with.
  int Credentials(const ClientArgs& args) {
    if (args.positional.size() != 1) return Usage("credentials needs one REPLICA (e.g. web-0)");
    v1::GetCredentialsRequest request;
    request.set_namespace_(args.ns);
    request.set_replica(args.positional[0]);
    auto creds = Call<v1::GetCredentialsRequest, v1::Credentials>("GetCredentials", request);
    if (!creds) return Fail(creds.error().message);
    std::printf("HTTP_PROXY=%s\nHTTPS_PROXY=%s\nALL_PROXY=%s\n", creds->http_proxy().c_str(),
                creds->http_proxy().c_str(), creds->all_proxy().c_str());
    return 0;
  }

  int Ca(const ClientArgs& args) {
    if (args.positional.size() != 1 ||
        (args.positional[0] != "show" && args.positional[0] != "export")) {
      return Usage("ca needs show or export");
    }
    auto bundle = Call<v1::GetCaBundleRequest, v1::CaBundle>("GetCaBundle", {});
    if (!bundle) return Fail(bundle.error().message);
    if (args.positional[0] == "export") {
      std::fputs(bundle->pem().c_str(), stdout);
      return 0;
    }
    std::printf("Trust domain:  %s\n", bundle->trust_domain().c_str());
    bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(bundle->pem().data(), bundle->pem().size()));
    while (bssl::UniquePtr<X509> cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
      char subject[512];
      X509_NAME_oneline(X509_get_subject_name(cert.get()), subject, sizeof(subject));
      uint8_t digest[SHA256_DIGEST_LENGTH];
      unsigned digest_len = 0;
      X509_digest(cert.get(), EVP_sha256(), digest, &digest_len);
      std::string fingerprint;
      for (unsigned i = 0; i < digest_len; ++i) {
        char hex[4];
        std::snprintf(hex, sizeof(hex), i ? ":%02X" : "%02X", digest[i]);
        fingerprint += hex;
      }
      auto time_text = [](const ASN1_TIME* t) {
        bssl::UniquePtr<BIO> out(BIO_new(BIO_s_mem()));
        ASN1_TIME_print(out.get(), t);
        const uint8_t* data = nullptr;
        size_t len = 0;
        BIO_mem_contents(out.get(), &data, &len);
        return std::string(reinterpret_cast<const char*>(data), len);
      };
      std::printf("Root:          %s\n", subject);
      std::printf("  Not before:  %s\n", time_text(X509_get0_notBefore(cert.get())).c_str());
      std::printf("  Not after:   %s\n", time_text(X509_get0_notAfter(cert.get())).c_str());
      std::printf("  SHA-256:     %s\n", fingerprint.c_str());
    }
    return 0;
  }

  std::string socket_;
  GrpcClientPtr client_;
};

}  // namespace

int CliMain(const std::vector<std::string>& all_args) {
  std::vector<std::string> args = all_args;
  std::string socket;
  if (const char* env = std::getenv("PODLESS_SOCKET"); env != nullptr && *env != '\0') {
    socket = env;
  }
  // Global flags come before the verb.
  while (!args.empty() && args[0].rfind("-", 0) == 0) {
    if (args[0] == "-h" || args[0] == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if ((args[0] == "--socket" || args[0] == "--state-dir") && args.size() >= 2) {
      socket = args[0] == "--socket" ? args[1] : args[1] + "/api.sock";
      args.erase(args.begin(), args.begin() + 2);
    } else {
      return Usage("unknown flag " + args[0]);
    }
  }
  if (args.empty()) return Usage("no command");
  const std::string verb = args[0];
  args.erase(args.begin());
  if (verb == "run") return RunCommand(args);
  if (verb == "ca" && !args.empty() && args[0] == "init") {
    return CaInitCommand(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  if (verb == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (socket.empty()) socket = "./podless-state/api.sock";
  if (verb == "logs") return Cli(socket).Logs(args);
  auto parsed = ParseClientArgs(args);
  if (!parsed) return Usage(parsed.error().message);
  return Cli(socket).Run(verb, *parsed);
}

}  // namespace podless::api
