// tessera.v1 messages to and from the coordinator's types. A GenerateRequest becomes the
// same JSON object a `tessera generate --input` line is (coordinator/token_request.h), so
// both front ends validate a request by the same rules and name fields the same way.
#pragma once

#include "engine/sequence.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/inference.pb.h"

namespace tessera {

// prompt or messages, the decoding settings that are set, and priority.
nlohmann::json GenerateRequestToJson(const tessera::v1::GenerateRequest& request);

tessera::v1::FinishReason FinishReasonToProto(FinishReason reason);

}  // namespace tessera
