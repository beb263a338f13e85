#include "api/cli/ca_init_command.h"

#include <cstdio>

#include "runtime/cluster/cluster.h"

namespace podless::api {

namespace {

constexpr char kUsage[] =
    "usage: podless ca init --etcd URL[,URL...] --out DIR [--trust-domain NAME] "
    "[--store-root-key] [--etcd-prefix PREFIX]\n"
    "                       [--etcd-ca FILE [--etcd-cert FILE --etcd-key FILE]]\n\n"
    "Creates the cluster root CA in DIR (ca.crt, ca.key mode 0600; an existing pair there is\n"
    "used) and publishes its certificate in etcd. Nodes then sign their own intermediate CA\n"
    "when they join: with --store-root-key the root key is kept in etcd for that (anyone who\n"
    "can read etcd can then mint identities); without it, pass the root to each node's first\n"
    "start with --ca-cert DIR/ca.crt --ca-key DIR/ca.key.\n\n"
    "https:// etcd endpoints need --etcd-ca (the CA bundle that signed etcd's certificate; the\n"
    "system trust store is not used) and, for etcd with --client-cert-auth, --etcd-cert and\n"
    "--etcd-key (owned by this uid, mode 0600), as for `podless run`.\n";

}  // namespace

int CaInitCommand(const std::vector<std::string>& given) {
  // --flag=value is --flag value (as for every other command).
  std::vector<std::string> args;
  for (const std::string& arg : given) {
    size_t eq = arg.find('=');
    if (arg.rfind("--store-root-key=", 0) == 0) {
      if (arg != "--store-root-key=false") args.push_back("--store-root-key");
    } else if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      args.push_back(arg.substr(0, eq));
      args.push_back(arg.substr(eq + 1));
    } else {
      args.push_back(arg);
    }
  }
  runtime::ClusterCaInit options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string etcd;
    bool ok = true;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--etcd") {
      ok = value(&etcd);
      for (size_t start = 0; ok && start <= etcd.size();) {
        size_t comma = etcd.find(',', start);
        if (comma == std::string::npos) comma = etcd.size();
        if (comma > start) options.etcd_endpoints.push_back(etcd.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (arg == "--out") {
      ok = value(&options.out_dir);
    } else if (arg == "--trust-domain") {
      ok = value(&options.trust_domain);
    } else if (arg == "--etcd-prefix") {
      ok = value(&options.etcd_prefix);
    } else if (arg == "--etcd-ca") {
      ok = value(&options.etcd_tls.ca_file);
    } else if (arg == "--etcd-cert") {
      ok = value(&options.etcd_tls.cert_file);
    } else if (arg == "--etcd-key") {
      ok = value(&options.etcd_tls.key_file);
    } else if (arg == "--store-root-key") {
      options.store_root_key = true;
    } else {
      std::fprintf(stderr, "podless ca init: unknown flag \"%s\"\n%s", arg.c_str(), kUsage);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "podless ca init: %s: missing value\n", arg.c_str());
      return 2;
    }
  }
  if (options.etcd_endpoints.empty() || options.out_dir.empty()) {
    std::fprintf(stderr, "podless ca init: --etcd and --out are required\n%s", kUsage);
    return 2;
  }
  // Before the CA is created in --out: a flag mistake changes nothing.
  if (Status s = runtime::CheckEtcdTlsFlags(options.etcd_endpoints, options.etcd_tls); !s) {
    std::fprintf(stderr, "podless ca init: %s\n", s.error().message.c_str());
    return 2;
  }
  if (Status s = runtime::InitClusterCa(options); !s) {
    std::fprintf(stderr, "podless ca init: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("cluster root CA in %s/ca.crt, published in etcd%s\n", options.out_dir.c_str(),
              options.store_root_key ? " with its key" : "");
  return 0;
}

}  // namespace podless::api
