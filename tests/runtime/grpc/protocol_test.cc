#include "runtime/grpc/protocol.h"

#include <doctest.h>
#include <nghttp2/nghttp2.h>

namespace podless::runtime {
namespace {

using std::chrono::milliseconds;

TEST_CASE("grpc-timeout: encoded in the finest unit that fits 8 digits, parsed back rounded up") {
  CHECK(EncodeGrpcTimeout(milliseconds(0)) == "1m");  // positive, as the spec says
  CHECK(EncodeGrpcTimeout(milliseconds(-5)) == "1m");
  CHECK(EncodeGrpcTimeout(milliseconds(1500)) == "1500m");
  CHECK(EncodeGrpcTimeout(milliseconds(99'999'999)) == "99999999m");
  CHECK(EncodeGrpcTimeout(milliseconds(100'000'000)) == "100000S");
  CHECK(EncodeGrpcTimeout(milliseconds(int64_t{99'999'999} * 1000 + 1)) == "27778H");
  for (int64_t ms :
       {int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{123'456'789}, int64_t{99'999'999'000}}) {
    auto parsed = ParseGrpcTimeoutMs(EncodeGrpcTimeout(milliseconds(ms)));
    REQUIRE(parsed.has_value());
    CHECK(*parsed >= static_cast<uint64_t>(ms));  // never shorter than asked
  }
  CHECK(ParseGrpcTimeoutMs("1n") == 1);  // a tiny timeout is not "none"
  CHECK(ParseGrpcTimeoutMs("2M") == 120'000);
  CHECK_FALSE(ParseGrpcTimeoutMs("123456789m").has_value());  // 9 digits
  CHECK_FALSE(ParseGrpcTimeoutMs("5x").has_value());
  CHECK_FALSE(ParseGrpcTimeoutMs("m").has_value());
}

TEST_CASE("FinalStatus: trailers win; then a reset, an HTTP error, a cut response, in that order") {
  GrpcResponseState response;
  response.http_status = 200;
  response.grpc_status = GrpcCode::kNotFound;
  response.grpc_message = "no such thing";
  Status s = FinalStatus(response, "etcd");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kNotFound);
  CHECK(s.error().message == "no such thing");

  GrpcResponseState reset;
  reset.reset_code = NGHTTP2_ENHANCE_YOUR_CALM;
  std::string message;
  CHECK(FinalCode(reset, "the agent", &message) == GrpcCode::kResourceExhausted);
  CHECK(message == "the agent reset the stream (HTTP/2 ENHANCE_YOUR_CALM)");

  GrpcResponseState http;
  http.http_status = 503;
  CHECK(FinalCode(http, "etcd", &message) == GrpcCode::kUnavailable);
  CHECK(message == "etcd answered HTTP 503");

  GrpcResponseState cut;
  cut.http_status = 200;
  CHECK(FinalCode(cut, "etcd", &message) == GrpcCode::kInternal);
  CHECK(message == "etcd's response ended without a grpc-status");

  GrpcResponseState local;
  local.grpc_status = GrpcCode::kOk;
  local.local_error = MakeError(ErrorCode::kResourceExhausted, "too big");
  s = FinalStatus(local, "etcd");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message == "too big");

  GrpcResponseState ok;
  ok.grpc_status = GrpcCode::kOk;
  CHECK(FinalStatus(ok, "etcd").ok());
  // A code podless folds into another keeps its gRPC name in the message.
  CHECK(StatusOf(GrpcCode::kDataLoss, "gone").error().message.rfind("DATA_LOSS: gone", 0) == 0);
}

}  // namespace
}  // namespace podless::runtime
