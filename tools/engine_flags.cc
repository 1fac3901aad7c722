#include "tools/engine_flags.h"

#include <algorithm>
#include <random>

#include "common/dtype.h"

namespace tessera {

void AddEngineFlags(CLI::App* app, EngineFlags* f, CLI::Option* needs) {
  const auto need = [needs](CLI::Option* option) {
    return needs == nullptr ? option : option->needs(needs);
  };
  need(app->add_option("--max-num-seqs", f->max_num_seqs, "sequences per step")
           ->capture_default_str()
           ->check(CLI::PositiveNumber));
  need(app->add_option("--max-batched-tokens", f->max_batched_tokens,
                       "tokens per step (at least --max-num-seqs)")
           ->capture_default_str()
           ->check(CLI::PositiveNumber));
  CLI::Option* mb = need(app->add_option("--kv-cache-mb", f->kv_cache_mb, "KV cache size in MiB")
                             ->capture_default_str()
                             ->check(CLI::PositiveNumber));
  CLI::Option* tokens = need(app->add_option("--kv-cache-tokens", f->kv_cache_tokens,
                                             "KV cache size in tokens (instead of --kv-cache-mb)")
                                 ->check(CLI::PositiveNumber)
                                 ->excludes(mb));
  need(app->add_option("--gpu-memory-utilization", f->gpu_memory_utilization,
                       "fraction (0, 1] of the GPU's memory this rank may fill: the KV cache "
                       "takes what the weights leave of it (device backends; instead of "
                       "--kv-cache-mb)")
           ->check(CLI::PositiveNumber)
           ->check(CLI::Range(0.0, 1.0))
           ->excludes(mb)
           ->excludes(tokens));
  need(app->add_option("--block-size", f->block_size, "tokens per KV block")
           ->capture_default_str()
           ->check(CLI::PositiveNumber));
  need(app->add_option("--kv-cache-dtype", f->kv_cache_dtype,
                       "element type of the KV cache: f32, or f16 (half the memory per "
                       "token and faster attention; keys and values rounded to IEEE half)")
           ->capture_default_str()
           ->check(CLI::IsMember({"f32", "f16"})));
  need(app->add_option("--swap-blocks", f->swap_blocks,
                       "host-memory KV blocks that preempted sequences swap to instead "
                       "of being recomputed (0: recompute)")
           ->capture_default_str()
           ->check(CLI::NonNegativeNumber));
  need(app->add_flag("--no-prefix-cache", f->no_prefix_cache,
                     "do not share the KV blocks of common prompt prefixes"));
  need(app->add_flag("--priority-scheduling", f->priority_scheduling,
                     "schedule by each request's priority (lower first), then arrival"));
  need(app->add_flag("--enforce-eager", f->enforce_eager,
                     "launch every decode step's kernels one by one instead of recording "
                     "and replaying them as CUDA graphs (cuda backend)"));
}

SchedulerConfig EngineSchedulerConfig(const EngineFlags& f, int64_t context_length) {
  SchedulerConfig s;
  s.block_size = f.block_size;
  s.enable_prefix_caching = !f.no_prefix_cache;
  s.num_host_blocks = f.swap_blocks;
  s.max_model_len = static_cast<int>(std::min<int64_t>(context_length, 1 << 30));
  s.max_num_seqs = f.max_num_seqs;
  s.max_num_batched_tokens = f.max_batched_tokens;
  s.policy = f.priority_scheduling ? SchedulingPolicy::kPriority : SchedulingPolicy::kFcfs;
  if (f.kv_cache_tokens > 0) {
    s.num_blocks = static_cast<int>((f.kv_cache_tokens + f.block_size - 1) / f.block_size);
  }
  return s;
}

BatchRunnerOptions EngineRunnerOptions(const EngineFlags& f, int64_t context_length) {
  BatchRunnerOptions options;
  options.scheduler = EngineSchedulerConfig(f, context_length);
  options.kv_cache_bytes = f.kv_cache_mb * (int64_t{1} << 20);
  options.device_memory_fraction = f.gpu_memory_utilization;
  // --kv-cache-dtype accepts only names DTypeFromName knows (f32, f16).
  options.kv_cache_dtype = DTypeFromName(f.kv_cache_dtype).value();
  options.record_decode_steps = !f.enforce_eager;
  options.default_seed = std::random_device{}();
  return options;
}

}  // namespace tessera
