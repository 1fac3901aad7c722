// `tessera-worker --coordinator HOST:PORT` on rank 0: registers the replica with the
// coordinator before anything loads (its answer is the ShardPlan every rank then loads),
// then loads the leader's shard, runs the engine (worker/engine_loop.h) and serves it over
// tessera.cluster.v1 (worker/cluster_leader.h) until the coordinator goes away.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "model/llama_model.h"
#include "tools/engine_flags.h"
#include "worker/cluster_leader.h"
#include "worker/model_group.h"
#include "worker/stage_runner.h"

namespace tessera {

struct ReplicaRegistration {
  std::string coordinator;  // host:port
  std::string auth_token_file;
  std::string tls_root_file;      // PEM of the CA that signed the coordinator's certificate
  std::string served_model_name;  // the name the coordinator serves the model under
  std::string backend;
  int tp = 1;
  int pp = 1;
  bool sp = false;
  const EngineFlags* engine = nullptr;  // not null
};

// Dials and registers; prints the failure (tessera worker: ...) and returns null when the
// coordinator cannot be reached or refuses the replica, or a file cannot be read.
std::unique_ptr<ClusterLeader> RegisterReplica(const ReplicaRegistration& registration);

struct ReplicaServeOptions {
  std::string model;
  std::string backend;
  int threads = 0;
  bool deterministic = false;
  bool no_pack_weights = false;  // BackendOptions::pack_weights off
  bool fp8_weights = false;      // BackendOptions::fp8_weights (--quantization fp8)
  const EngineFlags* engine = nullptr;  // not null
  const TensorParallelShard* tensor_parallel = nullptr;
  const StageShard* stage = nullptr;
  ModelGroupLeader* model_group = nullptr;
  RankRole role = {};
  std::function<void()> on_serving;  // called once the engine serves (may be empty)
};

// Loads, starts the engine and serves `leader`'s coordinator. Returns the process exit
// code: 1 when the coordinator goes away (a replica is fail-stop) or the model fails.
int ServeReplica(const ReplicaServeOptions& options, ClusterLeader* leader);

}  // namespace tessera
