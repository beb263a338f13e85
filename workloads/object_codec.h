// A compact binary encoding of the model objects (workloads/model.h), used by
// the state store (runtime/state/state_store.h) to persist what the agent accepted.
//
// Format (version 3), every integer an unsigned LEB128 varint unless noted:
//   object  = u8 version, kind, body of that kind
//   string  = length, bytes
//   list    = count, elements
//   map     = count, (key string, value string)*, keys strictly ascending
//   enum    = its numeric value; optional = u8 0 | u8 1 + value; bool = u8 0 | 1
//   app     = variant index (0 echo, 1 static, 2 forward, 3 exec), then fields
// Fields are written in a fixed order (see the Encoder), new ones after the
// older fields of their struct; a new field means a new version number, and
// the decoder of a later build keeps reading older ones.
//
// Versions: 1 has everything but an exec app's sandbox; 2 appends the
// sandbox to the exec app (securityContext: optional runAsUser, optional
// runAsGroup, optional runAsNonRoot; limits: memory bytes, cpu millicores,
// pids; keepWorkingDir); 3 appends to each AuthorizationPolicy source
// serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks,
// notRemoteIpBlocks, requestPrincipals, notRequestPrincipals; to each
// operation hosts, notHosts, methods, notMethods, paths, notPaths; to each
// rule its `when` list (key, values, notValues); adds the kinds Namespace,
// ServiceAccount, PeerAuthentication and WorkloadEntry; and appends to every
// object the metadata extras (annotations, then an optional appliedAs:
// apiVersion, kind, document); 4 appends to the exec app its containers (the
// first container's name, then each further container: name, command, env,
// workingDir, optional readinessProbe), and from it on the sandbox is always
// written (versions 2 and 3 write it too, 2 only when it is set). An object is written in the
// oldest version that holds it (1 unless it needs a later one), so that the stored state and
// cluster records of workloads that do not use newer fields stay readable by the builds before
// them.
//
// Decoding treats its input as untrusted (a damaged disk, a fuzzer): every
// length and count is checked against the bytes that remain before anything
// is allocated, every enum and narrow integer is range-checked, trailing bytes
// are an error. A bad input yields an error naming the byte offset and the
// field, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "workloads/model.h"
#include "workloads/result.h"

namespace podless::workloads {

// The newest format version this build reads and writes; it reads every
// version from kOldestObjectFormatVersion on.
inline constexpr uint8_t kObjectFormatVersion = 4;
inline constexpr uint8_t kOldestObjectFormatVersion = 1;

// Encodes `object`. Total for every object the model can hold with enum values
// in range; an out-of-range enum value (a cast bug) produces bytes that
// DecodeObject rejects. Callers that must not persist such bytes use
// AppendObject, which reports it.
std::string EncodeObject(const Object& object);

// Appends the encoding of `object` to `*out`. On error (an enum value out of
// range, naming the field) `*out` is left as it was.
Status AppendObject(const Object& object, std::string* out);

// Decodes exactly one object occupying all of `bytes`.
Result<Object> DecodeObject(std::string_view bytes);

// The primitives of the format, shared with other compact encodings (the
// state store's records) so that all of them are bounds-checked the same way.
class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}

  void PutByte(uint8_t value) { out_->push_back(static_cast<char>(value)); }
  void PutVarint(uint64_t value);
  void PutString(std::string_view value);
  void PutFixed32(uint32_t value);  // little-endian
  std::string* out() { return out_; }

 private:
  std::string* out_;
};

// Reads from a byte span. The first failure sticks: later reads fail too and
// error() keeps the first reason, so callers may check ok() once at the end of
// a group of reads. Offsets in messages are relative to the span plus
// `base_offset` (so that a reader of a sub-span reports file positions).
class ByteReader {
 public:
  explicit ByteReader(std::string_view data, uint64_t base_offset = 0)
      : data_(data), base_offset_(base_offset) {}

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }

  bool ReadByte(uint8_t* value, const char* what);
  bool ReadVarint(uint64_t* value, const char* what);
  // A varint that must be <= max.
  bool ReadBounded(uint64_t* value, uint64_t max, const char* what);
  bool ReadU32(uint32_t* value, const char* what);
  bool ReadU16(uint16_t* value, const char* what);
  bool ReadString(std::string* value, const char* what);
  // A view into the input, valid as long as the input is.
  bool ReadStringView(std::string_view* value, const char* what);
  // An element count, refused when it exceeds the bytes left divided by
  // `min_element_bytes` (each element takes at least that many): this bounds
  // every allocation by the size of the input.
  bool ReadCount(size_t* count, size_t min_element_bytes, const char* what);
  bool ReadFixed32(uint32_t* value, const char* what);

  // Records `why` about `what` at the current position (if no earlier error)
  // and returns false.
  bool Fail(const char* what, std::string_view why) { return FailAt(pos_, what, why); }
  // The same, reporting `position` (an earlier position in this span).
  bool FailAt(size_t position, const char* what, std::string_view why);

 private:
  std::string_view data_;
  uint64_t base_offset_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace podless::workloads
