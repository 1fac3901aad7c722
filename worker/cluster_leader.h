// The leader's side of tessera.cluster.v1 (DESIGN.md §5): rank 0 of a replica dials the
// coordinator, registers its model and layout, and then serves the coordinator's requests
// with its engine (a Replica, worker/engine_loop.h) until the stream ends: RunRequests go
// to the engine, its events go back as TokenEvents, and a heartbeat carries its load.
//
// A replica is fail-stop: when the coordinator goes away the function returns and the
// caller ends the job (its ranks with it), as a lost rank ends it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "coordinator/replica.h"
#include "grpcpp/grpcpp.h"
#include "tessera/cluster/v1/cluster.pb.h"

namespace tessera {

struct ClusterLeaderOptions {
  std::string coordinator;                                // host:port
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: plaintext
  std::string auth_token;  // sent as "authorization: Bearer <token>" when set
  tessera::cluster::v1::Register registration;
  // Called once the coordinator accepted the registration (its plan's summary).
  std::function<void(const tessera::cluster::v1::Registered&)> on_registered;
  // When notified, the leader leaves (its stream is cancelled). Null: never.
  absl::Notification* stop = nullptr;
};

// Serves until the stream ends. UNAVAILABLE when the coordinator cannot be reached or
// closes the stream; the coordinator's status when it refuses the registration (e.g.
// NOT_FOUND for a model it does not serve, INVALID_ARGUMENT for a layout the model cannot
// take).
[[nodiscard]] absl::Status RunClusterLeader(const ClusterLeaderOptions& options, Replica* replica);

}  // namespace tessera
