// The engine's flags (scheduler limits, KV cache size, prefix cache, policy), shared by
// `tessera generate --input`, `tessera serve` and tessera-worker.
#pragma once

#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "engine/scheduler.h"
#include "worker/batch_runner.h"

namespace tessera {

struct EngineFlags {
  int max_num_seqs = 64;
  int max_batched_tokens = 2048;
  int64_t kv_cache_mb = 512;  // ignored when kv_cache_tokens is given
  int64_t kv_cache_tokens = 0;
  double gpu_memory_utilization = 0.0;  // > 0: KV cache sized from the device's free memory
  int block_size = 16;
  std::string kv_cache_dtype = "f32";  // "f32" or "f16"; BatchRunnerOptions::kv_cache_dtype
  int swap_blocks = 0;  // host blocks for swapping preempted sequences (0: recompute)
  bool no_prefix_cache = false;
  bool priority_scheduling = false;
  bool enforce_eager = false;  // BatchRunnerOptions::record_decode_steps off
};

// Registers the flags on `app`; `flags` must outlive it. With `needs`, each flag requires
// that option (batch mode's --input).
void AddEngineFlags(CLI::App* app, EngineFlags* flags, CLI::Option* needs = nullptr);

// The scheduler settings the flags give, for a model of `context_length` tokens.
SchedulerConfig EngineSchedulerConfig(const EngineFlags& flags, int64_t context_length);

// BatchRunner options for one rank: the scheduler above, --kv-cache-mb, and a random
// default seed (requests without a seed differ from run to run). The caller adds the
// model group and rank role under parallelism.
BatchRunnerOptions EngineRunnerOptions(const EngineFlags& flags, int64_t context_length);

}  // namespace tessera
