// A rank's own grpc.health.v1 endpoint, so that Kubernetes can probe every pod of a worker
// group (not only the coordinator): NOT_SERVING while the rank starts and loads its weights,
// SERVING once it runs its part of the model. Service names "" and "tessera.worker".
//
// Thread-safety: SetServing from any thread.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"

namespace tessera {

class RankHealthServer {
 public:
  // INVALID_ARGUMENT for a port outside [1, 65535] (0 picks a free one), UNAVAILABLE when
  // it cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RankHealthServer>> Start(
      const std::string& host, int port);
  ~RankHealthServer();

  void SetServing(bool serving);
  int port() const { return port_; }

 private:
  grpc::CallbackGenericService unimplemented_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace tessera
