// Fuzzes what the local API does with a request body (api/grpc_server.cc):
// gRPC length-prefixed framing, then the protobuf decode of the method's
// request message, then api::FromProto on every object it carries. The first
// input byte picks the method, the second where the body is split in two
// DATA frames; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "api/model_convert.h"
#include "podless/v1/runtime.pb.h"
#include "runtime/grpc/framing.h"

namespace v1 = podless::v1;
using podless::api::FromProto;
using podless::api::FromProtoKind;
using podless::api::FromProtoUnvalidated;
using podless::api::ToProto;
using podless::runtime::GrpcMessageDecoder;

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    fprintf(stderr, "invariant violated: %s\n", what);
    abort();
  }
}

// An accepted workload converts back to a message that is accepted again.
void ConvertWorkload(const v1::Workload& message) {
  auto workload = FromProto(message);
  if (!workload.ok()) return;
  Check(FromProto(ToProto(*workload)).ok(), "FromProto(ToProto(FromProto(x))) fails");
}

void ConvertObject(const v1::Object& message) {
  (void)FromProtoUnvalidated(message);
  auto object = FromProto(message);
  if (!object.ok()) return;
  Check(FromProto(ToProto(*object)).ok(), "FromProto(ToProto(FromProto(x))) fails");
}

template <typename Message>
bool Decode(const std::string& bytes, Message* message) {
  return message->ParseFromString(bytes);
}

void HandleRequest(uint8_t method, const std::string& bytes) {
  switch (method % 11) {
    case 0: {
      v1::ApplyRequest r;
      Decode(bytes, &r);
      break;
    }
    case 1: {
      v1::DeleteRequest r;
      if (Decode(bytes, &r)) {
        for (const v1::ObjectRef& ref : r.refs()) (void)FromProtoKind(ref.kind());
      }
      break;
    }
    case 2: {
      v1::RegisterRequest r;
      if (Decode(bytes, &r)) ConvertWorkload(r.workload());
      break;
    }
    case 3: {
      v1::RegisterBatchRequest r;
      if (Decode(bytes, &r)) {
        for (const v1::Workload& w : r.workloads()) ConvertWorkload(w);
      }
      break;
    }
    case 4: {
      v1::DeregisterRequest r;
      Decode(bytes, &r);
      break;
    }
    case 5: {
      v1::GetRequest r;
      if (Decode(bytes, &r)) (void)FromProtoKind(r.ref().kind());
      break;
    }
    case 6: {
      v1::ListRequest r;
      if (Decode(bytes, &r)) (void)FromProtoKind(r.kind());
      break;
    }
    case 7: {
      v1::WatchRequest r;
      if (Decode(bytes, &r)) {
        for (int k : r.kinds()) (void)FromProtoKind(static_cast<v1::Kind>(k));
      }
      break;
    }
    case 8: {
      v1::GetCaBundleRequest r;
      Decode(bytes, &r);
      break;
    }
    case 9: {
      v1::GetCertificateRequest r;
      Decode(bytes, &r);
      break;
    }
    default: {
      // Not a request, but what Get/List/Watch clients decode from an agent,
      // and the message holding every kind of object.
      v1::Object r;
      if (Decode(bytes, &r)) ConvertObject(r);
      v1::GetCredentialsRequest c;
      Decode(bytes, &c);
      break;
    }
  }
}

}  // namespace

// protobuf logs every string field with invalid UTF-8 it refuses: noise here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint8_t method = data[0];
  std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  size_t split = body.empty() ? 0 : data[1] % (body.size() + 1);

  // The server's decoder limit is the default; a small one here too, so the
  // RESOURCE_EXHAUSTED path is reached with small inputs.
  GrpcMessageDecoder decoder(data[1] & 0x80 ? 64 : podless::runtime::kDefaultMaxGrpcMessageSize);
  std::vector<std::string> messages;
  podless::Status fed = decoder.Feed(body.substr(0, split), messages);
  if (fed.ok()) fed = decoder.Feed(body.substr(split), messages);
  if (!fed.ok()) {
    Check(!decoder.at_message_boundary(), "failed decoder claims a message boundary");
    Check(!fed.error().message.empty(), "framing error without a message");
  }
  for (const std::string& message : messages) {
    Check(message.size() <= decoder.max_message_size(), "message above the limit");
    HandleRequest(method, message);
  }
  // A message framed by us comes out of a fresh decoder whole.
  if (!messages.empty()) {
    GrpcMessageDecoder fresh;
    std::vector<std::string> again;
    Check(fresh.Feed(podless::runtime::FrameGrpcMessage(messages[0]), again).ok() &&
              again.size() == 1 && again[0] == messages[0] && fresh.at_message_boundary(),
          "framing round trip");
  }
  return 0;
}
