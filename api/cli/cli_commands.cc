#include "api/cli/cli_commands.h"

#include <algorithm>
#include <cctype>

#ifndef PODLESS_VERSION
#define PODLESS_VERSION "unknown"
#endif

namespace podless::api {
namespace {

constexpr FlagSpec kNamespace{"--namespace", 'n', "NS", "the namespace (default: default)"};
constexpr FlagSpec kAllNamespaces{"--all-namespaces", 'A', "", "every namespace"};
constexpr FlagSpec kFilename{"--filename", 'f', "FILE|DIR|-",
                             "a manifest file, a directory of them, or - for stdin (repeatable)"};
constexpr FlagSpec kSelector{
    "--selector", 'l', "SELECTOR",
    "labels to match: k=v, k!=v, k, !k, k in (a,b), k notin (a,b); a comma: all of them"};

std::vector<CommandSpec> MakeCommands() {
  return {
      {"run", "run [flags]", "run the node agent (podless run --help)", "", {}},
      {"apply",
       "apply -f FILE|DIR|- [--dry-run] [--skip-unsupported]",
       "create or update the objects of manifests, atomically",
       "Every document must be valid or nothing changes; each problem is reported as\n"
       "file:line:col: field: message. Prints one line per object (created, configured,\n"
       "unchanged) and `namespace/NAME created` for a namespace that had no object yet.\n",
       {kFilename,
        {"--dry-run", 0, "", "validate and report, change nothing (=client|server|none)"},
        {"--skip-unsupported", 0, "",
         "skip documents of kinds podless does not run (ConfigMap, Ingress, ...) instead of "
         "refusing the apply; each is listed as skipped"}}},
      {"delete",
       "delete (-f FILE|DIR|- | KIND NAME... | KIND -l SELECTOR) [flags]",
       "delete objects: those a manifest declares, by name, or by label",
       "Deletes every object that exists and reports each missing one as NotFound on\n"
       "stderr, as kubectl does; the exit code is then 1. --ignore-not-found makes a\n"
       "missing object no error (and prints nothing for it).\n",
       {kFilename,
        kNamespace,
        kSelector,
        kAllNamespaces,
        {"--ignore-not-found", 0, "", "a missing object is no error"}}},
      {"get",
       "get KIND [NAME...] [flags]",
       "list objects (workloads, services, policies, replicas, nodes)",
       "KIND: workloads (wl), services (svc), policies (ap), replicas (pods: one row per\n"
       "replica), nodes (no). -o yaml and -o json print the same object, which apply\n"
       "takes back (status is ignored). -o name prints KIND/NAME lines.\n",
       {kNamespace,
        kAllNamespaces,
        {"--output", 'o', "FORMAT", "wide, yaml, json or name (default: a table)"},
        kSelector,
        {"--show-labels", 0, "", "a LABELS column"},
        {"--no-headers", 0, "", "tables without their header row"},
        {"--watch", 'w', "", "after the list, print a row for every change"}}},
      {"describe", "describe KIND NAME [-n NS]", "show one object in detail", "", {kNamespace}},
      {"scale",
       "scale KIND/NAME --replicas N [-n NS]",
       "set a workload's number of replicas",
       "KIND is workload (workloads, wl). The rest of the workload stays as it is; the\n"
       "change is an apply of the workload with the new replica count.\n",
       {kNamespace, {"--replicas", 0, "N", "the new number of replicas (required)"}}},
      {"logs",
       "logs (WORKLOAD | -l SELECTOR) [flags]",
       "output of an exec workload's processes",
       "Prints replica 0's stdout and stderr unless --replica, --all-replicas or -l say\n"
       "otherwise. With several replicas each line starts with [replica/NAME]. The agent\n"
       "stamps each line with the time it read it: --timestamps shows it, --since filters\n"
       "on it (then --tail counts what is left). A replica of several containers (a\n"
       "pod's) has a log per container: -c picks one; without it the first is shown, as\n"
       "kubectl does, and stderr names the others.\n",
       {kNamespace,
        {"--replica", 'r', "N", "this replica's ordinal (default 0)"},
        {"--container", 'c', "NAME", "this container's log (default: the first)"},
        {"--all-replicas", 0, "", "every replica of the workload"},
        kSelector,
        {"--follow", 'f', "", "keep printing new output"},
        {"--tail", 0, "N", "only the last N lines"},
        {"--previous", 'p', "", "the run before the current one"},
        {"--since", 0, "DURATION", "only lines written in the last DURATION (30s, 5m, 1h30m)"},
        {"--timestamps", 0, "", "each line behind the time it was written (RFC 3339, UTC)"},
        {"--prefix", 0, "", "start each line with [replica/NAME] (default: with several)"}}},
      {"watch",
       "watch [KIND] [-n NS|-A]",
       "stream changes (the current state first)",
       "",
       {kNamespace, kAllNamespaces}},
      {"cert",
       "cert REPLICA [-n NS]",
       "print a replica's X.509-SVID chain (issues it if needed)",
       "",
       {kNamespace}},
      {"credentials",
       "credentials REPLICA [-n NS]",
       "outbound proxy settings of a replica (HTTP_PROXY=...)",
       "Prints shell assignments: HTTP_PROXY and http_proxy, HTTPS_PROXY and https_proxy\n"
       "(curl and most Unix tools read only the lower-case ones for http URLs), ALL_PROXY\n"
       "and all_proxy (SOCKS5), each with the replica's own credentials, so a program\n"
       "started with them calls as that replica:\n"
       "  eval \"$(podless credentials web-0 | sed 's/^/export /')\"\n",
       {kNamespace}},
      {"ca",
       "ca show|export | ca init --etcd URL --out DIR",
       "the trust bundle (a summary, or the PEM); a cluster's root CA",
       "",
       {}},
      {"kubeconfig",
       "kubeconfig [--kube-address HOST:PORT] [-o FILE]",
       "a kubeconfig for kubectl: the agent's Kubernetes API, an admin certificate",
       "Prints (or writes to FILE, mode 0600) a kubeconfig whose cluster is the agent's\n"
       "Kubernetes API (its --kube-address, https://127.0.0.1:6443 by default) trusting the\n"
       "agent's CA, and whose user holds a new admin client certificate the agent signs:\n"
       "  podless kubeconfig -o ~/.kube/podless && KUBECONFIG=~/.kube/podless kubectl get pods\n",
       {{"--kube-address", 0, "HOST:PORT", "the server kubectl dials (default: the agent's)"},
        {"--output", 'o', "FILE", "write to FILE (mode 0600) instead of stdout"}}},
      {"version", "version", "print podless's version", "", {}},
      {"help", "help [COMMAND]", "this text, or a command's", "", {}},
  };
}

}  // namespace

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> commands = MakeCommands();
  return commands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

std::string GlobalUsage() {
  std::string out =
      "usage: podless [--socket PATH | --state-dir DIR] COMMAND [args]\n"
      "\n"
      "Commands:\n";
  for (const CommandSpec& command : Commands()) {
    std::string left = "  " + std::string(command.name);
    left.resize(std::max<size_t>(left.size() + 1, 15), ' ');
    out += left + std::string(command.summary) + "\n";
  }
  out +=
      "\n"
      "`podless COMMAND --help` shows a command's usage and flags. Flags take their value\n"
      "as `--flag value` or `--flag=value` (`-n ns`, `-n=ns`, `-nns`).\n"
      "The API socket is --socket, else $PODLESS_SOCKET, else ./podless-state/api.sock\n"
      "(--state-dir DIR: DIR/api.sock); both may come before or after the command.\n";
  return out;
}

std::string CommandHelp(const CommandSpec& command) {
  std::string out = "usage: podless " + std::string(command.usage) + "\n\n";
  std::string summary(command.summary);
  if (!summary.empty()) summary[0] = static_cast<char>(std::toupper(summary[0]));
  out += summary + ".\n";
  if (!command.details.empty()) out += "\n" + std::string(command.details);
  if (!command.flags.empty()) out += "\nFlags:\n" + FlagsHelp(command.flags);
  return out;
}

std::string CommandUsageError(const CommandSpec& command, std::string_view problem) {
  return "error: " + std::string(problem) + "\nusage: podless " + std::string(command.usage) +
         "\nRun 'podless " + std::string(command.name) + " --help' for more.\n";
}

std::string UnknownCommandError(std::string_view word) {
  std::vector<std::string_view> names;
  for (const CommandSpec& command : Commands()) names.push_back(command.name);
  std::string out = "error: unknown command \"" + std::string(word) + "\" for \"podless\"\n";
  std::string nearest = NearestWord(word, names);
  if (!nearest.empty()) out += "\nDid you mean this?\n\t" + nearest + "\n";
  out += "\nRun 'podless --help' for usage.\n";
  return out;
}

std::string_view Version() { return PODLESS_VERSION; }

}  // namespace podless::api
