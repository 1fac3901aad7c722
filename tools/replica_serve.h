// `tessera-worker --coordinator HOST:PORT`: rank 0 of a replica loads its shard, runs the
// engine (worker/engine_loop.h) and serves it to the coordinator over tessera.cluster.v1
// (worker/cluster_leader.h) until the coordinator goes away.
#pragma once

#include <string>

#include "model/llama_model.h"
#include "tools/engine_flags.h"
#include "worker/model_group.h"
#include "worker/stage_runner.h"

namespace tessera {

struct ReplicaServeOptions {
  std::string coordinator;  // host:port
  std::string auth_token_file;
  std::string tls_root_file;      // PEM of the CA that signed the coordinator's certificate
  std::string served_model_name;  // the name the coordinator serves the model under
  std::string model;
  std::string backend;
  int threads = 0;
  bool deterministic = false;
  int tp = 1;
  int pp = 1;
  bool sp = false;
  const EngineFlags* engine = nullptr;  // not null
  const TensorParallelShard* tensor_parallel = nullptr;
  const StageShard* stage = nullptr;
  ModelGroupLeader* model_group = nullptr;
  RankRole role = {};
};

// Returns the process exit code: 1 when the coordinator cannot be reached, refuses the
// replica or goes away (a replica is fail-stop), 2 for bad usage.
int ServeReplica(const ReplicaServeOptions& options);

}  // namespace tessera
