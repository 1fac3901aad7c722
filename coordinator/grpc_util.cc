#include "coordinator/grpc_util.h"

#include <chrono>
#include <string>

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
  const std::string expected = std::string("Bearer ") + std::string(token);
  // Constant time in the expected length: no early exit on the first differing byte.
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  }
  if (diff != 0) {
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
