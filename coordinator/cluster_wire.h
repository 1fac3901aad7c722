// The coordinator's request and event types in tessera.cluster.v1 messages and back, for
// both ends of the leader stream (coordinator/cluster_service.h, worker/cluster_leader.h).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/replica.h"
#include "coordinator/token_request.h"
#include "parallel/shard_plan.h"
#include "tessera/cluster/v1/cluster.pb.h"

namespace tessera {

tessera::cluster::v1::RunRequest ToRunRequest(const TokenRequest& request);
// INVALID_ARGUMENT naming the field when the coordinator sent something the leader cannot
// run (a generation config that does not parse, a bad number).
[[nodiscard]] absl::StatusOr<TokenRequest> FromRunRequest(
    const tessera::cluster::v1::RunRequest& run);

tessera::cluster::v1::TokenEvent ToTokenEvent(const std::string& request_id,
                                              const ReplicaEvent& event);
ReplicaEvent FromTokenEvent(const tessera::cluster::v1::TokenEvent& event);

tessera::cluster::v1::ShardPlan ToShardPlanProto(const ShardPlan& plan);
// INVALID_ARGUMENT when the message does not describe tp x pp slices.
[[nodiscard]] absl::StatusOr<ShardPlan> FromShardPlanProto(
    const tessera::cluster::v1::ShardPlan& plan);

tessera::cluster::v1::Load ToLoadProto(const ReplicaLoad& load);
ReplicaLoad FromLoadProto(const tessera::cluster::v1::Load& load);

}  // namespace tessera
