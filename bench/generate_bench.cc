// tessera_bench_generate: prompt-processing and token-generation throughput of one model on
// one rank, measured the way llama.cpp's llama-bench measures pp/tg so that the two can be
// put side by side (bench/compare_llamacpp.sh):
//   prefill: `--prompt-tokens` (512) pseudo-random token ids in one Forward on an empty cache;
//   decode:  `--gen-tokens` (128) single-token Forwards from an empty cache, each feeding the
//            previous step's argmax.
// One warm-up run of each, then `--reps` timed runs; prints the median tokens/s (and every
// sample). With --json, prints one JSON object instead. Also reported: the weight bytes one
// decode token reads and the process's peak resident memory. --bandwidth-only measures this
// machine's read bandwidth with the given threads instead (best of 5 passes over 512 MiB),
// for the roofline of bench/compare_llamacpp.sh; it is a separate run so that its buffer
// stays out of the model run's resident memory. --no-pack keeps the weights in their GGUF
// layout (BackendOptions::pack_weights), to compare with the packed GEMM. --quantization fp8
// holds the float matrices as FP8 on the cuda backend (BackendOptions::fp8_weights); the
// weight bytes per decode token then count them at a byte per element and a scale per row.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "formats/weight_store.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "tools/backend_flags.h"
#include "tools/random_model.h"

namespace tessera {
namespace {

struct Options {
  std::string model = "default";
  std::string backend = "cpu";
  int threads = 0;
  int prompt_tokens = 512;
  int gen_tokens = 128;
  int reps = 5;
  bool json = false;
  bool no_pack = false;
  bool fp8_weights = false;
  bool bandwidth_only = false;
};

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int32_t ArgMaxId(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Tokens/s of one prefill of `prompt` on a fresh cache.
absl::StatusOr<double> TimePrefill(LlamaModel& model, const std::vector<int32_t>& prompt) {
  ASSIGN_OR_RETURN(KvCache cache, model.NewKvCache(prompt.size()));
  std::vector<float> logits;
  const auto t0 = Clock::now();
  RETURN_IF_ERROR(model.Forward(prompt, 0, cache, /*all_logits=*/false, &logits));
  return prompt.size() / Seconds(t0, Clock::now());
}

// Tokens/s of `n` single-token decode steps from an empty cache.
absl::StatusOr<double> TimeDecode(LlamaModel& model, int32_t first_token, int n) {
  ASSIGN_OR_RETURN(KvCache cache, model.NewKvCache(n));
  std::vector<float> logits;
  int32_t token = first_token;
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    const int32_t one[1] = {token};
    RETURN_IF_ERROR(model.Forward(one, i, cache, false, &logits));
    token = ArgMaxId(logits);
  }
  return n / Seconds(t0, Clock::now());
}

// GB/s of `threads` threads each summing its share of a 512 MiB buffer (the best of 5
// passes): the bandwidth a decode step that streams every weight once can reach.
double ReadBandwidth(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const size_t words = (size_t{512} << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buf(words);
  for (size_t i = 0; i < words; ++i) buf[i] = i;
  std::vector<uint64_t> sums(static_cast<size_t>(threads) * 8);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t b = words * t / threads, e = words * (t + 1) / threads;
        uint64_t acc[4] = {0, 0, 0, 0};
        for (size_t i = b; i + 4 <= e; i += 4) {
          for (int j = 0; j < 4; ++j) acc[j] += buf[i + j];
        }
        sums[static_cast<size_t>(t) * 8] = acc[0] + acc[1] + acc[2] + acc[3];
      });
    }
    for (std::thread& th : pool) th.join();
    best = std::max(best, words * sizeof(uint64_t) / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

absl::Status Run(const Options& o) {
  if (o.bandwidth_only) {
    const double gbps = ReadBandwidth(o.threads);
    if (o.json) {
      absl::PrintF("{\"threads\": %d, \"read_gbps\": %.3f}\n", o.threads, gbps);
    } else {
      absl::PrintF("read bandwidth, %d threads: %.1f GB/s\n", o.threads, gbps);
    }
    return absl::OkStatus();
  }
  std::unique_ptr<TempModelFile> random_model;  // random:...: removed once mapped
  ASSIGN_OR_RETURN(const std::string path, ModelFilePath(o.model, !o.json, &random_model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  random_model.reset();
  const std::string shown = IsRandomModel(o.model) ? o.model : path;  // not a removed temp file
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                   CreateBackend(o.backend, o.threads,
                                 {.pack_weights = !o.no_pack, .fp8_weights = o.fp8_weights}));
  ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::Load(*store, backend.get()));
  const int64_t vocab = model->config().vocab_size;

  std::mt19937 rng(1234);
  std::vector<int32_t> prompt(o.prompt_tokens);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % vocab);

  std::vector<double> pp, tg;
  for (int rep = 0; rep <= o.reps; ++rep) {  // rep 0 is the warm-up
    ASSIGN_OR_RETURN(double p, TimePrefill(*model, prompt));
    ASSIGN_OR_RETURN(double g, TimeDecode(*model, prompt[0], o.gen_tokens));
    if (rep > 0) {
      pp.push_back(p);
      tg.push_back(g);
    }
  }
  const auto fmt = [](std::string* out, double v) { absl::StrAppendFormat(out, "%.2f", v); };
  const double peak_rss = PeakRssMiB();
  // A decode token reads every matrix once, except an untied embedding table (one row of it;
  // a tied table is read whole as the LM head).
  int64_t read_bytes = store->TotalBytes();
  if (store->Has("output.weight")) {
    ASSIGN_OR_RETURN(const TensorView table, store->Get("token_embd.weight"));
    read_bytes -= table.dim(0) * table.RowBytes();
  }
  if (o.fp8_weights) {  // the layers' float matrices: a byte per element, a float per row
    for (const std::string& name : store->TensorNames()) {
      if (name == "token_embd.weight" || name == "output.weight") continue;  // kept as they are
      ASSIGN_OR_RETURN(const TensorView w, store->Get(name));
      const bool float_matrix = w.rank() == 2 && (w.dtype == DType::kF32 ||
                                                  w.dtype == DType::kF16 || w.dtype == DType::kBF16);
      if (float_matrix) read_bytes -= w.NumBytes() - w.dim(0) * (w.dim(1) + 4);
    }
  }
  const double weight_mb = read_bytes / 1e6;
  if (o.json) {
    absl::PrintF(
        "{\"model\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"prompt_tokens\": %d, "
        "\"gen_tokens\": %d, \"reps\": %d, \"packed\": %s, \"fp8_weights\": %s, "
        "\"prefill_tps_median\": %.3f, "
        "\"decode_tps_median\": %.3f, \"prefill_tps\": [%s], \"decode_tps\": [%s], "
        "\"weight_mb_per_token\": %.3f, \"peak_rss_mib\": %.1f}\n",
        shown, o.backend, o.threads, o.prompt_tokens, o.gen_tokens, o.reps,
        o.no_pack ? "false" : "true", o.fp8_weights ? "true" : "false", Median(pp), Median(tg), absl::StrJoin(pp, ", ", fmt),
        absl::StrJoin(tg, ", ", fmt), weight_mb, peak_rss);
  } else {
    absl::PrintF("model %s, backend %s, threads %d\n", shown, o.backend, o.threads);
    absl::PrintF("prefill %4d tokens: %9.2f tokens/s median of %d [%s]\n", o.prompt_tokens,
                 Median(pp), o.reps, absl::StrJoin(pp, ", ", fmt));
    absl::PrintF("decode  %4d tokens: %9.2f tokens/s median of %d [%s]\n", o.gen_tokens, Median(tg),
                 o.reps, absl::StrJoin(tg, ", ", fmt));
    absl::PrintF(
        "weights read per decode token %.1f MB (%.1f GB/s at the median); peak "
        "resident %.1f MiB\n",
        weight_mb, Median(tg) * weight_mb / 1e3, peak_rss);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::Options o;
  CLI::App app{"Tessera prefill/decode throughput (llama-bench pp/tg counterpart)"};
  app.add_option("-m,--model", o.model,
                 "model path, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (random weights in "
                 "a named shape, synthesized to a temporary file first)");
  app.add_option("-b,--backend", o.backend, "backend name (cpu, cpu-reference, cuda)");
  app.add_option("-t,--threads", o.threads, "threads (0 = all hardware threads)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-p,--prompt-tokens", o.prompt_tokens, "prefill length")
      ->check(CLI::PositiveNumber);
  app.add_option("-n,--gen-tokens", o.gen_tokens, "decode steps")->check(CLI::PositiveNumber);
  app.add_option("-r,--reps", o.reps, "timed repetitions")->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "print one JSON object");
  app.add_flag("--no-pack", o.no_pack, "keep the weights in their GGUF layout (no repacking)");
  tessera::AddQuantizationFlag(&app, &o.fp8_weights);
  app.add_flag("--bandwidth-only", o.bandwidth_only,
               "only measure the read bandwidth of --threads threads (no model)");
  CLI11_PARSE(app, argc, argv);
  const absl::Status s = tessera::Run(o);
  if (!s.ok()) {
    std::fprintf(stderr, "tessera_bench_generate: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
