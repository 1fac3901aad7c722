// tessera.v1.Inference over gRPC's callback API: no handler blocks a thread while a request
// runs. Generate and Complete validate and tokenize the request (coordinator/
// token_request.h), pick the model's least-loaded ready replica and submit it; the
// replica's events come back on its thread and are turned into text
// (coordinator/completion_stream.h) and written as the client reads them. A client that
// cancels (or whose deadline passes) cancels its request on the replica, which frees its KV
// blocks within one step. A slow reader never stalls the replica: responses that wait for
// it are merged into one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "coordinator/model_registry.h"
#include "coordinator/request_gate.h"
#include "coordinator/serving_metrics.h"
#include "grpcpp/grpcpp.h"
#include "tessera/v1/inference.grpc.pb.h"

namespace tessera {

struct InferenceServiceOptions {
  std::string auth_token;             // non-empty: every call needs "authorization: Bearer <token>"
  ServingMetrics* metrics = nullptr;  // null: no metrics; else must outlive the service
};

// Generate, Complete and Tokenize, whose requests carry text, take raw bytes
// (coordinator/proto_wire.h) so that invalid UTF-8 is refused naming its field.
using InferenceServiceBase = tessera::v1::Inference::WithRawCallbackMethod_Generate<
    tessera::v1::Inference::WithRawCallbackMethod_Complete<
        tessera::v1::Inference::WithRawCallbackMethod_Tokenize<
            tessera::v1::Inference::CallbackService>>>;

class InferenceService final : public InferenceServiceBase {
 public:
  // `gate` (admission, drain, calls in flight) must outlive the service.
  InferenceService(RequestGate* gate, InferenceServiceOptions options);

  // GenerateRequest in, GenerateResponse messages out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  // GenerateRequest in, CompleteResponse out.
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  // TokenizeRequest in, TokenizeResponse out.
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const tessera::v1::DetokenizeRequest* request,
                                       tessera::v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const tessera::v1::ListModelsRequest* request,
                                       tessera::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const tessera::v1::GetModelInfoRequest* request,
                                         tessera::v1::ModelInfo* response) override;

 private:
  // Generate's and Complete's way in: the bearer token, the request's bytes, admission.
  // Every refusal is counted in the metrics, under the served model the request names.
  absl::StatusOr<AdmittedRequest> AdmitCall(const grpc::CallbackServerContext& context,
                                            const grpc::ByteBuffer& raw);

  RequestGate* gate_;
  ModelRegistry* registry_;
  InferenceServiceOptions options_;
};

}  // namespace tessera
