// `tessera-worker`: one rank of a model sharded by tensor and pipeline parallelism,
// launched by mpirun:
//
//   mpirun -np N tessera-worker --model M [--tp T] [--pp P] [--sp]
//                               --input requests.jsonl [--output out.jsonl]
//
// N = T x P ranks, numbered stage-major (parallel/topology.h). Every rank reads its place
// from MPI, computes the same ShardPlan (a pure function of the model's shapes and the
// layout) and maps only its slices of the weights: its stage's layers, its tensor slices.
// Rank 0, the leader, runs the engine over the JSONL batch exactly as `tessera generate
// --input` does (tools/batch_generate.h: same line format, same output) and sends each
// step's work to the others (worker/model_group.h); with stages it keeps up to pp disjoint
// batches in flight, each split into micro-batches that flow through them
// (worker/stage_runner.h). With --coordinator it serves the coordinator's requests instead.
//
// A rank that fails or dies ends the job: it exits non-zero, and mpirun then stops the
// others and names the rank ("... process rank 1 ... exited on signal 9").
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/cluster_wire.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "parallel/mpi_communicator.h"
#include "parallel/nccl_communicator.h"
#include "parallel/shard_plan.h"
#include "parallel/timed_communicator.h"
#include "parallel/topology.h"
#include "tools/backend_flags.h"
#include "tools/batch_generate.h"
#include "tools/cli_util.h"
#include "tools/random_model.h"
#include "tools/command.h"
#include "tools/decoding_flags.h"
#include "tools/local_gpu.h"
#include "tools/model_session.h"
#include "tools/replica_serve.h"
#include "worker/model_group.h"
#include "worker/rank_health.h"

namespace tessera {
namespace {

struct WorkerOptions {
  std::string model = "default";
  std::string backend = "cpu";
  int threads = 0;
  int tp = 0;  // 0: the number of ranks / pp
  int pp = 1;
  int micro_batches = 0;  // 0: 2 x pp
  int batches_in_flight = 0;  // 0: pp
  bool sp = false;
  bool deterministic = false;
  bool no_pack_weights = false;  // BackendOptions::pack_weights off
  bool fp8_weights = false;      // --quantization fp8
  bool chat = false;
  std::string chat_template_file;
  DecodingFlags decoding;
  BatchFlags batch;
  // Serving a coordinator instead of a batch.
  std::string coordinator;
  std::string served_model_name;
  std::string auth_token_file;
  std::string tls_root_file;
  int health_port = -1;  // -1: none
};

// The first rank on each host serves grpc.health.v1 on --health-port (one endpoint per
// pod); null for the other ranks and without the flag.
absl::StatusOr<std::unique_ptr<RankHealthServer>> StartRankHealth(const WorkerOptions& o,
                                                                  int rank) {
  if (o.health_port < 0) return nullptr;
  const char* local_rank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (local_rank != nullptr ? std::string(local_rank) != "0" : rank != 0) return nullptr;
  return RankHealthServer::Start("0.0.0.0", o.health_port);
}

// Prints "tessera-worker [rank R]: message" and returns `code`.
int Fail(int rank, const std::string& message, int code) {
  std::fprintf(stderr, "tessera-worker [rank %d]: %s\n", rank, message.c_str());
  return code;
}

// The tensor slices of every rank, from the model file's shapes.
absl::StatusOr<ShardPlan> PlanForModel(const std::string& model, int tp, int pp, bool sp) {
  ASSIGN_OR_RETURN(const std::string path, ResolveModelPath(model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  PlannerInput in;
  in.model = store->config();
  in.tp = tp;
  in.pp = pp;
  in.sequence_parallel = sp;
  // Row-parallel splits of the down projection fall on its quantization blocks.
  ASSIGN_OR_RETURN(in.ffn_alignment, FfnAlignmentOf(*store));
  // Only the slices matter here: memory is sized by the engine's --kv-cache-mb.
  const int64_t pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  in.rank_memory_bytes.assign(static_cast<size_t>(tp * pp), pages * page);
  return PlanShards(in);
}

// The coordinator's plan, from rank 0 (which registered) to every rank: a length (-1 when
// rank 0 could not register, so that every rank stops) and the serialized message.
absl::StatusOr<ShardPlan> SharePlan(Communicator& group, const ClusterLeader* leader) {
  std::string bytes;
  std::array<int64_t, 1> length = {-1};
  if (group.rank() == 0 && leader != nullptr) {
    bytes = leader->registered().plan().SerializeAsString();
    length[0] = static_cast<int64_t>(bytes.size());
  }
  RETURN_IF_ERROR(group.Broadcast(std::as_writable_bytes(std::span(length)), 0));
  if (length[0] < 0) {
    return absl::UnavailableError("rank 0 could not register with the coordinator");
  }
  bytes.resize(static_cast<size_t>(length[0]));
  RETURN_IF_ERROR(
      group.Broadcast(std::as_writable_bytes(std::span(bytes.data(), bytes.size())), 0));
  tessera::cluster::v1::ShardPlan plan;
  if (!plan.ParseFromString(bytes)) {
    return absl::DataLossError("the shard plan broadcast from rank 0 does not parse");
  }
  return FromShardPlanProto(plan);
}

int Run(const WorkerOptions& o) {
  auto world = MpiCommunicator::World();
  if (!world.ok()) return Fail(-1, std::string(world.status().message()), kExitFailure);
  MpiCommunicator& group = **world;
  const int rank = group.rank();
  const int tp = o.tp == 0 ? group.size() / o.pp : o.tp;
  if (tp * o.pp != group.size()) {
    return Fail(rank,
                absl::StrCat("--tp ", tp, " x --pp ", o.pp, " must equal the number of ranks (",
                             group.size(), ")"),
                kExitUsage);
  }
  if (o.deterministic && o.sp) {
    return Fail(rank, "--deterministic does not combine with --sp", kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<RankHealthServer>> started = StartRankHealth(o, rank);
  if (!started.ok()) return Fail(rank, std::string(started.status().message()), kExitFailure);
  std::unique_ptr<RankHealthServer> health = *std::move(started);
  auto topology = Topology::Create(group.size(), rank, tp, o.pp);
  if (!topology.ok()) return Fail(rank, std::string(topology.status().message()), kExitUsage);
  // --model random:...: every rank synthesizes the same weights (a pure function of shape,
  // dtype and seed) into a temporary file of its own, removed when the rank exits.
  std::unique_ptr<TempModelFile> random_model;
  std::string model = o.model;
  if (IsRandomModel(o.model)) {
    auto synthesized = SynthesizeTempModel(o.model, /*progress_bar=*/rank == 0);
    if (!synthesized.ok()) {
      return Fail(rank, std::string(synthesized.status().message()),
                  absl::IsInvalidArgument(synthesized.status()) ? kExitUsage : kExitFailure);
    }
    random_model = *std::move(synthesized);
    model = random_model->path();
  }
  // Serving a coordinator, the replica registers before it loads and every rank loads the
  // coordinator's plan; a batch job plans for itself.
  std::unique_ptr<ClusterLeader> cluster;
  absl::StatusOr<ShardPlan> plan = absl::UnknownError("");
  if (!o.coordinator.empty()) {
    if (rank == 0) {
      cluster = RegisterReplica({.coordinator = o.coordinator,
                                 .auth_token_file = o.auth_token_file,
                                 .tls_root_file = o.tls_root_file,
                                 .served_model_name = o.served_model_name.empty()
                                                          ? DefaultServedModelName(o.model)
                                                          : o.served_model_name,
                                 .backend = o.backend,
                                 .tp = tp,
                                 .pp = o.pp,
                                 .sp = o.sp,
                                 .engine = &o.batch});
    }
    plan = SharePlan(group, cluster.get());
    if (!plan.ok()) return Fail(rank, std::string(plan.status().message()), kExitFailure);
    if (plan->tp != tp || plan->pp != o.pp) {
      return Fail(rank, "the coordinator's plan is for another layout", kExitFailure);
    }
  } else {
    plan = PlanForModel(model, tp, o.pp, o.sp);
    if (!plan.ok()) return Fail(rank, std::string(plan.status().message()), kExitUsage);
  }
  // The ranks of this stage (tensor group), and this tp rank in every stage (pipeline).
  auto tensor_group = group.Split(topology->stage(), topology->tp_rank());
  if (!tensor_group.ok()) return Fail(rank, std::string(tensor_group.status().message()), 1);
  auto pipeline_group = group.Split(topology->tp_rank(), topology->stage());
  if (!pipeline_group.ok()) return Fail(rank, std::string(pipeline_group.status().message()), 1);
  // On GPUs the tensor group's collectives run over NCCL on device buffers (the model's
  // activations stay on the GPU); MPI, over the same ranks, only brings it up.
  std::unique_ptr<NcclCommunicator> nccl_tensor_group;
  Communicator* tensor_comm = tensor_group->get();
  if (o.backend == "cuda" && tp > 1) {
    auto nccl = NcclCommunicator::Create(**tensor_group, /*device=*/0);  // tools/local_gpu.h
    if (!nccl.ok()) return Fail(rank, std::string(nccl.status().message()), kExitFailure);
    nccl_tensor_group = *std::move(nccl);
    tensor_comm = nccl_tensor_group.get();
  }
  // --deterministic: batch-invariant kernels and whole sums on one rank (bit-equal to one
  // rank in any layout; llama_model.h).
  // Timed, so that each rank can report its communication apart from its compute.
  TimedCommunicator timed_tensor_group(tensor_comm);
  TensorParallelShard shard{plan->tensor, &timed_tensor_group, o.sp, o.deterministic};
  const StageShard& stage = plan->stages[static_cast<size_t>(topology->stage())];
  const RankRole role{.pipeline = pipeline_group->get(),
                      .world = &group,
                      .last_stage_leader = topology->RankAt(o.pp - 1, 0),
                      .micro_batches = o.micro_batches > 0 ? o.micro_batches : 2 * o.pp,
                      .batches_in_flight = o.batches_in_flight > 0 ? o.batches_in_flight : o.pp,
                      .tensor_timer = &timed_tensor_group};

  if (rank != 0) {
    ModelSession session;
    if (int code = OpenModelSession(absl::StrCat("worker rank ", rank),
                                    {.model = model,
                                     .backend = o.backend,
                                     .threads = o.threads,
                                     .deterministic = o.deterministic,
                                     .pack_weights = !o.no_pack_weights,
                                     .fp8_weights = o.fp8_weights,
                                     .tensor_parallel = &shard,
                                     .stage = &stage,
                                     .progress_bar = false},
                                    &session);
        code != kExitOk) {
      return code;
    }
    if (health != nullptr) health->SetServing(true);  // loaded; runs the leader's steps
    const absl::Status s = RunModelGroupFollower(*session.model, group, role);
    return s.ok() ? kExitOk : Fail(rank, std::string(s.message()), kExitFailure);
  }
  std::fprintf(stderr, "tessera-worker: %d ranks, tensor parallel %d%s, %d pipeline stage(s)\n%s\n",
               group.size(), tp, o.sp ? " with sequence parallelism" : "", o.pp,
               plan->ToString().c_str());
  ModelGroupLeader leader(&group);
  const int code = cluster != nullptr
                       ? ServeReplica({.model = model,
                                       .backend = o.backend,
                                       .threads = o.threads,
                                       .deterministic = o.deterministic,
                                       .no_pack_weights = o.no_pack_weights,
                                       .fp8_weights = o.fp8_weights,
                                       .engine = &o.batch,
                                       .tensor_parallel = &shard,
                                       .stage = &stage,
                                       .model_group = &leader,
                                       .role = role,
                                       .on_serving =
                                           [&health] {
                                             if (health != nullptr) health->SetServing(true);
                                           }},
                                      cluster.get())
                       : RunBatchGenerate({.model = model,
                                           .backend = o.backend,
                                           .threads = o.threads,
                                           .deterministic = o.deterministic,
                                           .no_pack_weights = o.no_pack_weights,
                                       .fp8_weights = o.fp8_weights,
                                           .chat = o.chat,
                                           .chat_template_file = o.chat_template_file,
                                           .decoding = &o.decoding,
                                           .batch = &o.batch,
                                           .tensor_parallel = &shard,
                                           .stage = &stage,
                                           .model_group = &leader,
                                           .role = role});
  // Also after a failure before the engine started: the followers must not wait forever.
  if (const absl::Status s = leader.SendShutdown(); !s.ok()) {
    return Fail(rank, std::string(s.message()), kExitFailure);
  }
  return code;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  using tessera::kExitUsage;
  auto o = std::make_shared<tessera::WorkerOptions>();
  CLI::App app{
      "One rank of a sharded Tessera model (tensor and pipeline parallel), launched with "
      "mpirun:\n"
      "  mpirun -np N tessera-worker --model M [--tp T] [--pp P] [--sp] --input requests.jsonl "
      "[--output out.jsonl]\n"
      "  mpirun -np N tessera-worker --model M [--tp T] [--pp P] --coordinator HOST:PORT\n"
      "Rank 0 runs the engine, over the JSONL batch (the format of `tessera generate "
      "--input`) or for a coordinator it registers with (tessera serve or "
      "tessera-coordinator); every rank holds its slice of the weights.",
      "tessera-worker"};
  app.add_option("--model", o->model,
                 "GGUF model file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (random weights "
                 "in a named shape, synthesized by every rank; see tessera synthesize --list)")
      ->capture_default_str();
  app.add_option("--tp", o->tp, "Tensor-parallel ranks per stage (0 = ranks / pp)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--pp", o->pp, "Pipeline stages (contiguous layer ranges)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--micro-batches", o->micro_batches,
                 "Micro-batches per step with pipeline stages (0 = 2 x pp)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batches-in-flight", o->batches_in_flight,
                 "Disjoint batches the leader keeps going through the stages at once, each "
                 "sequence in at most one (0 = pp)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--sp", o->sp,
               "Sequence parallelism (Megatron): norms and residuals on each rank's share of "
               "the rows; reduce-scatter / all-gather instead of all-reduce");
  app.add_option("--threads", o->threads, "CPU threads per rank (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backend", o->backend,
                 "Kernel backend: cpu, cpu-reference, or cuda (experimental: needs "
                 "TESSERA_EXPERIMENTAL_CUDA=1 until verified on a GPU)")
      ->capture_default_str();
  app.add_flag("--no-pack-weights", o->no_pack_weights,
               "Keep the weights in the GGUF file's layout, read straight from the mapping, "
               "instead of repacking Q4_0/Q4_1/Q8_0 matrices for the CPU's interleaved GEMM "
               "(faster load, slower prefill and decode)");
  tessera::AddQuantizationFlag(&app, &o->fp8_weights);
  app.add_flag("--deterministic", o->deterministic,
               "Batch-invariant kernels and whole sums on one rank: the tokens of one rank's "
               "--deterministic run, bit for bit, in any layout (not with --sp)");
  app.add_flag("--chat", o->chat, "Wrap each line's prompt as a user message");
  app.add_option("--chat-template", o->chat_template_file,
                 "File with a chat format name or a Jinja chat template");
  tessera::AddDecodingFlags(&app, &o->decoding);
  tessera::AddBatchFlags(&app, &o->batch, /*engine_flags_need_input=*/false);
  CLI::Option* coordinator = app.add_option(
      "--coordinator", o->coordinator,
      "Serve the coordinator at HOST:PORT (rank 0 registers the replica and runs its "
      "requests until the coordinator goes away)");
  coordinator->excludes(o->batch.input_option);
  app.add_option("--served-model-name", o->served_model_name,
                 "The model name the coordinator serves (default: --model)")
      ->needs(coordinator);
  app.add_option("--auth-token-file", o->auth_token_file,
                 "File with the coordinator's bearer token")
      ->needs(coordinator);
  app.add_option("--tls-root", o->tls_root_file,
                 "PEM file of the CA that signed the coordinator's certificate (TLS)")
      ->needs(coordinator);
  app.add_option("--health-port", o->health_port,
                 "Serve grpc.health.v1 on this port from the first rank of each host: "
                 "NOT_SERVING while loading, SERVING once the rank runs (for probes)")
      ->check(CLI::Range(0, 65535));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tessera-worker: %s (see tessera-worker --help)\n", e.what());
    return kExitUsage;
  }
  if (o->batch.input.empty() && o->coordinator.empty()) {
    std::fprintf(stderr, "tessera-worker: give --input FILE or --coordinator HOST:PORT\n");
    return kExitUsage;
  }
  // One GPU per rank, chosen before MPI or CUDA starts (tools/local_gpu.h).
  if (o->backend == "cuda") tessera::SelectLocalGpu();
  auto runtime = tessera::MpiRuntime::Init(&argc, &argv);
  if (!runtime.ok()) {
    std::fprintf(stderr, "tessera-worker: %s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  return tessera::Run(*o);
}
