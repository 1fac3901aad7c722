#include "coordinator/proto_convert.h"

#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace tessera {
namespace {

using google::protobuf::FieldDescriptor;
using nlohmann::json;

json ScalarToJson(const google::protobuf::Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64:
      return r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT:
      return r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    default:
      return nullptr;
  }
}

json RepeatedScalarToJson(const google::protobuf::Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  json out = json::array();
  for (int i = 0; i < r->FieldSize(m, f); ++i) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        out.push_back(r->GetRepeatedInt32(m, f, i));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        out.push_back(r->GetRepeatedString(m, f, i));
        break;
      default:
        break;  // DecodingSettings has no other repeated scalars
    }
  }
  return out;
}

// The generation_config.json object of the settings that are set. Nested messages take
// the JSON shapes transformers uses for them.
json DecodingToJson(const tessera::v1::DecodingSettings& d) {
  json j = json::object();
  std::vector<const FieldDescriptor*> fields;
  d.GetReflection()->ListFields(d, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string& name = f->name();
    if (name == "logit_bias") {
      json bias = json::object();
      for (const auto& [id, value] : d.logit_bias()) bias[std::to_string(id)] = value;
      j[name] = std::move(bias);
    } else if (name == "sequence_bias") {
      json list = json::array();
      for (const auto& b : d.sequence_bias()) {
        list.push_back(
            json::array({json(std::vector<int32_t>(b.ids().begin(), b.ids().end())), b.bias()}));
      }
      j[name] = std::move(list);
    } else if (name == "bad_words_ids") {
      json list = json::array();
      for (const auto& ids : d.bad_words_ids()) {
        list.push_back(std::vector<int32_t>(ids.ids().begin(), ids.ids().end()));
      }
      j[name] = std::move(list);
    } else if (name == "early_stopping") {
      // true / false / "never"; anything else is passed on for the parser to refuse.
      const std::string& v = d.early_stopping();
      j[name] = v == "true" ? json(true) : v == "false" ? json(false) : json(v);
    } else if (f->is_repeated()) {
      j[name] = RepeatedScalarToJson(d, f);
    } else {
      j[name] = ScalarToJson(d, f);
    }
  }
  return j;
}

}  // namespace

json GenerateRequestToJson(const tessera::v1::GenerateRequest& request) {
  json j = DecodingToJson(request.decoding());
  switch (request.input_case()) {
    case tessera::v1::GenerateRequest::kPrompt:
      j["prompt"] = request.prompt();
      break;
    case tessera::v1::GenerateRequest::kMessages: {
      json messages = json::array();
      for (const auto& m : request.messages().messages()) {
        messages.push_back({{"role", m.role()}, {"content", m.content()}});
      }
      j["messages"] = std::move(messages);
      break;
    }
    default:
      break;  // neither: BuildTokenRequest names the missing field
  }
  if (request.priority() != 0) j["priority"] = request.priority();
  return j;
}

tessera::v1::FinishReason FinishReasonToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return tessera::v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return tessera::v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
    case FinishReason::kAborted:
      return tessera::v1::FINISH_REASON_CANCELLED;
    case FinishReason::kDeadline:
      return tessera::v1::FINISH_REASON_DEADLINE;
    default:
      return tessera::v1::FINISH_REASON_UNSPECIFIED;
  }
}

}  // namespace tessera
