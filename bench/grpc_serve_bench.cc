// tessera_bench_grpc: the whole serving path measured from the client's side. An embedded
// server (as `tessera serve` runs it) on the default model takes --requests chat requests
// as concurrent Generate streams, all opened at once; the baseline is the first
// --sequential of them sent one at a time (Complete) to the same server in the same run.
// Every request generates exactly its max_new_tokens (U[--min-new, --max-new], fixed seed;
// min_new_tokens masks EOS), greedy.
// Reports output tokens/s for both and their ratio, time to first token, time per output
// token and end-to-end latency (p50 / p99) of the streams, whether each baseline request's
// tokens equal its stream's, the KV blocks still used afterwards and the peak RSS growth.
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/percentile.h"
#include "coordinator/server.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "grpcpp/grpcpp.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tokenizer/chat_prompt.h"
#include "worker/batch_runner.h"
#include "worker/engine_loop.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;

struct Options {
  std::string model = "default";
  int threads = 0;
  int requests = 256;
  int sequential = 16;
  int min_new = 16;
  int max_new = 64;
  int max_num_seqs = 64;
  int max_batched_tokens = 512;
  int64_t kv_cache_mb = 512;
  bool deterministic = false;
  uint32_t seed = 1;
};

struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  double first_token = -1;  // seconds after the start
  double end = 0;
};

int64_t PeakRssKiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

std::vector<v1::GenerateRequest> Workload(const Options& o) {
  const char* topics[] = {"the sea", "a mountain", "a city at night", "an old library",
                          "a robot", "the desert", "a train journey", "a garden in spring"};
  const char* asks[] = {"Write a short story about", "Describe", "Write a poem about",
                        "Explain to a child what is special about"};
  std::mt19937 rng(o.seed);
  std::uniform_int_distribution<int> new_tokens(o.min_new, o.max_new);
  std::vector<v1::GenerateRequest> requests(o.requests);
  for (int i = 0; i < o.requests; ++i) {
    auto* m = requests[i].mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(absl::StrCat(asks[rng() % 4], " ", topics[rng() % 8], " (#", i, ")."));
    const int n = new_tokens(rng);
    requests[i].mutable_decoding()->set_max_new_tokens(n);
    requests[i].mutable_decoding()->set_min_new_tokens(n);
  }
  return requests;
}

int Run(const Options& o) {
  auto path = ResolveModelPath(o.model);
  auto store = path.ok() ? OpenWeightStore(*path) : path.status();
  if (!store.ok()) {
    std::fprintf(stderr, "tessera_bench_grpc: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  auto backend =
      CreateBackend("cpu", o.threads, BackendOptions{.batch_invariant = o.deterministic});
  auto model = backend.ok() ? LlamaModel::Load(**store, backend->get())
                            : absl::StatusOr<std::unique_ptr<LlamaModel>>(backend.status());
  auto tokenizer = Tokenizer::FromGguf(*(*store)->gguf());
  if (!model.ok() || !tokenizer.ok()) {
    std::fprintf(stderr, "tessera_bench_grpc: cannot load the model\n");
    return 1;
  }
  std::shared_ptr<const Tokenizer> shared_tokenizer(*std::move(tokenizer));
  BatchRunnerOptions ro;
  ro.scheduler.max_num_seqs = o.max_num_seqs;
  ro.scheduler.max_num_batched_tokens = o.max_batched_tokens;
  ro.scheduler.max_model_len = 2048;
  ro.scheduler.max_waiting_requests = o.requests + 16;
  ro.kv_cache_bytes = o.kv_cache_mb << 20;
  auto runner = BatchRunner::Create(model->get(), ro);
  if (!runner.ok()) {
    std::fprintf(stderr, "tessera_bench_grpc: %s\n",
                 std::string(runner.status().message()).c_str());
    return 1;
  }
  std::shared_ptr<EngineLoop> engine(
      *EngineLoop::Start(*std::move(runner), shared_tokenizer.get()));
  ServedModelSpec spec;
  spec.name = "default";
  spec.config = (*model)->config();
  spec.tokenizer = shared_tokenizer;
  auto chat = LoadChatTemplate("", *(*store)->gguf());
  if (chat.ok()) spec.chat_template = std::make_shared<const ChatTemplate>(*std::move(chat));
  spec.context_length = 2048;
  ModelRegistry registry;
  (*registry.Add(std::move(spec)))->AddReplica(engine);
  CoordinatorServerOptions server_options;
  server_options.host = "127.0.0.1";
  auto server = CoordinatorServer::Start(&registry, server_options);
  if (!server.ok()) return 1;
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));
  const std::vector<v1::GenerateRequest> requests = Workload(o);

  // Baseline: one at a time.
  std::vector<std::vector<int32_t>> alone;
  int64_t sequential_tokens = 0;
  absl::Time start = absl::Now();
  for (int i = 0; i < std::min(o.sequential, o.requests); ++i) {
    grpc::ClientContext context;
    v1::CompleteResponse response;
    if (!stub->Complete(&context, requests[i], &response).ok()) return 1;
    alone.emplace_back();
    for (const auto& t : response.completions(0).tokens()) alone.back().push_back(t.token_id());
    sequential_tokens += response.usage().completion_tokens();
  }
  const double sequential_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t rss_before = PeakRssKiB();

  // All streams at once.
  std::vector<StreamResult> results(requests.size());
  std::vector<std::thread> clients;
  start = absl::Now();
  for (size_t i = 0; i < requests.size(); ++i) {
    clients.emplace_back([&, i] {
      StreamResult& r = results[i];
      grpc::ClientContext context;
      auto reader = stub->Generate(&context, requests[i]);
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
        for (const auto& d : response.deltas()) {
          for (const auto& t : d.tokens()) r.tokens.push_back(t.token_id());
        }
        if (r.first_token < 0 && !r.tokens.empty()) {
          r.first_token = absl::ToDoubleSeconds(absl::Now() - start);
        }
      }
      r.status = reader->Finish();
      r.end = absl::ToDoubleSeconds(absl::Now() - start);
    });
  }
  for (auto& c : clients) c.join();
  const double concurrent_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> ttft, tpot, e2e;
  int64_t concurrent_tokens = 0;
  int failed = 0;
  for (const StreamResult& r : results) {
    if (!r.status.ok()) {
      ++failed;
      continue;
    }
    concurrent_tokens += static_cast<int64_t>(r.tokens.size());
    ttft.push_back(r.first_token);
    e2e.push_back(r.end);
    if (r.tokens.size() > 1) tpot.push_back((r.end - r.first_token) / (r.tokens.size() - 1));
  }
  int equal = 0;
  for (size_t i = 0; i < alone.size(); ++i) equal += alone[i] == results[i].tokens ? 1 : 0;
  engine->WaitIdle(absl::Seconds(30));
  absl::SleepFor(absl::Milliseconds(50));
  const ReplicaLoad load = engine->Load();

  const double seq_rate = sequential_tokens / sequential_seconds;
  const double conc_rate = concurrent_tokens / concurrent_seconds;
  std::printf(
      "tessera_bench_grpc: %d streams (max_num_seqs %d, %s kernels), new tokens U[%d, %d]\n",
      o.requests, o.max_num_seqs, o.deterministic ? "batch-invariant" : "fast", o.min_new,
      o.max_new);
  std::printf("| run | requests | output tokens | seconds | output tok/s | ratio |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  std::printf("| one at a time (Complete) | %zu | %lld | %.1f | %.1f | 1.00 |\n", alone.size(),
              static_cast<long long>(sequential_tokens), sequential_seconds, seq_rate);
  std::printf("| all at once (Generate streams) | %d | %lld | %.1f | %.1f | %.2f |\n",
              o.requests - failed, static_cast<long long>(concurrent_tokens), concurrent_seconds,
              conc_rate, conc_rate / seq_rate);
  std::printf("\n| streams | p50 | p99 |\n|---|---:|---:|\n");
  std::printf("| time to first token (s) | %.2f | %.2f |\n", Percentile(ttft, 0.5),
              Percentile(ttft, 0.99));
  std::printf("| time per output token (ms) | %.1f | %.1f |\n", 1e3 * Percentile(tpot, 0.5),
              1e3 * Percentile(tpot, 0.99));
  std::printf("| end to end (s) | %.2f | %.2f |\n", Percentile(e2e, 0.5), Percentile(e2e, 0.99));
  std::printf(
      "\nfailed streams: %d; baseline requests whose stream gave the same tokens: %d/%zu; "
      "KV blocks used after: %d; peak RSS growth during the streams: %.1f MiB\n",
      failed, equal, alone.size(), load.kv_blocks_used, (PeakRssKiB() - rss_before) / 1024.0);
  (*server)->Shutdown(absl::Seconds(1));
  return failed == 0 && load.kv_blocks_used == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::Options o;
  CLI::App app{
      "Concurrent gRPC streams against an embedded Tessera server, against the same "
      "requests one at a time",
      "tessera_bench_grpc"};
  app.add_option("--model", o.model, "GGUF model file, or 'default'")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0 = all)")->capture_default_str();
  app.add_option("--requests", o.requests, "Concurrent streams")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--sequential", o.sequential, "Requests of the one-at-a-time baseline")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--min-new", o.min_new, "Fewest new tokens per request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-new", o.max_new, "Most new tokens per request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-num-seqs", o.max_num_seqs, "Sequences per engine step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-batched-tokens", o.max_batched_tokens, "Tokens per engine step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--kv-cache-mb", o.kv_cache_mb, "KV cache MiB")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--deterministic", o.deterministic, "Batch-invariant kernels");
  app.add_option("--seed", o.seed, "Workload seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.min_new > o.max_new) {
    std::fprintf(stderr, "tessera_bench_grpc: --min-new must not exceed --max-new\n");
    return 2;
  }
  return tessera::Run(o);
}
