#include "tools/replica_serve.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/model_session.h"
#include "worker/batch_runner.h"
#include "worker/cluster_leader.h"
#include "worker/engine_loop.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "worker";

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

}  // namespace

std::unique_ptr<ClusterLeader> RegisterReplica(const ReplicaRegistration& o) {
  ClusterLeaderOptions leader;
  leader.coordinator = o.coordinator;
  if (!o.auth_token_file.empty()) {
    auto token = ReadAuthTokenFile(o.auth_token_file);
    if (!token.ok()) {
      Fail(kName, std::string(token.status().message()), kExitUsage);
      return nullptr;
    }
    leader.auth_token = *std::move(token);
  }
  if (!o.tls_root_file.empty()) {
    auto root = ReadFlagFile(o.tls_root_file, "--tls-root");
    if (!root.ok()) {
      Fail(kName, std::string(root.status().message()), kExitUsage);
      return nullptr;
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(root);
    leader.credentials = grpc::SslCredentials(ssl);
  }
  tessera::cluster::v1::Register& r = leader.registration;
  r.set_model(o.served_model_name);
  r.set_tp(o.tp);
  r.set_pp(o.pp);
  r.set_sequence_parallel(o.sp);
  r.set_block_size(o.engine->block_size);
  r.set_max_num_seqs(o.engine->max_num_seqs);
  for (int rank = 0; rank < o.tp * o.pp; ++rank) {
    tessera::cluster::v1::RankInfo* info = r.add_ranks();
    info->set_rank(rank);
    info->set_device(o.backend);
    if (rank == 0) info->set_host(HostName());
  }
  absl::StatusOr<std::unique_ptr<ClusterLeader>> registered = ClusterLeader::Register(leader);
  if (!registered.ok()) {
    Fail(kName, std::string(registered.status().message()), kExitFailure);
    return nullptr;
  }
  std::fprintf(stderr, "tessera-worker: registered with %s as replica %s\n", o.coordinator.c_str(),
               (*registered)->registered().replica_id().c_str());
  return *std::move(registered);
}

int ServeReplica(const ReplicaServeOptions& o, ClusterLeader* leader) {
  ModelSession session;
  if (int code = OpenModelSession(kName,
                                  {.model = o.model,
                                   .backend = o.backend,
                                   .threads = o.threads,
                                   .deterministic = o.deterministic,
                                   .pack_weights = !o.no_pack_weights,
                                   .fp8_weights = o.fp8_weights,
                                   .tensor_parallel = o.tensor_parallel,
                                   .stage = o.stage},
                                  &session);
      code != kExitOk) {
    return code;
  }
  const int64_t context = session.model->config().max_position_embeddings;
  BatchRunnerOptions runner_options = EngineRunnerOptions(*o.engine, context);
  runner_options.model_group = o.model_group;
  runner_options.role = o.role;
  auto runner = BatchRunner::Create(session.model.get(), runner_options);
  if (!runner.ok()) return FailStatus(kName, runner.status());
  std::fprintf(stderr, "%s\n", (*runner)->StartupReport().c_str());
  auto engine = EngineLoop::Start(*std::move(runner), session.tokenizer.get());
  if (!engine.ok()) return FailStatus(kName, engine.status());
  std::fprintf(stderr, "tessera-worker: serving\n");
  if (o.on_serving) o.on_serving();
  const absl::Status s = leader->Serve(engine->get());
  engine->reset();  // stops the engine before the followers are told to stop
  return Fail(kName, std::string(s.message()), kExitFailure);
}

}  // namespace tessera
