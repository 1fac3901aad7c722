#include "coordinator/proto_wire.h"

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/slice.h"
#include "tokenizer/unicode_text.h"

namespace tessera {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

bool IsValidUtf8(std::string_view bytes) {
  return ValidUtf8Prefix(bytes).valid_bytes == bytes.size();
}

std::optional<std::string> FindIn(std::string_view data, const Descriptor* descriptor,
                                  const std::string& prefix, int depth) {
  if (depth > 32) return std::nullopt;  // protobuf's own parse bounds nesting; do not recurse far
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(data.data()),
                                            static_cast<int>(data.size()));
  absl::flat_hash_map<int, int> seen;  // per field number, for repeated fields' indices
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return std::nullopt;
    const FieldDescriptor* field =
        descriptor->FindFieldByNumber(WireFormatLite::GetTagFieldNumber(tag));
    const bool delimited =
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    if (field == nullptr || !delimited ||
        (field->type() != FieldDescriptor::TYPE_STRING &&
         field->type() != FieldDescriptor::TYPE_MESSAGE)) {
      if (!WireFormatLite::SkipField(&in, tag)) return std::nullopt;
      continue;
    }
    uint32_t length = 0;
    std::string payload;
    if (!in.ReadVarint32(&length) || !in.ReadString(&payload, static_cast<int>(length))) {
      return std::nullopt;
    }
    std::string path = prefix + field->name();
    if (field->is_repeated() && !field->is_map()) {
      absl::StrAppend(&path, "[", seen[field->number()]++, "]");
    }
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      if (!IsValidUtf8(payload)) return path;
    } else if (auto inner = FindIn(payload, field->message_type(), path + ".", depth + 1)) {
      return inner;
    }
  }
}

}  // namespace

std::optional<std::string> FindInvalidUtf8(std::string_view data, const Descriptor* descriptor) {
  return FindIn(data, descriptor, "", 0);
}

absl::Status ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return absl::InvalidArgumentError("the request could not be read");
  }
  std::string data;
  for (const grpc::Slice& s : slices) {
    data.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // Looked for first: the parser would log the failure before refusing the message.
  if (auto field = FindInvalidUtf8(data, message->GetDescriptor())) {
    return absl::InvalidArgumentError(absl::StrCat("field '", *field, "' is not valid UTF-8"));
  }
  if (message->ParseFromString(data)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the request is not a valid ", message->GetDescriptor()->full_name(), " message"));
}

absl::Status SerializeMessage(const google::protobuf::Message& message, grpc::ByteBuffer* buffer) {
  std::string data;
  if (!message.SerializeToString(&data)) {
    return absl::InternalError(
        absl::StrCat("cannot serialize a ", message.GetDescriptor()->full_name()));
  }
  grpc::Slice slice(data);
  *buffer = grpc::ByteBuffer(&slice, 1);
  return absl::OkStatus();
}

}  // namespace tessera
