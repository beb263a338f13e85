// Istio's security.istio.io PeerAuthentication and networking.istio.io
// WorkloadEntry, read into the model (see Kinds() in manifest_parser.cc).
#include <charconv>
#include <optional>
#include <string>
#include <utility>

#include "workloads/document_reader.h"
#include "workloads/manifest_fields.h"

namespace podless::workloads::manifest {

namespace {

constexpr const char* kHbonePortAnnotation = "podless.dev/hbone-port";

}  // namespace

void DocumentReader::ReadMtlsMode(const YAML::Node& node, const Path& path, MtlsMode& out) {
  auto fields = ReadMapping(node, path, FieldNames(objects::kMutualTls));
  if (!fields) return;
  if (const Entry* e = fields->Find("mode")) {
    ReadEnum<MtlsMode>(e->value, Join(path, "mode"),
                       {{"UNSET", MtlsMode::kUnset},
                        {"PERMISSIVE", MtlsMode::kPermissive},
                        {"STRICT", MtlsMode::kStrict},
                        {"DISABLE", MtlsMode::kDisable}},
                       out);
  }
}

void DocumentReader::ReadPeerAuthentication(const Fields& root, ObjectMeta meta,
                                            std::optional<Object>& out) {
  PeerAuthentication peer;
  peer.metadata = std::move(meta);
  auto fields = ReadMapping(SpecOf(root), "spec", FieldNames(objects::kPeerAuthenticationSpec));
  if (fields) {
    if (const Entry* e = fields->Find("selector")) {
      if (auto s = ReadMapping(e->value, "spec.selector", FieldNames(objects::kWorkloadSelector))) {
        if (const Entry* m = s->Find("matchLabels")) {
          ReadStringMap(m->value, "spec.selector.matchLabels", peer.selector);
        }
      }
    }
    if (const Entry* e = fields->Find("mtls")) ReadMtlsMode(e->value, "spec.mtls", peer.mode);
    if (const Entry* e = fields->Find("portLevelMtls")) {
      const Path path = "spec.portLevelMtls";
      if (!e->value.IsNull() && !e->value.IsMap()) {
        Error(path, e->value.Mark(),
              "expected a mapping of port numbers to {mode: ...}, got " + Describe(e->value));
      } else if (e->value.IsMap()) {
        for (auto it = e->value.begin(); it != e->value.end(); ++it) {
          if (!Spend()) break;
          YAML::Node key = it->first;
          YAML::Node value = it->second;
          const std::string text = key.IsScalar() ? key.Scalar() : std::string();
          Path child = Key(path, text);
          Record(child, key.Mark());
          PortRef port;
          if (!key.IsScalar()) {
            Error(path, key.Mark(), "expected a port number as key, got " + Describe(key));
            continue;
          }
          const size_t errors = errors_.size();
          ReadPortRef(key, child, port);
          if (errors_.size() != errors) continue;
          if (port.number == 0) {
            Error(child, key.Mark(), "expected a port number as key, got " + Describe(key));
            continue;
          }
          if (peer.port_level.count(port.number) != 0) {
            Error(child, key.Mark(), "duplicate port " + text);
            continue;
          }
          MtlsMode mode = MtlsMode::kUnset;
          ReadMtlsMode(value, child, mode);
          peer.port_level.emplace(port.number, mode);
        }
      }
    }
  }
  out = std::move(peer);
}

void DocumentReader::ReadWorkloadEntry(const Fields& root, ObjectMeta meta,
                                       std::optional<Object>& out) {
  WorkloadEntry entry;
  entry.metadata = std::move(meta);
  // The port podless dials the entry's HBONE on: Istio has no field for it.
  if (const auto& annotations = *entry.metadata.annotations;
      annotations.count(kHbonePortAnnotation) != 0) {
    const std::string& text = annotations.at(kHbonePortAnnotation);
    const Path path = Key("metadata.annotations", kHbonePortAnnotation);
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    const YAML::Mark mark = MarkFor(path, YAML::Node(YAML::NodeType::Null));
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      Error(path, mark, "expected a port number, got " + QuoteForMessage(text));
    } else if (value < 1 || value > 65535) {
      Error(path, mark, RangeMessage(1, 65535, text));
    } else {
      entry.hbone_port = static_cast<uint16_t>(value);
    }
  }
  auto fields = ReadMapping(SpecOf(root), "spec", FieldNames(objects::kWorkloadEntrySpec));
  if (fields) {
    for (const Entry& e : fields->entries) {
      Path path = Join("spec", e.key);
      if (e.key == "address") {
        ReadString(e.value, path, entry.address);
      } else if (e.key == "labels") {
        ReadStringMap(e.value, path, entry.labels);
      } else if (e.key == "serviceAccount") {
        ReadString(e.value, path, entry.service_account);
        if (e.value.IsNull()) entry.service_account = kDefaultServiceAccount;
      } else if (e.key == "ports") {
        if (e.value.IsNull()) continue;
        if (!e.value.IsMap()) {
          Error(path, e.value.Mark(),
                "expected a mapping of port names to numbers, got " + Describe(e.value));
          continue;
        }
        for (auto it = e.value.begin(); it != e.value.end(); ++it) {
          if (!Spend()) break;
          YAML::Node key = it->first;
          YAML::Node value = it->second;
          if (!key.IsScalar()) {
            Error(path, key.Mark(), "expected a port name as key, got " + Describe(key));
            continue;
          }
          Path child = Key(path, key.Scalar());
          Record(child, key.Mark());
          if (entry.ports.count(key.Scalar()) != 0) {
            Error(child, key.Mark(), "duplicate port name " + QuoteForMessage(key.Scalar()));
            continue;
          }
          uint16_t number = 0;
          if (value.IsNull()) {
            Error(child, key.Mark(), "expected a port number, got null");
            continue;
          }
          const size_t errors = errors_.size();
          ReadInt(value, child, 1, 65535, number);
          if (errors_.size() != errors) continue;
          entry.ports.emplace(key.Scalar(), number);
        }
      } else if (e.key == "weight") {
        uint32_t weight = 0;
        ReadInt(e.value, path, 0, kMaxInt32, weight);
        Warn(path, e.key_node.Mark(), "ignored: podless balances over endpoints evenly");
      } else if (e.key == "network" || e.key == "locality") {
        std::string ignored;
        ReadString(e.value, path, ignored);
        Warn(path, e.key_node.Mark(),
             "ignored: podless dials the entry's address directly over HBONE");
      }
    }
  }
  out = std::move(entry);
}

}  // namespace podless::workloads::manifest
