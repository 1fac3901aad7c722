// Small bridges between abseil and gRPC: status codes (the same numbers on both sides),
// bearer-token checks, immediate answers, and deadlines.
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace tessera {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// OK when `token` is empty (no auth configured) or the call's `authorization` metadata is
// "Bearer <token>"; else UNAUTHENTICATED. Compares in constant time.
grpc::Status CheckBearerToken(const grpc::ServerContextBase& context, std::string_view token);

// Answers a unary callback call now with `status` (the handler has filled the response).
inline grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context,
                                         grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// The call's deadline as absl::Time (InfiniteFuture when the client set none).
absl::Time CallDeadline(const grpc::ServerContextBase& context);

}  // namespace tessera
