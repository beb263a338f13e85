#include "runtime/grpc/framing.h"

#include <doctest.h>

#include <string>
#include <vector>

#include "runtime/grpc/status.h"

namespace podless::runtime {
namespace {

std::string Header(uint8_t flag, uint32_t length) {
  return std::string{static_cast<char>(flag), static_cast<char>(length >> 24),
                     static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                     static_cast<char>(length)};
}

TEST_CASE("GrpcFraming: a frame is a zero flag, a big-endian length and the message") {
  CHECK(FrameGrpcMessage("hello") == Header(0, 5) + "hello");
  const std::string big(300, 'x');
  CHECK(FrameGrpcMessage(big) == std::string("\0\0\0\x01\x2c", 5) + big);
}

TEST_CASE("GrpcMessageDecoder: reassembles messages split across reads, byte by byte") {
  std::string wire;
  AppendGrpcFrame(wire, "first message");
  AppendGrpcFrame(wire, std::string(1000, 'b'));
  AppendGrpcFrame(wire, "third");
  GrpcMessageDecoder decoder(1 << 20);
  std::vector<std::string> messages;
  for (size_t i = 0; i < wire.size(); ++i) {
    REQUIRE(decoder.Feed(std::string_view(wire).substr(i, 1), messages).ok());
    // Between messages the decoder reports a boundary, never inside one.
    const bool boundary = i + 1 == 5 + 13 || i + 1 == 5 + 13 + 5 + 1000 || i + 1 == wire.size();
    CHECK(decoder.at_message_boundary() == boundary);
  }
  REQUIRE(messages.size() == 3);
  CHECK(messages[0] == "first message");
  CHECK(messages[1] == std::string(1000, 'b'));
  CHECK(messages[2] == "third");
}

TEST_CASE("GrpcMessageDecoder: many messages in one read, including zero-length ones") {
  std::string wire;
  AppendGrpcFrame(wire, "");
  AppendGrpcFrame(wire, "x");
  AppendGrpcFrame(wire, "");
  GrpcMessageDecoder decoder(16);
  std::vector<std::string> messages;
  REQUIRE(decoder.Feed(wire, messages).ok());
  REQUIRE(messages.size() == 3);
  CHECK(messages[0].empty());
  CHECK(messages[1] == "x");
  CHECK(messages[2].empty());
  CHECK(decoder.at_message_boundary());
}

TEST_CASE("GrpcMessageDecoder: a header announcing more than the limit fails at once") {
  GrpcMessageDecoder decoder(1024);
  std::vector<std::string> messages;
  // Only the 5-byte header arrives: the decoder must not wait for (or
  // buffer) the body before refusing it.
  Status status = decoder.Feed(Header(0, 1025), messages);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kResourceExhausted);
  CHECK(status.error().message == "grpc message of 1025 bytes exceeds the limit of 1024 bytes");
  // It stays failed.
  CHECK_FALSE(decoder.Feed(FrameGrpcMessage("ok"), messages).ok());
  CHECK(messages.empty());
}

TEST_CASE("GrpcMessageDecoder: a message of exactly the limit is accepted") {
  GrpcMessageDecoder decoder(1024);
  std::vector<std::string> messages;
  REQUIRE(decoder.Feed(FrameGrpcMessage(std::string(1024, 'm')), messages).ok());
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].size() == 1024);
}

TEST_CASE("GrpcMessageDecoder: compressed or malformed flags are refused") {
  std::vector<std::string> messages;
  GrpcMessageDecoder compressed;
  Status status = compressed.Feed(Header(1, 2) + "zz", messages);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().code == ErrorCode::kInternal);
  CHECK(status.error().message.find("compressed") != std::string::npos);

  GrpcMessageDecoder bad_flag;
  status = bad_flag.Feed(Header(7, 0), messages);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message.find("compressed-flag byte is 7") != std::string::npos);
  CHECK(messages.empty());
}

TEST_CASE("GrpcMessageDecoder: a partial header or body is not a boundary") {
  GrpcMessageDecoder decoder;
  std::vector<std::string> messages;
  REQUIRE(decoder.Feed(Header(0, 4).substr(0, 3), messages).ok());
  CHECK_FALSE(decoder.at_message_boundary());
  REQUIRE(decoder.Feed(Header(0, 4).substr(3) + "ab", messages).ok());
  CHECK_FALSE(decoder.at_message_boundary());
  REQUIRE(decoder.Feed("cd", messages).ok());
  CHECK(decoder.at_message_boundary());
  REQUIRE(messages.size() == 1);
  CHECK(messages[0] == "abcd");
}

TEST_CASE("GrpcStatus: grpc-message is percent-encoded outside printable ASCII and for '%'") {
  const std::string message = "a.yaml:3:5: spec.replicas: 100% too many\nsecond line: caf\xc3\xa9";
  const std::string encoded = PercentEncodeGrpcMessage(message);
  CHECK(encoded == "a.yaml:3:5: spec.replicas: 100%25 too many%0Asecond line: caf%C3%A9");
  CHECK(PercentDecodeGrpcMessage(encoded) == message);
  // Lenient decoding: a malformed escape stays as it is.
  CHECK(PercentDecodeGrpcMessage("50%zz and %4") == "50%zz and %4");
}

TEST_CASE("GrpcStatus: every ErrorCode maps to its own gRPC code and back") {
  const ErrorCode codes[] = {
      ErrorCode::kInvalidArgument,    ErrorCode::kNotFound,          ErrorCode::kAlreadyExists,
      ErrorCode::kFailedPrecondition, ErrorCode::kResourceExhausted, ErrorCode::kPermissionDenied,
      ErrorCode::kUnavailable,        ErrorCode::kDeadlineExceeded,  ErrorCode::kInternal,
  };
  for (ErrorCode code : codes) {
    CAPTURE(ErrorCodeName(code));
    CHECK(FromGrpcCode(ToGrpcCode(code)) == code);
    CHECK(IsExactErrorCode(ToGrpcCode(code)));
    CHECK(std::string(GrpcCodeName(ToGrpcCode(code))) == ErrorCodeName(code));
  }
  CHECK(static_cast<int>(ToGrpcCode(ErrorCode::kInvalidArgument)) == 3);
  CHECK(static_cast<int>(ToGrpcCode(ErrorCode::kResourceExhausted)) == 8);
  CHECK_FALSE(IsExactErrorCode(GrpcCode::kUnimplemented));
  CHECK(ParseGrpcStatus("12") == GrpcCode::kUnimplemented);
  CHECK(ParseGrpcStatus("17") == GrpcCode::kUnknown);
  CHECK(ParseGrpcStatus("x") == GrpcCode::kUnknown);
}

}  // namespace
}  // namespace podless::runtime
