#include "api/cli/cli.h"

#include <fcntl.h>
#include <google/protobuf/wrappers.pb.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string_view>

#include "api/cli/ca_init_command.h"
#include "api/cli/cli_commands.h"
#include "api/cli/cli_flags.h"
#include "api/cli/grpc_client.h"
#include "api/label_selector.h"
#include "api/manifest_files.h"
#include "api/model_convert.h"
#include "api/output_format.h"
#include "api/run_command.h"
#include "podless/v1/runtime.pb.h"
#include "workloads/manifest_writer.h"

namespace podless::api {
namespace {

using namespace std::chrono_literals;

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

// A usage mistake: the problem and the command's usage line, not every
// command's (kubectl's manner). Exit code 2.
int Usage(const CommandSpec& command, const std::string& problem) {
  std::fputs(CommandUsageError(command, problem).c_str(), stderr);
  return 2;
}

Result<v1::Kind> ParseKind(const std::string& word) {
  if (word == "workloads" || word == "workload" || word == "wl") return v1::WORKLOAD;
  if (word == "services" || word == "service" || word == "svc") return v1::SERVICE;
  if (word == "policies" || word == "policy" || word == "authorizationpolicies" ||
      word == "authorizationpolicy" || word == "ap") {
    return v1::AUTHORIZATION_POLICY;
  }
  // The Kubernetes kinds a Workload is applied as (Deployment, ...) list as workloads.
  for (const char* w : {"deployments", "deployment", "deploy", "statefulsets", "statefulset", "sts",
                        "replicasets", "replicaset", "rs", "daemonsets", "daemonset", "ds"}) {
    if (word == w) return v1::WORKLOAD;
  }
  if (word == "namespaces" || word == "namespace" || word == "ns") return v1::NAMESPACE;
  if (word == "serviceaccounts" || word == "serviceaccount" || word == "sa") {
    return v1::SERVICE_ACCOUNT;
  }
  if (word == "peerauthentications" || word == "peerauthentication" || word == "pa") {
    return v1::PEER_AUTHENTICATION;
  }
  if (word == "workloadentries" || word == "workloadentry" || word == "we") {
    return v1::WORKLOAD_ENTRY;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown kind \"" + word +
                       "\" (workloads, services, policies, namespaces, serviceaccounts, "
                       "peerauthentications or workloadentries)");
}

bool IsReplicasWord(const std::string& word) {
  return word == "replicas" || word == "replica" || word == "pods" || word == "pod" || word == "po";
}

bool IsNodesWord(const std::string& word) {
  return word == "nodes" || word == "node" || word == "no";
}

// "workload/web" or "workload/web -n shop", as apply and delete print objects.
std::string RefText(const v1::ObjectRef& ref) {
  std::string line = KindWord(ref.kind()) + "/" + ref.name();
  if (!ref.namespace_().empty() && ref.namespace_() != "default") {
    line += " -n " + ref.namespace_();
  }
  return line;
}

void PrintResults(const google::protobuf::RepeatedPtrField<v1::ApplyResult>& results,
                  bool dry_run) {
  for (const auto& result : results) {
    std::string line = RefText(result.ref()) + " " + result.action();
    if (dry_run) line += " (dry run)";
    std::printf("%s\n", line.c_str());
    // As kubectl prints the API server's warnings: on stderr, one a line.
    for (const auto& warning : result.warnings()) {
      std::fprintf(stderr, "Warning: %s/%s: %s\n", KindWord(result.ref().kind()).c_str(),
                   result.ref().name().c_str(), warning.c_str());
    }
  }
}

std::map<std::string, std::string> LabelsOf(const v1::Object& object) {
  const auto& labels = MetaOf(object).labels();
  return {labels.begin(), labels.end()};
}

// kubectl's --since: a Go duration of whole seconds or more ("30s", "5m",
// "1h30m"), rounded up to seconds, at least 1.
Result<int64_t> ParseDurationSeconds(const std::string& text) {
  auto bad = [&]() {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + text + "\" is not a duration (e.g. 30s, 5m, 1h30m)");
  };
  if (text.empty()) return bad();
  double total = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t digits = at;
    while (digits < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.')) {
      ++digits;
    }
    if (digits == at) return bad();
    const double number = std::strtod(text.substr(at, digits - at).c_str(), nullptr);
    size_t unit_end = digits;
    while (unit_end < text.size() && std::isalpha(static_cast<unsigned char>(text[unit_end]))) {
      ++unit_end;
    }
    const std::string unit = text.substr(digits, unit_end - digits);
    double scale = 0;
    if (unit == "ms") scale = 0.001;
    if (unit == "s") scale = 1;
    if (unit == "m") scale = 60;
    if (unit == "h") scale = 3600;
    if (scale == 0) return bad();
    total += number * scale;
    at = unit_end;
  }
  if (total <= 0 || total > 1e12) return bad();
  return static_cast<int64_t>(std::ceil(total));
}

// Splits logs' output into lines, each prefixed, for several replicas at once.
class PrefixedLines {
 public:
  explicit PrefixedLines(std::string prefix) : prefix_(std::move(prefix)) {}
  // Whole lines of `data` (and what came before) with the prefix; keeps an
  // unfinished last line for later.
  std::string Add(std::string_view data) {
    std::string out;
    for (char c : data) {
      pending_ += c;
      if (c == '\n') {
        out += prefix_ + pending_;
        pending_.clear();
      }
    }
    return out;
  }
  // What is left, as a last line.
  std::string Finish() {
    if (pending_.empty()) return "";
    std::string out = prefix_ + pending_ + "\n";
    pending_.clear();
    return out;
  }

 private:
  std::string prefix_;
  std::string pending_;
};

class Cli {
 public:
  explicit Cli(std::string socket) : socket_(std::move(socket)) {}

  int Run(const CommandSpec& command, const ParsedFlags& args) {
    const std::string_view verb = command.name;
    if (verb == "apply") return Apply(command, args);
    if (verb == "delete") return Delete(command, args);
    if (verb == "get") return Get(command, args);
    if (verb == "describe") return DescribeCmd(command, args);
    if (verb == "scale") return Scale(command, args);
    if (verb == "logs") return Logs(command, args);
    if (verb == "watch") return Watch(command, args);
    if (verb == "cert") return Cert(command, args);
    if (verb == "credentials") return Credentials(command, args);
    if (verb == "ca") return Ca(command, args);
    if (verb == "kubeconfig") return Kubeconfig(command, args);
    return Usage(command, "not a client command");
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
  Status AddFiles(const ParsedFlags& args, Req& request) {
    for (const std::string& path : args.All("--filename")) {
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

  // The objects of `kind` in the namespace the flags name (every namespace
  // with -A) whose labels match -l.
  Result<std::vector<v1::Object>> ListMatching(v1::Kind kind, const ParsedFlags& args) {
    auto selector = LabelSelector::Parse(args.Get("--selector"));
    if (!selector) return selector.error();
    v1::ListRequest request;
    request.set_kind(kind);
    request.set_namespace_(args.On("--all-namespaces") ? "" : NamespaceFlag(args));
    auto list = Call<v1::ListRequest, v1::ListResponse>("List", request);
    if (!list) return list.error();
    std::vector<v1::Object> out;
    for (const v1::Object& object : list->objects()) {
      if (selector->Matches(LabelsOf(object))) out.push_back(object);
    }
    return out;
  }

  static std::string NamespaceFlag(const ParsedFlags& args) {
    std::string ns = args.Get("--namespace");
    return ns.empty() ? "default" : ns;
  }

  int Apply(const CommandSpec& command, const ParsedFlags& args) {
    if (!args.Has("--filename")) return Usage(command, "apply needs -f FILE|DIR|-");
    if (!args.positional.empty()) {
      return Usage(command, "apply takes no arguments besides its flags (got \"" +
                                args.positional[0] + "\")");
    }
    // kubectl's --dry-run=client|server|none: the agent validates all a client
    // would, so client and server both mean the agent's dry run.
    const bool dry_run = args.On("--dry-run");
    v1::ApplyRequest request;
    request.set_dry_run(dry_run);
    request.set_skip_unsupported(args.On("--skip-unsupported"));
    if (Status s = AddFiles(args, request); !s) return Fail(s.error().message);
    auto response = Call<v1::ApplyRequest, v1::ApplyResponse>("Apply", request);
    if (!response) return FailChange("apply", response.error());
    for (const v1::SkippedDocument& skipped : response->skipped()) {
      std::string kind = skipped.kind();
      for (char& ch : kind) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::printf("%s/%s skipped (%s %s is not run by podless; %s)\n", kind.c_str(),
                  skipped.name().empty() ? "<unnamed>" : skipped.name().c_str(),
                  skipped.kind().c_str(), skipped.api_version().c_str(), skipped.where().c_str());
    }
    for (const std::string& ns : response->created_namespaces()) {
      std::printf("namespace/%s created%s\n", ns.c_str(), dry_run ? " (dry run)" : "");
    }
    PrintResults(response->results(), dry_run);
    return 0;
  }

  int Delete(const CommandSpec& command, const ParsedFlags& args) {
    v1::DeleteRequest request;
    // Missing objects come back as "unchanged": each is reported below, and
    // everything that exists is deleted (kubectl's behaviour).
    request.set_ignore_not_found(true);
    const bool by_selector = args.Has("--selector");
    if (args.Has("--filename")) {
      if (!args.positional.empty() || by_selector) {
        return Usage(command, "delete takes -f, or KIND NAME..., or KIND -l SELECTOR: not two");
      }
      if (Status s = AddFiles(args, request); !s) return Fail(s.error().message);
    } else if (by_selector) {
      if (args.positional.size() != 1) {
        return Usage(command, "delete -l needs one KIND and no NAME");
      }
      auto kind = ParseKind(args.positional[0]);
      if (!kind) return Usage(command, kind.error().message);
      auto objects = ListMatching(*kind, args);
      if (!objects) return Fail(objects.error().message);
      if (objects->empty()) {
        std::fprintf(stderr, "No resources found\n");
        return 0;
      }
      for (const v1::Object& object : *objects) {
        v1::ObjectRef* ref = request.add_refs();
        ref->set_kind(*kind);
        ref->set_namespace_(MetaOf(object).namespace_());
        ref->set_name(MetaOf(object).name());
      }
    } else {
      if (args.positional.size() < 2) {
        return Usage(command, "delete needs -f FILE, KIND NAME... or KIND -l SELECTOR");
      }
      auto kind = ParseKind(args.positional[0]);
      if (!kind) return Usage(command, kind.error().message);
      for (size_t i = 1; i < args.positional.size(); ++i) {
        v1::ObjectRef* ref = request.add_refs();
        ref->set_kind(*kind);
        ref->set_namespace_(args.Get("--namespace"));
        ref->set_name(args.positional[i]);
      }
    }
    auto response = Call<v1::DeleteRequest, v1::DeleteResponse>("Delete", request);
    if (!response) return FailChange("delete", response.error());
    const bool ignore_not_found = args.On("--ignore-not-found");
    int missing = 0;
    for (const v1::ApplyResult& result : response->results()) {
      if (result.action() == "deleted") {
        std::printf("%s deleted\n", RefText(result.ref()).c_str());
      } else if (!ignore_not_found) {
        ++missing;
        std::fflush(stdout);
        std::fprintf(stderr, "Error from server (NotFound): %s not found\n",
                     RefText(result.ref()).c_str());
      }
    }
    return missing == 0 ? 0 : 1;
  }

  int GetNodes(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.size() > 1) return Usage(command, "get nodes takes no NAME");
    auto format = ParseOutputFormat(args.Get("--output"));
    if (!format) return Usage(command, format.error().message);
    auto nodes = Call<v1::ListNodesRequest, v1::ListNodesResponse>("ListNodes", {});
    if (!nodes) return Fail(nodes.error().message);
    if (*format == OutputFormat::kName) {
      for (const v1::Node& node : nodes->nodes()) std::printf("node/%s\n", node.name().c_str());
      return 0;
    }
    if (*format == OutputFormat::kYaml || *format == OutputFormat::kJson) {
      return Usage(command, "get nodes prints a table (-o wide) or names (-o name)");
    }
    std::fputs(
        NodesTable(*nodes, *format == OutputFormat::kWide, time(nullptr), args.On("--no-headers"))
            .c_str(),
        stdout);
    return 0;
  }

  static ListOptions ListOptionsOf(const ParsedFlags& args) {
    ListOptions options;
    options.all_namespaces = args.On("--all-namespaces");
    options.show_labels = args.On("--show-labels");
    options.no_headers = args.On("--no-headers");
    return options;
  }

  // kubectl's "No resources found in namespace x." on stderr.
  static void NoneFound(const ParsedFlags& args, const std::string& what) {
    if (args.On("--all-namespaces")) {
      std::fprintf(stderr, "No %s found.\n", what.c_str());
    } else {
      std::fprintf(stderr, "No %s found in namespace %s.\n", what.c_str(),
                   NamespaceFlag(args).c_str());
    }
  }

  int GetReplicas(const CommandSpec& command, const ParsedFlags& args, OutputFormat format) {
    // Replicas of the workloads named, or of all (matching -l) in the namespace.
    std::vector<v1::Object> workloads;
    std::vector<std::string> wanted;  // replica names asked for
    if (args.positional.size() > 1) {
      if (args.Has("--selector")) return Usage(command, "give NAMEs or -l, not both");
      for (size_t i = 1; i < args.positional.size(); ++i) {
        const std::string& name = args.positional[i];
        size_t dash = name.rfind('-');
        if (dash == std::string::npos || dash == 0 || dash + 1 == name.size() ||
            name.find_first_not_of("0123456789", dash + 1) != std::string::npos) {
          return Usage(command,
                       "\"" + name + "\" is not a replica name (WORKLOAD-ORDINAL, e.g. web-0)");
        }
        v1::GetRequest request;
        request.mutable_ref()->set_kind(v1::WORKLOAD);
        request.mutable_ref()->set_namespace_(args.Get("--namespace"));
        request.mutable_ref()->set_name(name.substr(0, dash));
        auto object = Call<v1::GetRequest, v1::Object>("Get", request);
        if (!object) return Fail(object.error().message);
        bool found = false;
        for (const v1::Replica& r : object->workload().status().replicas())
          found |= r.name() == name;
        if (!found) return Fail("replica " + name + " not found");
        wanted.push_back(name);
        workloads.push_back(std::move(*object));
      }
      // Only the replicas named.
      for (v1::Object& object : workloads) {
        auto* replicas = object.mutable_workload()->mutable_status()->mutable_replicas();
        for (int i = replicas->size() - 1; i >= 0; --i) {
          if (std::find(wanted.begin(), wanted.end(), replicas->Get(i).name()) == wanted.end()) {
            replicas->DeleteSubrange(i, 1);
          }
        }
      }
    } else {
      auto list = ListMatching(v1::WORKLOAD, args);
      if (!list) return Fail(list.error().message);
      workloads = std::move(*list);
    }
    auto text = FormatReplicas(workloads, format, ListOptionsOf(args), time(nullptr));
    if (!text) return Usage(command, text.error().message);
    if (text->empty()) {
      NoneFound(args, "replicas");
      return 0;
    }
    std::fputs(text->c_str(), stdout);
    return 0;
  }

  int Get(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.empty()) {
      return Usage(command, "get needs a KIND (workloads, services, policies, replicas, nodes)");
    }
    const std::string& word = args.positional[0];
    if (IsNodesWord(word)) return GetNodes(command, args);
    auto format = ParseOutputFormat(args.Get("--output"));
    if (!format) return Usage(command, format.error().message);
    if (args.On("--watch")) return GetWatch(command, args, *format);
    if (IsReplicasWord(word)) return GetReplicas(command, args, *format);
    auto kind = ParseKind(word);
    if (!kind) {
      return Usage(command, "unknown kind \"" + word +
                                "\" (workloads, services, policies, replicas or nodes)");
    }
    std::vector<v1::Object> objects;
    const bool single = args.positional.size() > 1;
    if (single) {
      if (args.Has("--selector")) return Usage(command, "give NAMEs or -l, not both");
      for (size_t i = 1; i < args.positional.size(); ++i) {
        v1::GetRequest request;
        request.mutable_ref()->set_kind(*kind);
        request.mutable_ref()->set_namespace_(args.Get("--namespace"));
        request.mutable_ref()->set_name(args.positional[i]);
        auto object = Call<v1::GetRequest, v1::Object>("Get", request);
        if (!object) return Fail(object.error().message);
        objects.push_back(std::move(*object));
      }
    } else {
      auto list = ListMatching(*kind, args);
      if (!list) return Fail(list.error().message);
      objects = std::move(*list);
    }
    if (objects.size() == 1 && single &&
        (*format == OutputFormat::kYaml || *format == OutputFormat::kJson)) {
      std::fputs(FormatObject(objects[0], *format).c_str(), stdout);
      return 0;
    }
    if (objects.empty() && *format != OutputFormat::kYaml && *format != OutputFormat::kJson) {
      NoneFound(args, KindWord(*kind) + "s");
      return 0;
    }
    std::fputs(FormatList(objects, *kind, *format, ListOptionsOf(args)).c_str(), stdout);
    return 0;
  }

  // get -w: the list as `get` prints it once the agent has sent the current
  // state, then a row (no header) for each object that changes, as kubectl.
  int GetWatch(const CommandSpec& command, const ParsedFlags& args, OutputFormat format) {
    const std::string& word = args.positional[0];
    const bool replicas = IsReplicasWord(word);
    v1::Kind kind = v1::WORKLOAD;
    if (!replicas) {
      auto parsed = ParseKind(word);
      if (!parsed) return Usage(command, parsed.error().message);
      kind = *parsed;
    }
    if (format == OutputFormat::kYaml || format == OutputFormat::kJson) {
      return Usage(command, "get -w prints tables or names (-o wide, -o name)");
    }
    auto selector = LabelSelector::Parse(args.Get("--selector"));
    if (!selector) return Usage(command, selector.error().message);
    std::vector<std::string> names(args.positional.begin() + 1, args.positional.end());
    v1::WatchRequest request;
    request.add_kinds(kind);
    request.set_namespace_(args.On("--all-namespaces") ? "" : NamespaceFlag(args));
    ListOptions options = ListOptionsOf(args);
    std::vector<v1::Object> initial;
    bool synced = false;
    auto wanted = [&](const v1::Object& object) {
      const v1::ObjectMeta& meta = MetaOf(object);
      if (!names.empty() && std::find(names.begin(), names.end(), meta.name()) == names.end()) {
        return false;
      }
      return selector->Matches(LabelsOf(object));
    };
    auto render = [&](const std::vector<v1::Object>& objects) -> std::string {
      if (replicas) {
        auto text = FormatReplicas(objects, format, options, time(nullptr));
        return text ? *text : "";
      }
      return FormatList(objects, kind, format, options);
    };
    auto client = Client();
    if (!client) return Fail(client.error().message);
    Status status = (*client)->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kMethod + "Watch", request,
        [&](const v1::WatchEvent& event) {
          if (event.type() == v1::WatchEvent::SYNCED) {
            synced = true;
            if (initial.empty()) {
              NoneFound(args, replicas ? "replicas" : KindWord(kind) + "s");
            } else {
              std::fputs(render(initial).c_str(), stdout);
            }
            // Later rows come without a header, in the columns of the first.
            options.no_headers = true;
          } else if (wanted(event.object())) {
            if (!synced) {
              initial.push_back(event.object());
            } else {
              std::fputs(render({event.object()}).c_str(), stdout);
            }
          }
          std::fflush(stdout);
          return true;
        },
        std::chrono::hours(24 * 365));
    if (!status) return Fail(status.error().message);
    return 0;
  }

  int DescribeCmd(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.size() != 2) return Usage(command, "describe needs KIND NAME");
    auto kind = ParseKind(args.positional[0]);
    if (!kind) return Usage(command, kind.error().message);
    v1::GetRequest request;
    request.mutable_ref()->set_kind(*kind);
    request.mutable_ref()->set_namespace_(args.Get("--namespace"));
    request.mutable_ref()->set_name(args.positional[1]);
    auto object = Call<v1::GetRequest, v1::Object>("Get", request);
    if (!object) return Fail(object.error().message);
    std::fputs(Describe(*object).c_str(), stdout);
    return 0;
  }

  // A Kubernetes document (a Deployment's) with spec.replicas set to N.
  static Result<std::string> ScaledDocument(const std::string& document, uint32_t replicas) {
    try {
      YAML::Node doc = YAML::Load(document);
      if (!doc.IsMap() || !doc["spec"] || !doc["spec"].IsMap()) {
        return MakeError(ErrorCode::kInternal, "the stored document has no spec to scale");
      }
      doc["spec"]["replicas"] = replicas;
      YAML::Emitter out;
      out << doc;
      return std::string(out.c_str()) + "\n";
    } catch (const YAML::Exception& e) {
      return MakeError(ErrorCode::kInternal, "cannot read the stored document: " + e.msg);
    }
  }

  // scale KIND/NAME --replicas N: the workload as it is, applied with N.
  int Scale(const CommandSpec& command, const ParsedFlags& args) {
    std::string kind_word;
    std::string name;
    if (args.positional.size() == 1 && args.positional[0].find('/') != std::string::npos) {
      kind_word = args.positional[0].substr(0, args.positional[0].find('/'));
      name = args.positional[0].substr(args.positional[0].find('/') + 1);
    } else if (args.positional.size() == 2) {
      kind_word = args.positional[0];
      name = args.positional[1];
    } else {
      return Usage(command, "scale needs KIND/NAME (e.g. workload/web)");
    }
    auto kind = ParseKind(kind_word);
    if (!kind || *kind != v1::WORKLOAD || name.empty()) {
      return Usage(command, "only workloads have replicas: scale workload/NAME");
    }
    if (!args.Has("--replicas")) return Usage(command, "scale needs --replicas N");
    const std::string text = args.Get("--replicas");
    char* end = nullptr;
    errno = 0;
    long long replicas = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || replicas < 0 || replicas > UINT32_MAX) {
      return Usage(command, "--replicas: \"" + text + "\" is not a number of replicas (0 or more)");
    }
    v1::GetRequest get;
    get.mutable_ref()->set_kind(v1::WORKLOAD);
    get.mutable_ref()->set_namespace_(args.Get("--namespace"));
    get.mutable_ref()->set_name(name);
    auto object = Call<v1::GetRequest, v1::Object>("Get", get);
    if (!object) return Fail(object.error().message);
    // A workload belongs to the node it was applied on: applying it here
    // would create a second one beside it.
    auto nodes = Call<v1::ListNodesRequest, v1::ListNodesResponse>("ListNodes", {});
    if (!nodes) return Fail(nodes.error().message);
    std::string self;
    for (const v1::Node& node : nodes->nodes()) {
      if (node.self()) self = node.name();
    }
    for (const v1::Replica& replica : object->workload().status().replicas()) {
      if (!replica.node().empty() && !self.empty() && replica.node() != self) {
        return Fail("workload " + name + " is hosted on node " + replica.node() +
                    ": scale it there");
      }
    }
    object->mutable_workload()->mutable_spec()->mutable_replicas()->set_value(
        static_cast<uint32_t>(replicas));
    object->mutable_workload()->clear_status();
    auto model = FromProtoUnvalidated(*object);
    if (!model) return Fail(model.error().message);
    std::string manifest = workloads::WriteManifest(*model);
    if (const v1::ObjectMeta& meta = object->workload().metadata(); meta.has_applied_as()) {
      // Applied as a Kubernetes kind: the stored document is what is applied
      // again, with its spec.replicas changed (as kubectl scale does).
      const std::string& applied_kind = meta.applied_as().kind();
      if (applied_kind == "Pod" || applied_kind == "DaemonSet") {
        return Fail("workload " + name + " was applied as a " + applied_kind + ", which has " +
                    (applied_kind == "Pod" ? "one replica" : "one replica per node") +
                    " and no spec.replicas to scale; apply it as a Deployment to scale it");
      }
      auto scaled = ScaledDocument(meta.applied_as().document(), static_cast<uint32_t>(replicas));
      if (!scaled) return Fail(scaled.error().message);
      manifest = *scaled;
    }
    v1::ApplyRequest apply;
    v1::ManifestFile* file = apply.add_files();
    file->set_name("scale workload/" + name);
    file->set_text(manifest);
    auto response = Call<v1::ApplyRequest, v1::ApplyResponse>("Apply", apply);
    if (!response) return FailChange("scale", response.error());
    for (const v1::ApplyResult& result : response->results()) {
      std::printf("%s scaled\n", RefText(result.ref()).c_str());
    }
    return 0;
  }

  // logs: replica 0 of WORKLOAD (kubectl picks one pod of a Deployment), one
  // replica (--replica), all of them (--all-replicas), or every replica of
  // the exec workloads -l selects.
  int Logs(const CommandSpec& command, const ParsedFlags& args) {
    v1::LogsRequest base;
    base.set_follow(args.On("--follow"));
    base.set_previous(args.On("--previous"));
    base.set_namespace_(args.Get("--namespace"));
    base.set_container(args.Get("--container"));
    auto number = [](const std::string& text, int64_t* out) {
      char* end = nullptr;
      errno = 0;
      long long value = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno != 0 || value < 0) return false;
      *out = value;
      return true;
    };
    int64_t value = 0;
    base.set_timestamps(args.On("--timestamps"));
    if (args.Has("--since")) {
      auto seconds = ParseDurationSeconds(args.Get("--since"));
      if (!seconds) return Usage(command, "--since: " + seconds.error().message);
      base.mutable_since_seconds()->set_value(*seconds);
    }
    if (args.Has("--tail")) {
      if (!number(args.Get("--tail"), &value)) {
        return Usage(command, "--tail needs a number of lines (0 or more)");
      }
      base.mutable_tail_lines()->set_value(value);
    }
    struct Source {
      std::string name;  // replica name
      v1::LogsRequest request;
    };
    std::vector<Source> sources;
    if (args.Has("--selector")) {
      if (!args.positional.empty()) return Usage(command, "give a WORKLOAD or -l, not both");
      auto workloads = ListMatching(v1::WORKLOAD, args);
      if (!workloads) return Fail(workloads.error().message);
      for (const v1::Object& object : *workloads) {
        if (!object.workload().spec().app().has_exec()) continue;  // no output to show
        for (const v1::Replica& replica : object.workload().status().replicas()) {
          Source source{replica.name(), base};
          source.request.set_namespace_(object.workload().metadata().namespace_());
          source.request.set_workload(object.workload().metadata().name());
          source.request.mutable_replica()->set_value(replica.ordinal());
          sources.push_back(std::move(source));
        }
      }
      if (sources.empty()) {
        std::fprintf(stderr, "No exec workload's replicas match the selector.\n");
        return 0;
      }
    } else {
      if (args.positional.size() != 1) return Usage(command, "logs needs one WORKLOAD (or -l)");
      base.set_workload(args.positional[0]);
      if (args.On("--all-replicas")) {
        if (args.Has("--replica")) return Usage(command, "--replica or --all-replicas, not both");
        v1::GetRequest get;
        get.mutable_ref()->set_kind(v1::WORKLOAD);
        get.mutable_ref()->set_namespace_(args.Get("--namespace"));
        get.mutable_ref()->set_name(args.positional[0]);
        auto object = Call<v1::GetRequest, v1::Object>("Get", get);
        if (!object) return Fail(object.error().message);
        for (const v1::Replica& replica : object->workload().status().replicas()) {
          Source source{replica.name(), base};
          source.request.mutable_replica()->set_value(replica.ordinal());
          sources.push_back(std::move(source));
        }
      } else {
        Source source{args.positional[0] + "-0", base};
        if (args.Has("--replica")) {
          if (!number(args.Get("--replica"), &value) || value > UINT32_MAX) {
            return Usage(command, "--replica needs a replica ordinal (0, 1, ...)");
          }
          source.request.mutable_replica()->set_value(static_cast<uint32_t>(value));
          source.name = args.positional[0] + "-" + std::to_string(value);
        }
        sources.push_back(std::move(source));
      }
    }
    const bool prefix = args.Has("--prefix") ? args.On("--prefix") : sources.size() > 1;
    auto client = Client();
    if (!client) return Fail(client.error().message);
    const auto timeout = base.follow() ? std::chrono::milliseconds(std::chrono::hours(24 * 365))
                                       : std::chrono::milliseconds(kCallTimeout);
    std::vector<std::string> requests;
    std::vector<PrefixedLines> lines;
    std::vector<std::string> held(sources.size());  // without -f: printed in order at the end
    for (const Source& source : sources) {
      requests.push_back(source.request.SerializeAsString());
      lines.emplace_back(prefix ? "[replica/" + source.name + "] " : "");
    }
    auto emit = [&](size_t i, const std::string& text) {
      if (base.follow() || sources.size() == 1) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      } else {
        held[i] += text;
      }
    };
    bool defaulted = false;  // said once, as kubectl says it
    std::vector<Status> statuses = (*client)->ConcurrentStreams(
        kMethod + "Logs", requests,
        [&](size_t i, std::string_view bytes) {
          v1::LogChunk chunk;
          if (!chunk.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
          if (chunk.containers_size() > 1 && base.container().empty() && !defaulted) {
            defaulted = true;
            std::string names;
            for (const std::string& name : chunk.containers())
              names += (names.empty() ? "" : ", ") + name;
            std::fflush(stdout);
            std::fprintf(stderr, "Defaulted container \"%s\" out of: %s\n",
                         chunk.container().c_str(), names.c_str());
          }
          if (chunk.data().empty()) return true;
          emit(i, prefix ? lines[i].Add(chunk.data()) : chunk.data());
          return true;
        },
        timeout);
    int failures = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
      if (prefix) emit(i, lines[i].Finish());
      std::fputs(held[i].c_str(), stdout);
      if (!statuses[i]) {
        ++failures;
        std::fflush(stdout);
        std::fprintf(stderr, "error: %s%s\n",
                     sources.size() > 1 ? (sources[i].name + ": ").c_str() : "",
                     statuses[i].error().message.c_str());
      }
    }
    return failures == 0 ? 0 : 1;
  }

  int Watch(const CommandSpec& command, const ParsedFlags& args) {
    v1::WatchRequest request;
    if (args.positional.size() > 1) return Usage(command, "watch takes at most one KIND");
    if (!args.positional.empty()) {
      auto kind = ParseKind(args.positional[0]);
      if (!kind) return Usage(command, kind.error().message);
      request.add_kinds(*kind);
    }
    request.set_namespace_(args.On("--all-namespaces") ? "" : args.Get("--namespace"));
    auto client = Client();
    if (!client) return Fail(client.error().message);
    Status status = (*client)->ServerStream<v1::WatchRequest, v1::WatchEvent>(
        kMethod + "Watch", request,
        [](const v1::WatchEvent& event) {
          if (event.type() == v1::WatchEvent::SYNCED) {
            std::printf("SYNCED\n");
          } else {
            const v1::Object& o = event.object();
            const std::string kind = KindWord(KindOf(o));
            const v1::ObjectMeta& meta = MetaOf(o);
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

  int Cert(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.size() != 1) return Usage(command, "cert needs one REPLICA (e.g. web-0)");
    v1::GetCertificateRequest request;
    request.set_namespace_(args.Get("--namespace"));
    request.set_replica(args.positional[0]);
    auto cert = Call<v1::GetCertificateRequest, v1::Certificate>("GetCertificate", request);
    if (!cert) return Fail(cert.error().message);
    std::fputs(cert->chain_pem().c_str(), stdout);
    return 0;
  }

  // Prints shell assignments a process can be started with: both spellings
  // of each variable, since curl and wget read only the lower-case
  // http_proxy (and most tools prefer the lower-case ones).
  int Credentials(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.size() != 1) {
      return Usage(command, "credentials needs one REPLICA (e.g. web-0)");
    }
    v1::GetCredentialsRequest request;
    request.set_namespace_(args.Get("--namespace"));
    request.set_replica(args.positional[0]);
    auto creds = Call<v1::GetCredentialsRequest, v1::Credentials>("GetCredentials", request);
    if (!creds) return Fail(creds.error().message);
    const char* http = creds->http_proxy().c_str();
    const char* all = creds->all_proxy().c_str();
    std::printf("HTTP_PROXY=%s\nhttp_proxy=%s\nHTTPS_PROXY=%s\nhttps_proxy=%s\n", http, http, http,
                http);
    std::printf("ALL_PROXY=%s\nall_proxy=%s\n", all, all);
    return 0;
  }

  // The agent makes the kubeconfig (it signs the admin certificate); the
  // method is api/kube/kubeconfig.h's.
  int Kubeconfig(const CommandSpec& command, const ParsedFlags& args) {
    if (!args.positional.empty()) return Usage(command, "kubeconfig takes no arguments");
    auto client = Client();
    if (!client) return Fail(client.error().message);
    google::protobuf::StringValue request;
    request.set_value(args.Get("--kube-address"));
    auto config = (*client)->Call<google::protobuf::StringValue, google::protobuf::StringValue>(
        "/podless.v1.Kube/Kubeconfig", request, kCallTimeout);
    if (!config) return Fail(config.error().message);
    const std::string path = args.Get("--output");
    if (path.empty()) {
      std::fputs(config->value().c_str(), stdout);
      return 0;
    }
    // 0600 from the start, and an existing file made so before it holds the key.
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Fail(path + ": " + std::strerror(errno));
    bool ok = ::fchmod(fd, 0600) == 0;
    const std::string& text = config->value();
    for (size_t done = 0; ok && done < text.size();) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<size_t>(n);
    }
    const int saved = errno;
    ok = ::close(fd) == 0 && ok;
    if (!ok) return Fail(path + ": " + std::strerror(saved));
    return 0;
  }

  int Ca(const CommandSpec& command, const ParsedFlags& args) {
    if (args.positional.size() != 1 ||
        (args.positional[0] != "show" && args.positional[0] != "export")) {
      return Usage(command, "ca needs show, export or init");
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
  // Global flags come before the command.
  while (!args.empty() && args[0].size() > 1 && args[0][0] == '-') {
    std::string flag = args[0];
    if (flag == "-h" || flag == "--help") {
      std::fputs(GlobalUsage().c_str(), stdout);
      return 0;
    }
    if (flag == "--version") {
      std::printf("podless %s\n", std::string(Version()).c_str());
      return 0;
    }
    std::string value;
    size_t used = 1;
    if (size_t eq = flag.find('='); eq != std::string::npos && flag.rfind("--", 0) == 0) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (args.size() >= 2) {
      value = args[1];
      used = 2;
    }
    if (flag != "--socket" && flag != "--state-dir") {
      std::fprintf(stderr,
                   "error: unknown flag %s (before the command: --socket PATH, --state-dir DIR)\n"
                   "Run 'podless --help' for usage.\n",
                   flag.c_str());
      return 2;
    }
    if (value.empty()) {
      std::fprintf(stderr, "error: %s: missing value\nRun 'podless --help' for usage.\n",
                   flag.c_str());
      return 2;
    }
    socket = flag == "--socket" ? value : value + "/api.sock";
    args.erase(args.begin(), args.begin() + static_cast<long>(used));
  }
  if (args.empty()) {
    std::fprintf(stderr, "error: no command\n\n%s", GlobalUsage().c_str());
    return 2;
  }
  const std::string verb = args[0];
  args.erase(args.begin());
  const CommandSpec* command = FindCommand(verb);
  if (command == nullptr) {
    std::fputs(UnknownCommandError(verb).c_str(), stderr);
    return 2;
  }
  if (verb == "run") return RunCommand(args);
  if (verb == "ca" && !args.empty() && args[0] == "init") {
    return CaInitCommand(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  if (verb == "help") {
    if (args.empty()) {
      std::fputs(GlobalUsage().c_str(), stdout);
      return 0;
    }
    if (args[0] == "run") return RunCommand({"--help"});
    const CommandSpec* about = FindCommand(args[0]);
    if (about == nullptr) {
      std::fputs(UnknownCommandError(args[0]).c_str(), stderr);
      return 2;
    }
    std::fputs(CommandHelp(*about).c_str(), stdout);
    return 0;
  }
  // --socket and --state-dir may follow the command too, as kubectl's global
  // flags may (`run` has a --state-dir of its own and returned above).
  for (size_t i = 0; i < args.size() && args[i] != "--";) {
    std::string flag = args[i];
    std::string value;
    size_t used = 1;
    if (size_t eq = flag.find('='); eq != std::string::npos && flag.rfind("--", 0) == 0) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[i + 1];
      used = 2;
    }
    if (flag != "--socket" && flag != "--state-dir") {
      ++i;
      continue;
    }
    if (value.empty()) return Usage(*command, flag + ": missing value");
    socket = flag == "--socket" ? value : value + "/api.sock";
    args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i + used));
  }
  std::map<std::string_view, std::vector<std::string_view>> extra_values = {
      {"--dry-run", {"client", "server", "none"}}};
  auto parsed = ParseFlags(args, command->flags, extra_values);
  if (!parsed) return Usage(*command, parsed.error().message);
  if (parsed->help) {
    std::fputs(CommandHelp(*command).c_str(), stdout);
    return 0;
  }
  if (verb == "version") {
    if (!parsed->positional.empty()) return Usage(*command, "version takes no arguments");
    std::printf("podless %s\n", std::string(Version()).c_str());
    return 0;
  }
  if (socket.empty()) socket = "./podless-state/api.sock";
  return Cli(socket).Run(*command, *parsed);
}

}  // namespace podless::api
