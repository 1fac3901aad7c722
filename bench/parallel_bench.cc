// tessera_bench_parallel: one tp x pp layout of the real model under mpirun, timed on a
// fixed batch through the worker's StageRunner (no engine or sampling, so only the model,
// its collectives and the pipeline are measured):
//   mpirun -np N tessera_bench_parallel [--pp P] [--sp] [--micro-batches M] [--batch 16]
//                                       [--prompt 64] [--decode 32]
// prefill: one step over batch x prompt rows; decode: `decode` steps of batch rows (one
// new token per sequence). Every rank builds the same StepWork (the leader's broadcast is
// not timed). The tensor group's collectives and the pipeline's sends and receives go
// through timing wrappers: "communicating" is the tensor collectives' share of the time,
// "bubble" the share a stage spends in the pipeline's receives and sends (waiting for its
// neighbour, the transfer included), both the largest over the ranks. Rank 0 prints a
// line, or one JSON object with --json.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_communicator.h"
#include "parallel/shard_plan.h"
#include "parallel/timed_communicator.h"
#include "parallel/topology.h"
#include "worker/stage_runner.h"

namespace tessera {
namespace {

struct Options {
  std::string model = "default";
  std::string backend = "cpu";
  int threads = 1;
  int pp = 1;
  int micro_batches = 0;  // 0: 2 x pp
  bool sp = false;
  int batch = 16;
  int prompt = 64;
  int decode = 32;
  bool json = false;
};

// One phase's figures (the shares are the largest over the ranks).
struct Phase {
  double seconds = 0.0;
  double comm_share = 0.0;    // tensor collectives
  double bubble_share = 0.0;  // pipeline sends and receives
};

absl::Status Run(const Options& o, MpiCommunicator& world) {
  ASSIGN_OR_RETURN(const std::string path, ResolveModelPath(o.model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(o.backend, o.threads));
  const int tp = world.size() / o.pp;
  if (tp * o.pp != world.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--pp %d does not divide the %d ranks", o.pp, world.size()));
  }
  ASSIGN_OR_RETURN(const Topology topology, Topology::Create(world.size(), world.rank(), tp, o.pp));
  ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> tensor_mpi,
                   world.Split(topology.stage(), topology.tp_rank()));
  ASSIGN_OR_RETURN(std::unique_ptr<MpiCommunicator> pipeline_mpi,
                   world.Split(topology.tp_rank(), topology.stage()));
  TimedCommunicator tensor(tensor_mpi.get()), pipeline(pipeline_mpi.get()), to_leader(&world);
  PlannerInput in;
  in.model = store->config();
  in.tp = tp;
  in.pp = o.pp;
  in.sequence_parallel = o.sp;
  ASSIGN_OR_RETURN(const TensorView down, store->Get("blk.0.ffn_down.weight"));
  in.ffn_alignment = Traits(down.dtype).block_elems;
  in.rank_memory_bytes.assign(static_cast<size_t>(world.size()), int64_t{64} << 30);
  ASSIGN_OR_RETURN(const ShardPlan plan, PlanShards(in));
  TensorParallelShard shard{plan.tensor, &tensor, o.sp};
  const StageShard& stage = plan.stages[static_cast<size_t>(topology.stage())];
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model,
                   LlamaModel::Load(*store, backend.get(), nullptr, &shard, &stage));
  const int micro_batches = o.pp > 1 ? (o.micro_batches > 0 ? o.micro_batches : 2 * o.pp) : 1;
  StageRunner runner(model.get(), {.pipeline = &pipeline,
                                   .world = &to_leader,
                                   .last_stage_leader = topology.RankAt(o.pp - 1, 0),
                                   .micro_batches = micro_batches});
  const int64_t block = 16;
  const int64_t per_seq = (o.prompt + o.decode + block - 1) / block;
  ASSIGN_OR_RETURN(PagedKvCache cache, model->NewPagedKvCache(per_seq * o.batch, block));
  std::optional<PagedKvCache> no_swap;
  const int32_t vocab = static_cast<int32_t>(model->config().vocab_size);
  std::vector<float> logits, hidden;

  // Runs rows [position, position + m) of every sequence.
  const auto step = [&](int64_t position, int64_t m) -> absl::Status {
    StepWork w;
    for (int s = 0; s < o.batch; ++s) {
      StepWork::Sequence seq{static_cast<int64_t>(w.token_ids.size()), m, position + m, {}};
      for (int64_t b = 0; b < per_seq; ++b) {
        seq.block_table.push_back(static_cast<int32_t>(s * per_seq + b));
      }
      for (int64_t j = 0; j < m; ++j) {
        w.token_ids.push_back(static_cast<int32_t>((s * 7919 + (position + j) * 104729) % vocab));
        w.positions.push_back(static_cast<int32_t>(position + j));
      }
      w.logits_rows.push_back(static_cast<int64_t>(w.token_ids.size()) - 1);
      w.sequences.push_back(std::move(seq));
    }
    return runner.Run(w, cache, no_swap, &logits, &hidden);
  };
  const auto timed = [&](auto body) -> absl::StatusOr<Phase> {
    RETURN_IF_ERROR(world.Barrier());
    tensor.Reset();
    pipeline.Reset();
    to_leader.Reset();
    const absl::Time start = absl::Now();
    RETURN_IF_ERROR(body());
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    RETURN_IF_ERROR(world.Barrier());
    const absl::Duration stage_links = pipeline.spent() + to_leader.spent();
    std::vector<float> shares = {
        static_cast<float>(absl::ToDoubleSeconds(tensor.spent()) / seconds),
        static_cast<float>(absl::ToDoubleSeconds(stage_links) / seconds)};
    RETURN_IF_ERROR(world.AllReduce(shares, ReduceOp::kMax));
    return Phase{seconds, shares[0], shares[1]};
  };
  RETURN_IF_ERROR(step(0, 1));  // warm-up (pages, scratch), overwritten below
  ASSIGN_OR_RETURN(const Phase prefill, timed([&] { return step(0, o.prompt); }));
  ASSIGN_OR_RETURN(const Phase decode, timed([&]() -> absl::Status {
                     for (int d = 0; d < o.decode; ++d) RETURN_IF_ERROR(step(o.prompt + d, 1));
                     return absl::OkStatus();
                   }));
  if (world.rank() != 0) return absl::OkStatus();
  const double prefill_tokens = static_cast<double>(o.batch) * o.prompt;
  const double decode_tokens = static_cast<double>(o.batch) * o.decode;
  nlohmann::json j = {{"model", path},
                      {"backend", backend->name()},
                      {"ranks", world.size()},
                      {"tp", tp},
                      {"pp", o.pp},
                      {"micro_batches", micro_batches},
                      {"sp", o.sp},
                      {"threads_per_rank", o.threads},
                      {"batch", o.batch},
                      {"prompt", o.prompt},
                      {"decode_steps", o.decode},
                      {"prefill_tokens_per_s", prefill_tokens / prefill.seconds},
                      {"prefill_comm_share", prefill.comm_share},
                      {"prefill_bubble_share", prefill.bubble_share},
                      {"decode_step_ms", 1e3 * decode.seconds / o.decode},
                      {"decode_tokens_per_s", decode_tokens / decode.seconds},
                      {"decode_comm_share", decode.comm_share},
                      {"decode_bubble_share", decode.bubble_share}};
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "tp %d x pp %d%s: prefill %.1f tok/s (%.0f%% communicating, %.0f%% bubble), decode "
        "%.2f ms/step, %.1f tok/s (%.0f%% communicating, %.0f%% bubble)\n",
        tp, o.pp, o.sp ? " sp" : "", prefill_tokens / prefill.seconds, 100 * prefill.comm_share,
        100 * prefill.bubble_share, 1e3 * decode.seconds / o.decode, decode_tokens / decode.seconds,
        100 * decode.comm_share, 100 * decode.bubble_share);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::Options o;
  CLI::App app{"One tp x pp layout of a model under mpirun, timed on a fixed batch",
               "tessera_bench_parallel"};
  app.add_option("--model", o.model, "GGUF model file, or 'default'")->capture_default_str();
  app.add_option("--backend", o.backend, "Kernel backend")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads per rank")->capture_default_str();
  app.add_flag("--sp", o.sp, "Sequence parallelism on top of tensor parallelism");
  app.add_option("--pp", o.pp, "Pipeline stages (tp = ranks / pp)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--micro-batches", o.micro_batches, "Per step with stages (0 = 2 x pp)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", o.batch, "Sequences")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--prompt", o.prompt, "Prompt tokens per sequence")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--decode", o.decode, "Decode steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "One JSON object on stdout");
  CLI11_PARSE(app, argc, argv);
  auto runtime = tessera::MpiRuntime::Init(&argc, &argv);
  if (!runtime.ok()) {
    std::fprintf(stderr, "%s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  auto world = tessera::MpiCommunicator::World();
  if (!world.ok()) {
    std::fprintf(stderr, "%s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  if (absl::Status s = tessera::Run(o, **world); !s.ok()) {
    std::fprintf(stderr, "tessera_bench_parallel [rank %d]: %s\n", (*world)->rank(),
                 std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
