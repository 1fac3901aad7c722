// Request and response messages as raw gRPC byte buffers, for the methods the service
// handles raw. Parsing a proto3 message fails on a string field that is not valid UTF-8,
// and gRPC's callback API then answers UNIMPLEMENTED with no message; handling the bytes
// here lets the client get INVALID_ARGUMENT naming the field instead.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace tessera {

// INVALID_ARGUMENT "field 'messages.messages[1].content' is not valid UTF-8" (the path of
// the first such string field), or "the request is not a valid tessera.v1.X message".
[[nodiscard]] absl::Status ParseMessage(const grpc::ByteBuffer& buffer,
                                        google::protobuf::Message* message);

// INTERNAL if the message cannot be serialized.
[[nodiscard]] absl::Status SerializeMessage(const google::protobuf::Message& message,
                                            grpc::ByteBuffer* buffer);

// The path of the first string field of `descriptor`'s type in the wire-format `data`
// whose value is not valid UTF-8 (nested messages and repeated fields included), if any.
std::optional<std::string> FindInvalidUtf8(std::string_view data,
                                           const google::protobuf::Descriptor* descriptor);

}  // namespace tessera
