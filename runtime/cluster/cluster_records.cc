#include "runtime/cluster/cluster_records.h"

#include "workloads/ipam.h"
#include "workloads/object_codec.h"

namespace podless::runtime {
namespace {

using workloads::ByteReader;
using workloads::ByteWriter;

constexpr uint8_t kRecordVersion = 1;

Status ReaderError(const ByteReader& reader, const char* record) {
  return MakeError(ErrorCode::kFailedPrecondition,
                   std::string("bad ") + record + ": " + reader.error());
}

bool ReadVersion(ByteReader& reader) {
  uint8_t version = 0;
  if (!reader.ReadByte(&version, "version")) return false;
  if (version != kRecordVersion) {
    return reader.Fail("version", "unknown record version " + std::to_string(version));
  }
  return true;
}

// Ordinals or addresses as a count and fixed-size values.
void PutU32List(ByteWriter& out, const std::vector<uint32_t>& values) {
  out.PutVarint(values.size());
  for (uint32_t value : values) out.PutFixed32(value);
}

bool ReadU32List(ByteReader& in, std::vector<uint32_t>* values, const char* what) {
  size_t count = 0;
  if (!in.ReadCount(&count, 4, what)) return false;
  values->resize(count);
  for (uint32_t& value : *values) {
    if (!in.ReadFixed32(&value, what)) return false;
  }
  return true;
}

// Addresses as runs of consecutive values: a workload's replicas usually get
// consecutive addresses, so a million of them take a few bytes.
constexpr uint64_t kMaxAddresses = uint64_t{1} << 24;

void PutAddressRuns(ByteWriter& out, const std::vector<uint32_t>& addresses) {
  std::vector<std::pair<uint32_t, uint32_t>> runs;  // start, length
  for (uint32_t address : addresses) {
    if (!runs.empty() && runs.back().first + runs.back().second == address) {
      ++runs.back().second;
    } else {
      runs.emplace_back(address, 1);
    }
  }
  out.PutVarint(runs.size());
  for (auto [start, length] : runs) {
    out.PutFixed32(start);
    out.PutVarint(length);
  }
}

bool ReadAddressRuns(ByteReader& in, std::vector<uint32_t>* addresses) {
  size_t runs = 0;
  if (!in.ReadCount(&runs, 5, "addresses")) return false;
  for (size_t i = 0; i < runs; ++i) {
    uint32_t start = 0;
    uint64_t length = 0;
    if (!in.ReadFixed32(&start, "addresses") ||
        !in.ReadBounded(&length, kMaxAddresses - addresses->size(), "addresses")) {
      return false;
    }
    if (uint64_t{start} + length > (uint64_t{1} << 32)) {
      return in.Fail("addresses", "run past 255.255.255.255");
    }
    for (uint64_t n = 0; n < length; ++n) addresses->push_back(start + static_cast<uint32_t>(n));
  }
  return true;
}

bool ReadObject(ByteReader& in, workloads::Object* object, std::string* error) {
  std::string_view bytes;
  if (!in.ReadStringView(&bytes, "object")) return false;
  auto decoded = workloads::DecodeObject(bytes);
  if (!decoded) {
    *error = "object: " + decoded.error().message;
    return in.Fail("object", decoded.error().message);
  }
  *object = std::move(*decoded);
  return true;
}

bool Finish(ByteReader& in) {
  return in.ok() && (in.at_end() || in.Fail("record", "trailing bytes"));
}

}  // namespace

bool IsClusterKind(workloads::Kind kind) { return kind != workloads::Kind::kWorkload; }

std::string ClusterKeys::Vip(uint32_t vip) const { return Vips() + workloads::FormatIpv4(vip); }

std::string ClusterKeys::Cidr(std::string_view cidr) const {
  std::string name(cidr);
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  return Cidrs() + name;
}

std::string EncodeNodeRecord(const NodeRecord& record) {
  std::string bytes;
  ByteWriter out(&bytes);
  out.PutByte(kRecordVersion);
  out.PutString(record.name);
  out.PutString(record.address);
  out.PutVarint(record.hbone_port);
  out.PutString(record.cidr);
  out.PutString(record.instance_id);
  out.PutVarint(static_cast<uint64_t>(record.started_at));
  return bytes;
}

Result<NodeRecord> DecodeNodeRecord(std::string_view bytes) {
  ByteReader in(bytes);
  NodeRecord record;
  uint64_t started = 0;
  if (ReadVersion(in) && in.ReadString(&record.name, "name") &&
      in.ReadString(&record.address, "address") && in.ReadU16(&record.hbone_port, "hbone_port") &&
      in.ReadString(&record.cidr, "cidr") && in.ReadString(&record.instance_id, "instance_id") &&
      in.ReadVarint(&started, "started_at") && Finish(in)) {
    record.started_at = static_cast<int64_t>(started);
    return record;
  }
  return ReaderError(in, "node record").error();
}

std::string EncodeWorkloadRecord(const WorkloadRecord& record) {
  std::string bytes;
  ByteWriter out(&bytes);
  out.PutByte(kRecordVersion);
  out.PutString(record.node);
  out.PutString(workloads::EncodeObject(record.workload));
  PutAddressRuns(out, record.addresses);
  PutU32List(out, record.not_ready);
  return bytes;
}

Result<WorkloadRecord> DecodeWorkloadRecord(std::string_view bytes) {
  ByteReader in(bytes);
  WorkloadRecord record;
  workloads::Object object;
  std::string error;
  if (ReadVersion(in) && in.ReadString(&record.node, "node") && ReadObject(in, &object, &error) &&
      ReadAddressRuns(in, &record.addresses) && ReadU32List(in, &record.not_ready, "not_ready") &&
      Finish(in)) {
    auto* workload = std::get_if<workloads::Workload>(&object);
    if (workload == nullptr) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "bad workload record: holds a " +
                           std::string(workloads::KindName(workloads::KeyOf(object).kind)));
    }
    record.workload = std::move(*workload);
    return record;
  }
  return ReaderError(in, "workload record").error();
}

std::string EncodeClusterObjectRecord(const ClusterObjectRecord& record) {
  std::string bytes;
  ByteWriter out(&bytes);
  out.PutByte(kRecordVersion);
  out.PutString(workloads::EncodeObject(record.object));
  out.PutFixed32(record.vip);
  return bytes;
}

Result<ClusterObjectRecord> DecodeClusterObjectRecord(std::string_view bytes) {
  ByteReader in(bytes);
  ClusterObjectRecord record;
  std::string error;
  if (ReadVersion(in) && ReadObject(in, &record.object, &error) &&
      in.ReadFixed32(&record.vip, "vip") && Finish(in)) {
    if (!IsClusterKind(workloads::KeyOf(record.object).kind)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "bad cluster object record: holds a Workload");
    }
    return record;
  }
  return ReaderError(in, "cluster object record").error();
}

}  // namespace podless::runtime
