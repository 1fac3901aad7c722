// tessera_bench_serve: the engine (continuous batching over the paged KV cache) serving a
// fixed-seed synthetic workload on one rank, against the same requests one at a time, plus a
// sweep shaped like llama.cpp's llama-batched-bench so that bench/serve_compare.sh can put
// the two side by side.
//   workload: --requests (256) prompts of U[32, 512] random token ids and U[16, 256] new
//             tokens (greedy, no EOS, so every request runs its full length), all arriving
//             at once; reports output tokens/s, time to first token and time per output
//             token (p50/p99).
//   baseline: the first --sequential (16) of those requests, one after another.
//   sweep:    for each NPL in --npl (1,4,16,32): NPL requests of --pp (128) prompt tokens
//             and --tg (128) new tokens together; S_PP = NPL*pp / time until every request
//             has its first token, S_TG = NPL*(tg-1) / the rest (llama-batched-bench's
//             columns, counting the token that closes the prefill as prefill).
// --deterministic uses the batch-invariant kernels, to measure what that mode costs.
// Prints a table, or one JSON object with --json.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/percentile.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "tools/random_model.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

using nlohmann::json;

struct Options {
  std::string model = "default";
  int threads = 0;
  int requests = 256;
  int sequential = 16;
  uint32_t seed = 1;
  int max_num_seqs = 32;
  int max_batched_tokens = 512;
  std::vector<int> npl = {1, 4, 16, 32};
  int pp = 128;
  int tg = 128;
  bool deterministic = false;
  std::string backend = "cpu";
  std::string kv_cache_dtype = "f32";
  int64_t kv_cache_mb = 1024;
  double gpu_memory_utilization = 0.0;  // > 0: size the KV cache from device memory instead
  bool enforce_eager = false;           // BatchRunnerOptions::record_decode_steps off
  bool json = false;
};

struct RunStats {
  int64_t output_tokens = 0;
  int64_t prompt_tokens = 0;
  double seconds = 0.0;
  double all_first_token_seconds = 0.0;  // until every request had its first token
  std::vector<double> ttft;              // per request, seconds
  std::vector<double> tpot;              // per request with > 1 token, seconds per token
};

// Runs `requests` (all arriving now) to completion on a fresh runner.
absl::StatusOr<RunStats> Serve(LlamaModel& model, const std::vector<WorkerRequest>& requests,
                               const Options& o) {
  BatchRunnerOptions ro;
  ro.scheduler.block_size = 16;
  ro.scheduler.max_num_seqs = o.max_num_seqs;
  ro.scheduler.max_num_batched_tokens = o.max_batched_tokens;
  ro.scheduler.max_model_len = 1024;
  ro.scheduler.max_waiting_requests = static_cast<int>(requests.size()) + 1;
  ro.kv_cache_bytes = o.kv_cache_mb << 20;
  ro.device_memory_fraction = o.gpu_memory_utilization;
  ro.record_decode_steps = !o.enforce_eager;
  ro.kv_cache_dtype = DTypeFromName(o.kv_cache_dtype).value();  // checked by the flag
  ASSIGN_OR_RETURN(std::unique_ptr<BatchRunner> runner, BatchRunner::Create(&model, ro));
  RunStats st;
  const absl::Time start = absl::Now();
  std::map<std::string, double> first_token;
  for (const WorkerRequest& r : requests) {
    RETURN_IF_ERROR(runner->AddRequest(r, start));
    st.prompt_tokens += static_cast<int64_t>(r.spec.prompt_token_ids.size());
  }
  while (runner->HasUnfinished()) {
    ASSIGN_OR_RETURN(std::vector<RequestOutput> done, runner->Step(absl::Now()));
    const double now = absl::ToDoubleSeconds(absl::Now() - start);
    for (const WorkerRequest& r : requests) {
      if (first_token.contains(r.spec.request_id)) continue;
      const SequenceGroup* g = runner->scheduler().FindRequest(r.spec.request_id);
      if (g == nullptr || g->sequences()[0]->num_generated() > 0) {
        first_token[r.spec.request_id] = now;
      }
    }
    for (const RequestOutput& out : done) {
      const int64_t n = static_cast<int64_t>(out.completions.at(0).generated_token_ids.size());
      st.output_tokens += n;
      const double ttft = first_token.at(out.request_id);
      st.ttft.push_back(ttft);
      if (n > 1) st.tpot.push_back((now - ttft) / static_cast<double>(n - 1));
    }
  }
  st.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (const auto& [id, t] : first_token) {
    st.all_first_token_seconds = std::max(st.all_first_token_seconds, t);
  }
  return st;
}

WorkerRequest MakeRequest(std::string id, std::mt19937& rng, int prompt_len, int new_tokens,
                          int32_t vocab) {
  std::uniform_int_distribution<int32_t> token(100, vocab - 1);  // clear of special ids
  WorkerRequest r;
  r.spec.request_id = std::move(id);
  for (int i = 0; i < prompt_len; ++i) r.spec.prompt_token_ids.push_back(token(rng));
  r.spec.max_new_tokens = new_tokens;
  return r;
}

json StatsJson(const RunStats& s) {
  return {{"requests", s.ttft.size()},
          {"prompt_tokens", s.prompt_tokens},
          {"output_tokens", s.output_tokens},
          {"seconds", s.seconds},
          {"output_tokens_per_s", s.output_tokens / s.seconds},
          {"ttft_p50_ms", 1e3 * Percentile(s.ttft, 0.5)},
          {"ttft_p99_ms", 1e3 * Percentile(s.ttft, 0.99)},
          {"tpot_p50_ms", 1e3 * Percentile(s.tpot, 0.5)},
          {"tpot_p99_ms", 1e3 * Percentile(s.tpot, 0.99)}};
}

absl::Status Run(const Options& o) {
  std::unique_ptr<TempModelFile> random_model;  // random:...: removed once mapped
  ASSIGN_OR_RETURN(const std::string path, ModelFilePath(o.model, !o.json, &random_model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  random_model.reset();
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                   CreateBackend(o.backend, o.threads, {.batch_invariant = o.deterministic}));
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::Load(*store, backend.get()));
  const int32_t vocab = static_cast<int32_t>(model->config().vocab_size);

  std::mt19937 rng(o.seed);
  std::uniform_int_distribution<int> prompt_len(32, 512), new_tokens(16, 256);
  std::vector<WorkerRequest> workload;
  for (int i = 0; i < o.requests; ++i) {
    const int p = prompt_len(rng);
    const int n = new_tokens(rng);
    workload.push_back(MakeRequest(absl::StrCat("w", i), rng, p, n, vocab));
  }
  json result = {{"model", IsRandomModel(o.model) ? o.model : path},
                 {"backend", o.backend},
                 {"threads", o.threads},
                 {"deterministic", o.deterministic},
                 {"kv_cache_dtype", o.kv_cache_dtype},
                 {"max_num_seqs", o.max_num_seqs},
                 {"max_batched_tokens", o.max_batched_tokens}};
  if (!o.json) std::fprintf(stderr, "serving %d requests...\n", o.requests);
  ASSIGN_OR_RETURN(const RunStats served, Serve(*model, workload, o));
  result["workload"] = StatsJson(served);

  RunStats alone;
  for (int i = 0; i < std::min(o.sequential, o.requests); ++i) {
    if (!o.json) std::fprintf(stderr, "one at a time: request %d/%d\n", i + 1, o.sequential);
    ASSIGN_OR_RETURN(const RunStats one, Serve(*model, {workload[static_cast<size_t>(i)]}, o));
    alone.output_tokens += one.output_tokens;
    alone.prompt_tokens += one.prompt_tokens;
    alone.seconds += one.seconds;
    alone.ttft.insert(alone.ttft.end(), one.ttft.begin(), one.ttft.end());
    alone.tpot.insert(alone.tpot.end(), one.tpot.begin(), one.tpot.end());
  }
  result["one_at_a_time"] = StatsJson(alone);

  json sweep = json::array();
  for (int npl : o.npl) {
    if (!o.json) std::fprintf(stderr, "sweep: %d parallel sequences\n", npl);
    std::vector<WorkerRequest> batch;
    for (int i = 0; i < npl; ++i) {
      batch.push_back(MakeRequest(absl::StrCat("s", npl, "_", i), rng, o.pp, o.tg, vocab));
    }
    Options wide = o;
    wide.max_num_seqs = std::max(o.max_num_seqs, npl);
    wide.max_batched_tokens = std::max(o.max_batched_tokens, npl * o.pp);
    ASSIGN_OR_RETURN(const RunStats s, Serve(*model, batch, wide));
    const double t_pp = s.all_first_token_seconds;
    const double t_tg = s.seconds - t_pp;
    sweep.push_back({{"npl", npl},
                     {"pp", o.pp},
                     {"tg", o.tg},
                     {"s_pp", npl * o.pp / t_pp},
                     {"s_tg", t_tg > 0 ? npl * (o.tg - 1) / t_tg : 0.0},
                     {"seconds", s.seconds}});
  }
  result["sweep"] = sweep;

  if (o.json) {
    std::printf("%s\n", result.dump().c_str());
    return absl::OkStatus();
  }
  const json& w = result["workload"];
  const json& a = result["one_at_a_time"];
  std::printf("workload: %d requests, %lld output tokens in %.1f s = %.1f tok/s; "
              "TTFT p50 %.0f ms p99 %.0f ms; TPOT p50 %.1f ms p99 %.1f ms\n",
              o.requests, static_cast<long long>(w["output_tokens"]), w["seconds"].get<double>(),
              w["output_tokens_per_s"].get<double>(), w["ttft_p50_ms"].get<double>(),
              w["ttft_p99_ms"].get<double>(), w["tpot_p50_ms"].get<double>(),
              w["tpot_p99_ms"].get<double>());
  std::printf("one at a time (%d requests): %.1f tok/s (batched / one at a time = %.2fx)\n",
              o.sequential, a["output_tokens_per_s"].get<double>(),
              w["output_tokens_per_s"].get<double>() / a["output_tokens_per_s"].get<double>());
  const double single = sweep.front()["s_tg"].get<double>();
  for (const json& s : sweep) {
    std::printf("npl %3d: S_PP %8.1f tok/s  S_TG %8.1f tok/s  (S_TG / npl 1 = %.2fx)\n",
                s["npl"].get<int>(), s["s_pp"].get<double>(), s["s_tg"].get<double>(),
                s["s_tg"].get<double>() / single);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::Options o;
  CLI::App app("tessera_bench_serve: the engine on a synthetic serving workload (see source)");
  app.add_option("-m,--model", o.model,
                 "GGUF file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (random weights in a "
                 "named shape, synthesized to a temporary file first)")
      ->capture_default_str();
  app.add_option("-t,--threads", o.threads, "threads (0 = all)")->capture_default_str();
  app.add_option("--requests", o.requests, "workload size")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--sequential", o.sequential, "requests of the one-at-a-time baseline")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "workload seed")->capture_default_str();
  app.add_option("--max-num-seqs", o.max_num_seqs, "engine: sequences per step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--max-batched-tokens", o.max_batched_tokens, "engine: tokens per step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--npl", o.npl, "sweep: parallel sequences")->delimiter(',')
      ->capture_default_str();
  app.add_option("--pp", o.pp, "sweep: prompt tokens")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--tg", o.tg, "sweep: generated tokens")->capture_default_str()
      ->check(CLI::Range(2, 100000));
  app.add_flag("--deterministic", o.deterministic, "batch-invariant kernels");
  app.add_option("-b,--backend", o.backend, "backend name (cpu, cpu-reference, cuda)")
      ->capture_default_str();
  app.add_option("--kv-cache-dtype", o.kv_cache_dtype, "KV cache element type (f32 or f16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16"}));
  CLI::Option* mb = app.add_option("--kv-cache-mb", o.kv_cache_mb, "KV cache MiB")
                        ->capture_default_str()
                        ->check(CLI::PositiveNumber);
  app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                 "size the KV cache from this fraction of the device's memory (device backends; "
                 "instead of --kv-cache-mb)")
      ->check(CLI::PositiveNumber)
      ->check(CLI::Range(0.0, 1.0))
      ->excludes(mb);
  app.add_flag("--enforce-eager", o.enforce_eager,
               "launch decode steps kernel by kernel (no CUDA graphs; the baseline for them)");
  app.add_flag("--json", o.json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);
  if (o.npl.empty() || o.max_batched_tokens < o.max_num_seqs) {
    std::fprintf(stderr, "tessera_bench_serve: need --npl and --max-batched-tokens >= "
                         "--max-num-seqs\n");
    return 2;
  }
  const absl::Status s = tessera::Run(o);
  if (!s.ok()) {
    std::fprintf(stderr, "tessera_bench_serve: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
