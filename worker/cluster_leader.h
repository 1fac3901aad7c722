// The leader's side of tessera.cluster.v1 (DESIGN.md §5). Rank 0 of a replica dials the
// coordinator and registers its model and layout before any rank loads; the coordinator's
// answer carries the ShardPlan its planner computed, which the leader hands to its ranks.
// From then on heartbeats carry the replica's load ("not ready" until Serve starts), and
// Serve runs the coordinator's requests on the engine (a Replica, worker/engine_loop.h):
// RunRequests go to it, its events go back as TokenEvents.
//
// A replica is fail-stop: when the coordinator goes away Serve returns and the caller ends
// the job (its ranks with it), as a lost rank ends it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/replica.h"
#include "grpcpp/grpcpp.h"
#include "tessera/cluster/v1/cluster.grpc.pb.h"

namespace tessera {

struct ClusterLeaderOptions {
  std::string coordinator;                                // host:port
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: plaintext
  std::string auth_token;  // sent as "authorization: Bearer <token>" when set
  tessera::cluster::v1::Register registration;
  // When notified, the leader leaves (its stream is cancelled). Null: never.
  absl::Notification* stop = nullptr;
  // How long Register waits for the coordinator to answer the connection (it may still be
  // starting).
  absl::Duration connect_timeout = absl::Seconds(30);
};

class ClusterLeader {
 public:
  // Dials (waiting up to connect_timeout for the coordinator) and registers. UNAVAILABLE when the
  // coordinator cannot be reached; its status when it refuses the replica (NOT_FOUND for
  // a model it does not serve, INVALID_ARGUMENT for a layout the model cannot take,
  // UNAUTHENTICATED without the right token).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ClusterLeader>> Register(
      const ClusterLeaderOptions& options);
  // Leaves the coordinator (if Serve did not run) and stops the heartbeats.
  ~ClusterLeader();

  const tessera::cluster::v1::Registered& registered() const { return registered_; }

  // Serves `replica` until the stream ends; always returns an error saying why
  // (UNAVAILABLE when the coordinator ended the stream). Call once.
  [[nodiscard]] absl::Status Serve(Replica* replica);

  ClusterLeader(const ClusterLeader&) = delete;
  ClusterLeader& operator=(const ClusterLeader&) = delete;

 private:
  class Outbox;
  using Stream = grpc::ClientReaderWriter<tessera::cluster::v1::LeaderMessage,
                                          tessera::cluster::v1::CoordinatorMessage>;
  explicit ClusterLeader(const ClusterLeaderOptions& options);
  void StartWriter(absl::Duration heartbeat);
  // Stops the writer and the stream; the final status.
  grpc::Status Close();

  ClusterLeaderOptions options_;
  std::unique_ptr<tessera::cluster::v1::Cluster::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<Stream> stream_;
  tessera::cluster::v1::Registered registered_;
  std::shared_ptr<Outbox> outbox_;  // shared with the engine's sinks, which may outlive Serve
  std::atomic<Replica*> replica_ = nullptr;  // for heartbeats; null until Serve
  std::thread writer_;
  bool closed_ = false;
};

// Register, then Serve: for callers whose engine exists before registering (tests).
[[nodiscard]] absl::Status RunClusterLeader(const ClusterLeaderOptions& options, Replica* replica);

}  // namespace tessera
