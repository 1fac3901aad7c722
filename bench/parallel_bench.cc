// tessera_bench_parallel: one tensor-parallel layout of the real model under mpirun, timed
// on a fixed batch through LlamaModel::ForwardPaged (no engine, so only the model and its
// collectives are measured):
//   mpirun -np N tessera_bench_parallel [--sp] [--batch 16] [--prompt 64] [--decode 32]
// prefill: one forward over batch x prompt rows; decode: `decode` forwards of batch rows
// (one new token per sequence). Every collective goes through a timing wrapper, so the
// share of the time spent communicating (waiting included) is reported per phase. A layout
// without pipeline stages has no bubble; with N = 1 the model is whole and nothing is
// communicated. Rank 0 prints a table, or one JSON object with --json.
#include <algorithm>
#include <cstdio>
#include <memory>
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

namespace tessera {
namespace {

// Forwards every call to `inner` and adds up the wall time spent in them.
class TimedCommunicator : public Communicator {
 public:
  explicit TimedCommunicator(Communicator* inner) : inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::Status AllReduce(std::span<float> d, ReduceOp op) override {
    return Time([&] { return inner_->AllReduce(d, op); });
  }
  absl::Status ReduceScatter(std::span<const float> in, std::span<float> out) override {
    return Time([&] { return inner_->ReduceScatter(in, out); });
  }
  absl::Status AllGather(std::span<const float> in, std::span<float> out) override {
    return Time([&] { return inner_->AllGather(in, out); });
  }
  absl::Status Broadcast(std::span<std::byte> d, int root) override {
    return Time([&] { return inner_->Broadcast(d, root); });
  }
  absl::Status Send(std::span<const std::byte> d, int dst, int tag) override {
    return Time([&] { return inner_->Send(d, dst, tag); });
  }
  absl::Status Recv(std::span<std::byte> d, int src, int tag) override {
    return Time([&] { return inner_->Recv(d, src, tag); });
  }
  absl::Status Barrier() override { return inner_->Barrier(); }
  absl::Duration spent() const { return spent_; }
  void Reset() { spent_ = absl::ZeroDuration(); }

 private:
  template <typename F>
  absl::Status Time(F f) {
    const absl::Time start = absl::Now();
    absl::Status s = f();
    spent_ += absl::Now() - start;
    return s;
  }
  Communicator* inner_;
  absl::Duration spent_;
};

struct Options {
  std::string model = "default";
  std::string backend = "cpu";
  int threads = 1;
  bool sp = false;
  int batch = 16;
  int prompt = 64;
  int decode = 32;
  bool json = false;
};

// One phase's figures.
struct Phase {
  double seconds = 0.0;
  double comm_seconds = 0.0;
};

absl::Status Run(const Options& o, MpiCommunicator& world) {
  ASSIGN_OR_RETURN(const std::string path, ResolveModelPath(o.model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(o.backend, o.threads));
  TimedCommunicator group(&world);
  std::unique_ptr<LlamaModel> model;
  if (world.size() == 1) {
    ASSIGN_OR_RETURN(model, LlamaModel::Load(*store, backend.get()));
  } else {
    PlannerInput in;
    in.model = store->config();
    in.tp = world.size();
    in.sequence_parallel = o.sp;
    ASSIGN_OR_RETURN(const TensorView down, store->Get("blk.0.ffn_down.weight"));
    in.ffn_alignment = Traits(down.dtype).block_elems;
    in.rank_memory_bytes.assign(static_cast<size_t>(world.size()), int64_t{64} << 30);
    ASSIGN_OR_RETURN(const ShardPlan plan, PlanShards(in));
    TensorParallelShard shard{plan.tensor, &group, o.sp};
    ASSIGN_OR_RETURN(model, LlamaModel::Load(*store, backend.get(), nullptr, &shard));
  }
  const int64_t block = 16;
  const int64_t per_seq = (o.prompt + o.decode + block - 1) / block;
  ASSIGN_OR_RETURN(PagedKvCache cache, model->NewPagedKvCache(per_seq * o.batch, block));
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(o.batch));
  for (int s = 0; s < o.batch; ++s) {
    for (int64_t b = 0; b < per_seq; ++b)
      tables[s].push_back(static_cast<int32_t>(s * per_seq + b));
  }
  const int32_t vocab = static_cast<int32_t>(model->config().vocab_size);
  std::vector<float> logits;

  // Runs rows [position, position + m) of every sequence.
  const auto step = [&](int64_t position, int64_t m) -> absl::Status {
    std::vector<int32_t> ids, positions;
    std::vector<PagedSequence> seqs;
    std::vector<int64_t> rows;
    for (int s = 0; s < o.batch; ++s) {
      seqs.push_back({static_cast<int64_t>(ids.size()), m, position + m, tables[s]});
      for (int64_t j = 0; j < m; ++j) {
        ids.push_back(static_cast<int32_t>((s * 7919 + (position + j) * 104729) % vocab));
        positions.push_back(static_cast<int32_t>(position + j));
      }
      rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    }
    return model->ForwardPaged({ids, positions, seqs, rows}, cache, &logits);
  };
  const auto timed = [&](auto body) -> absl::StatusOr<Phase> {
    RETURN_IF_ERROR(world.Barrier());
    group.Reset();
    const absl::Time start = absl::Now();
    RETURN_IF_ERROR(body());
    RETURN_IF_ERROR(world.Barrier());
    return Phase{absl::ToDoubleSeconds(absl::Now() - start), absl::ToDoubleSeconds(group.spent())};
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
                      {"tp", world.size()},
                      {"pp", 1},
                      {"sp", o.sp},
                      {"threads_per_rank", o.threads},
                      {"batch", o.batch},
                      {"prompt", o.prompt},
                      {"decode_steps", o.decode},
                      {"prefill_tokens_per_s", prefill_tokens / prefill.seconds},
                      {"prefill_comm_share", prefill.comm_seconds / prefill.seconds},
                      {"decode_step_ms", 1e3 * decode.seconds / o.decode},
                      {"decode_tokens_per_s", decode_tokens / decode.seconds},
                      {"decode_comm_share", decode.comm_seconds / decode.seconds},
                      {"bubble_fraction", 0.0}};
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "tp %d%s: prefill %.1f tok/s (%.0f%% communicating), decode %.2f ms/step, "
        "%.1f tok/s (%.0f%% communicating)\n",
        world.size(), o.sp ? " sp" : "", j["prefill_tokens_per_s"].get<double>(),
        100 * j["prefill_comm_share"].get<double>(), j["decode_step_ms"].get<double>(),
        j["decode_tokens_per_s"].get<double>(), 100 * j["decode_comm_share"].get<double>());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::Options o;
  CLI::App app{"One tensor-parallel layout of a model under mpirun, timed on a fixed batch",
               "tessera_bench_parallel"};
  app.add_option("--model", o.model, "GGUF model file, or 'default'")->capture_default_str();
  app.add_option("--backend", o.backend, "Kernel backend")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads per rank")->capture_default_str();
  app.add_flag("--sp", o.sp, "Sequence parallelism on top of tensor parallelism");
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
