#include "coordinator/grpc_util.h"

#include <chrono>
#include <string>

#include "coordinator/bearer_token.h"

namespace tessera {

grpc::Status CheckBearerToken(const grpc::ServerContextBase& context, std::string_view token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization' metadata (expected 'Bearer <token>')");
  }
  const std::string_view given(it->second.data(), it->second.size());
  if (!BearerTokenMatches(given, token)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "'authorization' metadata does not carry a valid bearer token");
  }
  return grpc::Status::OK;
}

absl::Time CallDeadline(const grpc::ServerContextBase& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace tessera
