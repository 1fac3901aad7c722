// tessera.cluster.v1.Cluster: replica leaders dial in (DESIGN.md §5). A leader registers
// for a model the coordinator serves; the coordinator checks its layout with the shard
// planner and answers with the plan; the replica then joins the model's routing table
// (ready while its heartbeats say so). Requests go down the stream as RunRequests and
// token events come back to the calls waiting for them. When the stream ends, or no
// heartbeat arrives within `heartbeat_timeout`, the replica is lost: it leaves the table
// and its requests end with UNAVAILABLE naming it, while other replicas keep serving.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/model_registry.h"
#include "grpcpp/grpcpp.h"
#include "tessera/cluster/v1/cluster.grpc.pb.h"

namespace tessera {

struct ClusterServiceOptions {
  std::string auth_token;  // leaders must send it too, when set
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(10);
};

class LeaderConnection;

class ClusterService final : public tessera::cluster::v1::Cluster::CallbackService {
 public:
  // `registry` must outlive the service. Starts the heartbeat watchdog.
  ClusterService(ModelRegistry* registry, ClusterServiceOptions options);
  ~ClusterService() override;

  grpc::ServerBidiReactor<tessera::cluster::v1::LeaderMessage,
                          tessera::cluster::v1::CoordinatorMessage>*
  Connect(grpc::CallbackServerContext* context) override;

  // Registered replicas now connected.
  int connected() const;
  // Ends every leader's stream (the replicas are lost); for shutdown.
  void CloseAll(const std::string& reason);

 private:
  friend class LeaderConnection;
  void Forget(const std::shared_ptr<LeaderConnection>& connection);

  ModelRegistry* registry_;
  ClusterServiceOptions options_;
  std::atomic<int64_t> next_replica_ = 0;
  mutable absl::Mutex mu_;
  std::vector<std::weak_ptr<LeaderConnection>> connections_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread watchdog_;
};

}  // namespace tessera
