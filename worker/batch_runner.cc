#include "worker/batch_runner.h"

#include <algorithm>
#include <limits>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/step_batch.h"

namespace tessera {
namespace {

// FNV-1a: a stable per-request seed when the config has none.
uint64_t MixSeed(uint64_t seed, std::string_view request_id) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : request_id) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

void AddUnique(std::vector<int32_t>& ids, const std::vector<int32_t>& more) {
  for (int32_t id : more) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

// The sequence's index within its request, which keys its random stream; the n samples
// drawn at the end of the prompt are indices 0..n-1 (the forks are created in that order).
uint64_t SequenceIndex(const SequenceGroup& group, SequenceId seq_id) {
  uint64_t index = 0;
  const auto& seqs = group.sequences();
  while (index < seqs.size() && seqs[index]->id() != seq_id) ++index;
  return index;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchRunner>> BatchRunner::Create(LlamaModel* model,
                                                                 BatchRunnerOptions options) {
  if (model == nullptr) return absl::InvalidArgumentError("BatchRunner::Create: null model");
  model->set_record_decode_steps(options.record_decode_steps);
  const ModelConfig& c = model->config();
  SchedulerConfig& sc = options.scheduler;
  if (sc.num_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SchedulerConfig.num_blocks must be >= 0 (0: from kv_cache_bytes), got ", sc.num_blocks));
  }
  sc.max_model_len =
      static_cast<int>(std::min<int64_t>(sc.max_model_len, c.max_position_embeddings));
  if (options.role.batches_in_flight < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RankRole.batches_in_flight must be >= 0 (0: one per pipeline stage), got ",
        options.role.batches_in_flight));
  }
  if (options.role.batches_in_flight > 0) {
    sc.max_steps_in_flight = options.role.batches_in_flight;
  } else if (options.role.pipeline != nullptr) {
    sc.max_steps_in_flight = std::max(sc.max_steps_in_flight, options.role.pipeline->size());
  }

  KvCacheShape shape;
  shape.n_layers = static_cast<int>(model->stage().layers.size());  // this stage's
  shape.n_kv_heads = static_cast<int>(model->local_kv_heads());     // this rank's share
  shape.head_dim = static_cast<int>(c.head_dim);
  shape.block_size = sc.block_size;
  shape.bytes_per_elem = static_cast<int>(KvElementBytes(options.kv_cache_dtype));
  if (shape.bytes_per_elem == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchRunnerOptions.kv_cache_dtype must be f32 or f16, got ",
                     std::string(DTypeName(options.kv_cache_dtype))));
  }
  int64_t budget = options.kv_cache_bytes;
  if (options.device_memory_fraction != 0.0) {
    if (!(options.device_memory_fraction > 0.0 && options.device_memory_fraction <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("BatchRunnerOptions.device_memory_fraction must lie in (0, 1], got ",
                       options.device_memory_fraction));
    }
    if (sc.num_blocks > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "BatchRunnerOptions.device_memory_fraction and SchedulerConfig.num_blocks (",
          sc.num_blocks, ") both size the KV cache; set one"));
    }
    ASSIGN_OR_RETURN(const Backend::DeviceMemory memory, model->backend()->DeviceMemoryInfo());
    ASSIGN_OR_RETURN(budget, KvBudgetFromDeviceMemory(memory.free_bytes, memory.total_bytes,
                                                      options.device_memory_fraction));
  }
  if (sc.num_blocks > 0) {
    ASSIGN_OR_RETURN(const int64_t per_token, KvBytesPerToken(shape));
    budget = per_token * sc.block_size * sc.num_blocks;
  }
  ASSIGN_OR_RETURN(KvCapacity capacity, ComputeKvCapacity(shape, budget));
  if (capacity.num_blocks <= 0) {
    return absl::ResourceExhaustedError(absl::StrCat("BatchRunner: kv_cache_bytes ", budget,
                                                     " holds no KV block of ",
                                                     capacity.bytes_per_block, " bytes"));
  }
  if (capacity.num_blocks > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("BatchRunner: kv_cache_bytes gives ",
                                                   capacity.num_blocks,
                                                   " blocks, more than the scheduler can count"));
  }
  sc.num_blocks = static_cast<int>(capacity.num_blocks);
  RETURN_IF_ERROR(ValidateSchedulerConfig(sc));

  ASSIGN_OR_RETURN(PagedKvCache cache, model->NewPagedKvCache(capacity.num_blocks, sc.block_size,
                                                               options.kv_cache_dtype));
  // The pool must be what the capacity formula promised: the scheduler hands out exactly
  // num_blocks ids and the memory budget was computed from bytes_per_block.
  if (cache.layout().num_blocks != capacity.num_blocks ||
      cache.bytes_per_block() != capacity.bytes_per_block ||
      cache.NumBytes() != capacity.bytes_used) {
    return absl::InternalError(
        absl::StrCat("BatchRunner: PagedKvCache allocated ", cache.layout().num_blocks,
                     " blocks of ", cache.bytes_per_block(), " bytes (", cache.NumBytes(),
                     " in all) but kv_capacity says ", capacity.num_blocks, " blocks of ",
                     capacity.bytes_per_block, " bytes (", capacity.bytes_used, ")"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, Scheduler::Create(sc));
  std::optional<PagedKvCache> host_cache;
  if (sc.num_host_blocks > 0) {
    ASSIGN_OR_RETURN(host_cache, model->NewPagedKvCache(sc.num_host_blocks, sc.block_size,
                                                        options.kv_cache_dtype));
  }
  auto runner = std::unique_ptr<BatchRunner>(
      new BatchRunner(model, std::move(scheduler), std::move(cache), std::move(host_cache),
                      capacity, options.default_seed, options.role));
  if (options.model_group != nullptr) {
    runner->leader_ = options.model_group;
    RETURN_IF_ERROR(runner->leader_->SendSetup({.num_blocks = sc.num_blocks,
                                                .block_size = sc.block_size,
                                                .num_host_blocks = sc.num_host_blocks,
                                                .kv_dtype = options.kv_cache_dtype}));
  }
  return runner;
}

BatchRunner::BatchRunner(LlamaModel* model, std::unique_ptr<Scheduler> scheduler,
                         PagedKvCache cache, std::optional<PagedKvCache> host_cache,
                         KvCapacity capacity, uint64_t default_seed, RankRole role)
    : model_(model),
      scheduler_(std::move(scheduler)),
      cache_(std::move(cache)),
      host_cache_(std::move(host_cache)),
      capacity_(capacity),
      default_seed_(default_seed),
      stage_runner_(model, role) {}

std::string BatchRunner::StartupReport() const {
  std::string report =
      absl::StrFormat("%s; allocated %d bytes (%d blocks x %d bytes, %s elements) on %s",
                      capacity_.ToString(), cache_.NumBytes(), cache_.layout().num_blocks,
                      cache_.bytes_per_block(), DTypeName(cache_.layout().dtype),
                      model_->backend()->name());
  if (host_cache_.has_value()) {
    absl::StrAppendFormat(&report, "; swap space %d host blocks (%d bytes)",
                          host_cache_->layout().num_blocks, host_cache_->NumBytes());
  }
  return report;
}

StepWork BatchRunner::BuildStepWork(const StepPlan& plan, const StepBatch& batch) {
  StepWork w;
  w.swap_out = ToKvBlockCopies(plan.swap_out);
  w.swap_in = ToKvBlockCopies(plan.swap_in);
  w.copies = ToKvBlockCopies(plan.block_copies);
  w.token_ids = batch.token_ids;
  w.positions = batch.positions;
  w.sequences.reserve(batch.sequences.size());
  for (const PagedSequence& seq : batch.sequences) {
    w.sequences.push_back({seq.query_start, seq.num_queries, seq.context_len,
                           std::vector<int32_t>(seq.block_table.begin(), seq.block_table.end())});
  }
  w.logits_rows = batch.logits_rows;
  w.hidden_rows = batch.hidden_rows;
  return w;
}

absl::Status BatchRunner::AddRequest(WorkerRequest request, absl::Time now) {
  const int64_t vocab = model_->config().vocab_size;
  const std::vector<int32_t>& prompt = request.spec.prompt_token_ids;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("request ", request.spec.request_id, ": prompt_token_ids[", i,
                       "] = ", prompt[i], " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  const GenerationConfig& g = request.generation;
  if (samplers_.contains(request.spec.request_id) ||
      strategies_.contains(request.spec.request_id)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id ", request.spec.request_id, " is in use"));
  }
  const uint64_t seed = MixSeed(default_seed_, request.spec.request_id);
  if (g.max_time.has_value()) {
    request.spec.deadline = std::min(request.spec.deadline, now + absl::Seconds(*g.max_time));
  }
  AddUnique(request.spec.stop_token_ids, g.eos_token_ids);
  AddUnique(request.spec.stop_token_ids, g.stop_token_ids);
  std::string id = request.spec.request_id;
  if (NeedsDecodingStrategy(g)) {
    if (request.stops_at != nullptr || !g.stop_strings.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", id, ": stop_strings are not supported with beam or contrastive search"));
    }
    if (request.spec.n != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", id, ": n must be 1 for beam or contrastive search (num_return_sequences ",
          "chooses how many hypotheses come back), got ", request.spec.n));
    }
    // End ids with the EOS ids first: diverse beam search ends its hypotheses with the first.
    std::vector<int32_t> end_ids = g.eos_token_ids;
    AddUnique(end_ids, request.spec.stop_token_ids);
    StrategyOptions options{.vocab_size = static_cast<int32_t>(vocab),
                            .max_new_tokens = request.spec.max_new_tokens,
                            .end_token_ids = std::move(end_ids),
                            .pad_token_id = g.pad_token_id.value_or(
                                g.eos_token_ids.empty() ? 0 : g.eos_token_ids.front()),
                            .seed = g.seed.value_or(seed),
                            .top_logprobs = g.logprobs.value_or(0)};
    // Built once to validate before the scheduler sees the request, then for its sequence.
    ASSIGN_OR_RETURN(std::unique_ptr<DecodingStrategy> probe,
                     CreateDecodingStrategy(g, options, /*first=*/-1));
    request.spec.decoding_width = probe->width();
    request.spec.wants_hidden_states = probe->wants_hidden_states();
    RETURN_IF_ERROR(CheckWidth(id, g.IsContrastiveSearch() ? "top_k" : "num_beams",
                               request.spec.decoding_width));
    RETURN_IF_ERROR(scheduler_->AddRequest(std::move(request.spec), now));
    const SequenceId first = scheduler_->FindRequest(id)->sequences().front()->id();
    absl::StatusOr<std::unique_ptr<DecodingStrategy>> strategy =
        CreateDecodingStrategy(g, options, first);
    if (!strategy.ok()) {
      (void)scheduler_->Cancel(id);
      return strategy.status();
    }
    strategies_[id].strategy = std::move(*strategy);
    return absl::OkStatus();
  }
  // best_of: draw that many samples, keep the spec.n with the highest cumulative logprob
  // (which therefore must be recorded).
  GenerationConfig sampling = g;
  int keep_best = 0;
  if (g.best_of.has_value() && *g.best_of > request.spec.n) {
    keep_best = request.spec.n;
    request.spec.n = static_cast<int>(*g.best_of);
    sampling.logprobs = g.logprobs.value_or(0);
  }
  RETURN_IF_ERROR(
      CheckWidth(id, keep_best > 0 ? "best_of" : "num_return_sequences (n)", request.spec.n));
  ASSIGN_OR_RETURN(Sampler sampler, Sampler::Create(sampling, static_cast<int32_t>(vocab), seed));
  RETURN_IF_ERROR(scheduler_->AddRequest(std::move(request.spec), now));
  if (keep_best > 0) keep_best_[id] = keep_best;
  if (request.stops_at != nullptr) stop_checks_[id] = std::move(request.stops_at);
  samplers_.emplace(std::move(id), std::move(sampler));
  return absl::OkStatus();
}

absl::Status BatchRunner::CheckWidth(const std::string& request_id, std::string_view field,
                                     int width) const {
  const int max_seqs = scheduler_->config().max_num_seqs;
  if (width <= max_seqs) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "request ", request_id, ": ", std::string(field), " = ", width, " needs ", width,
      " sequences at once, more than this worker runs (max_num_seqs = ", max_seqs, ")"));
}

absl::Status BatchRunner::Cancel(std::string_view request_id) {
  return scheduler_->Cancel(request_id);
}

std::vector<LogitsRowWant> BatchRunner::LogitsWants(const StepPlan& plan,
                                                    const StepBatch& batch) const {
  using Kind = LogitsRowWant::Kind;
  std::vector<LogitsRowWant> wants(batch.logits_entries.size());
  bool any = false;
  for (size_t r = 0; r < wants.size(); ++r) {
    const ScheduledSequence& e = plan.sequences[batch.logits_entries[r]];
    const auto sampler = samplers_.find(e.request_id);
    if (strategies_.contains(e.request_id) || sampler == samplers_.end()) continue;
    const SequenceGroup* group = scheduler_->FindRequest(e.request_id);
    const Sequence* seq = scheduler_->FindSequence(e.seq_id);
    if (group == nullptr || seq == nullptr) continue;  // Decode reports it
    const TokenHistory history{seq->token_ids(), static_cast<size_t>(seq->prompt_len())};
    if (e.num_samples == 1 && sampler->second.greedy_after_edits()) {
      wants[r].kind = Kind::kArgMax;
      any = true;
    } else if (const auto logprobs = sampler->second.greedy_raw_logprobs();
               logprobs.has_value() && e.num_samples == 1 && *logprobs >= 0 &&
               *logprobs <= kMaxLogprobCandidates) {
      wants[r] = {.kind = Kind::kArgMax, .logprobs = *logprobs};
      any = true;
    } else if (const auto top_k = sampler->second.top_k_candidates();
               top_k.has_value() && top_k->k <= kMaxTopKCandidates) {
      wants[r] = {.kind = Kind::kTopK, .top_k = top_k->k, .temperature = top_k->temperature,
                  .logprobs = sampler->second.logprobs().value_or(-1)};
      any = true;
    } else if (std::optional<NucleusSelection> nucleus = sampler->second.nucleus();
               nucleus.has_value() ||
               (nucleus = sampler->second.nucleus_with_raw_logprobs()).has_value()) {
      const int64_t logprobs = sampler->second.logprobs().value_or(-1);
      if (logprobs > kNucleusCandidates) continue;  // the whole row
      wants[r].kind = Kind::kNucleus;
      wants[r].temperature = nucleus->temperature;
      wants[r].top_p = nucleus->top_p;
      wants[r].min_p = nucleus->min_p;
      wants[r].logprobs = logprobs;
      any = true;
    } else if (std::optional<float> temperature = sampler->second.plain_sampling_temperature();
               e.num_samples == 1 &&
               (temperature.has_value() ||
                (temperature = sampler->second.plain_sampling_with_raw_logprobs()).has_value())) {
      const int64_t logprobs = sampler->second.logprobs().value_or(-1);
      if (logprobs > kMaxLogprobCandidates) continue;  // the whole row
      wants[r].kind = Kind::kDraw;
      wants[r].temperature = *temperature;
      wants[r].u = sampler->second.DrawUniform(history, SequenceIndex(*group, e.seq_id));
      wants[r].logprobs = logprobs;
      any = true;
    }
    // The selections above are of the row after the chain's penalties and biases, which the
    // backend applies where the logits are.
    if (wants[r].kind != Kind::kRow && sampler->second.chain().has_edits()) {
      wants[r].edits = sampler->second.chain().Edits(history);
      // More alternatives than top-k candidates come from the raw row apart from them, which
      // the model does for edited rows only: a row none of its penalties touches yet (a
      // frequency penalty before the first generated token) comes back whole.
      if (wants[r].kind == Kind::kTopK && wants[r].logprobs > wants[r].top_k &&
          wants[r].edits.empty()) {
        wants[r] = LogitsRowWant{};
      }
    }
  }
  if (!any) wants.clear();
  return wants;
}

absl::StatusOr<StepResult> BatchRunner::Decode(const StepPlan& plan, const StepBatch& batch,
                                               std::vector<std::vector<SampleResult>>* drawn) {
  using Kind = LogitsRowWant::Kind;
  drawn->assign(plan.sequences.size(), {});
  const size_t vocab = static_cast<size_t>(model_->config().vocab_size);
  const size_t hidden_size = static_cast<size_t>(model_->config().hidden_size);
  StepResult result;
  result.step_index = plan.step_index;
  // Hidden states: the prompt's go to the strategy's context; the last row's to its row.
  absl::flat_hash_map<SequenceId, std::span<const float>> last_hidden;
  for (size_t h = 0; h < batch.hidden_rows.size(); ++h) {
    const ScheduledSequence& e = plan.sequences[batch.hidden_entries[h]];
    auto state = strategies_.find(e.request_id);
    if (state == strategies_.end()) continue;
    const int64_t position = batch.positions[static_cast<size_t>(batch.hidden_rows[h])];
    const std::span<const float> row(hidden_.data() + h * hidden_size, hidden_size);
    const Sequence* seq = scheduler_->FindSequence(e.seq_id);
    if (seq != nullptr && position < seq->prompt_len()) {
      state->second.strategy->AddContextHidden(position, row);
    }
    if (position == e.start_position + static_cast<int64_t>(e.token_ids.size()) - 1) {
      last_hidden[e.seq_id] = row;
    }
  }
  std::vector<float> processed(vocab);
  const size_t rows = batch.logits_entries.size();
  const bool selected = !selection_.wants.empty();
  if (selected && (selection_.wants.size() != rows || selection_.row_index.size() != rows ||
                   selection_.argmax.size() != rows || selection_.candidates.size() != rows ||
                   selection_.drawn.size() != rows || selection_.denominators.size() != rows ||
                   selection_.log_normalizers.size() != rows ||
                   selection_.drawn_logits.size() != rows || selection_.edited.size() != rows ||
                   selection_.unedited.size() != rows ||
                   selection_.raw_candidates.size() != rows)) {
    return absl::InternalError(absl::StrCat("BatchRunner: a logits selection of ",
                                            selection_.row_index.size(), " rows for ", rows,
                                            " logits entries"));
  }
  // Whether row r's penalties and biases were applied where the logits are.
  const auto edited = [&](size_t r) { return selected && selection_.edited[r]; };
  // Sample's raw logprobs for row r's `token` (raw logit `logit`) from the backend's
  // log-normalizer and candidates (an edited row's taken before its edits).
  const auto raw_logprobs = [&](size_t r, int32_t token, float logit) {
    const TopKCandidates& top =
        edited(r) ? selection_.raw_candidates[r] : selection_.candidates[r];
    return RawLogprobsFromCandidates(token, logit, top.ids, top.values,
                                     selection_.wants[r].logprobs, selection_.log_normalizers[r]);
  };
  const auto push_raw_logprobs = [&](size_t r, int32_t token, float logit) {
    ++stats_.backend_logprob_rows;
    (*drawn)[batch.logits_entries[r]].push_back(raw_logprobs(r, token, logit));
  };
  // The raw logit of `token` in row r, whose value in the row it was chosen from is `value`.
  const auto raw_logit = [&](size_t r, int32_t token, float value) {
    return edited(r) ? ReplacedLogit(selection_, r, token).value_or(value) : value;
  };
  for (size_t r = 0; r < rows; ++r) {
    const ScheduledSequence& e = plan.sequences[batch.logits_entries[r]];
    SequenceOutput out;
    out.seq_id = e.seq_id;
    const int64_t row_index = selected ? selection_.row_index[r] : static_cast<int64_t>(r);
    if (edited(r)) ++stats_.backend_edited_rows;
    if (row_index < 0 && selection_.wants[r].kind == Kind::kArgMax) {
      // Sampler::Sample's greedy choice: no token when no logit is above -inf.
      const RowArgMax best = selection_.argmax[r];
      if (best.index < 0 || best.value == -std::numeric_limits<float>::infinity()) {
        out.finish = FinishReason::kAborted;
      } else {
        out.tokens.push_back(best.index);
        if (selection_.wants[r].logprobs >= 0) {
          push_raw_logprobs(r, best.index, raw_logit(r, best.index, best.value));
        }
      }
      result.outputs.push_back(std::move(out));
      continue;
    }
    if (row_index < 0 && selection_.wants[r].kind == Kind::kRow) {
      return absl::InternalError(absl::StrCat("BatchRunner: logits row ", r, " did not come back"));
    }
    const std::span<const float> raw =
        row_index < 0 ? std::span<const float>()
                      : std::span<const float>(logits_.data() + row_index * vocab, vocab);
    if (auto state = strategies_.find(e.request_id); state != strategies_.end()) {
      StrategyState::Row& row = state->second.rows[e.seq_id];
      row.logits.assign(raw.begin(), raw.end());
      const auto h = last_hidden.find(e.seq_id);
      if (h != last_hidden.end()) row.hidden.assign(h->second.begin(), h->second.end());
      result.outputs.push_back(std::move(out));  // held until the strategy decides
      continue;
    }
    const SequenceGroup* group = scheduler_->FindRequest(e.request_id);
    const Sequence* seq = scheduler_->FindSequence(e.seq_id);
    auto sampler = samplers_.find(e.request_id);
    if (group == nullptr || seq == nullptr || sampler == samplers_.end()) {
      return absl::InternalError(absl::StrCat("BatchRunner: no state for sequence ", e.seq_id,
                                              " of request ", e.request_id));
    }
    const uint64_t index = SequenceIndex(*group, e.seq_id);
    const TokenHistory history{seq->token_ids(), static_cast<size_t>(seq->prompt_len())};
    if (row_index < 0) ++stats_.backend_sampled_rows;
    if (row_index < 0 && selection_.wants[r].kind == Kind::kDraw) {
      // Drawn where the logits are, with the uniform Sample would have drawn with.
      if (selection_.wants[r].u != sampler->second.DrawUniform(history, index)) {
        return absl::InternalError(absl::StrCat("BatchRunner: sequence ", e.seq_id,
                                                " changed between its step's launch and landing"));
      }
      const int32_t token = selection_.drawn[r];
      if (token < 0) {
        out.finish = FinishReason::kAborted;
      } else {
        out.tokens.push_back(token);
        if (selection_.wants[r].logprobs >= 0) {
          push_raw_logprobs(r, token, selection_.drawn_logits[r]);
        }
      }
      result.outputs.push_back(std::move(out));
      continue;
    }
    const TopKCandidates* candidates = row_index < 0 ? &selection_.candidates[r] : nullptr;
    // The raw row's log Σ exp, for a top-k or nucleus row whose logprobs the sampler takes
    // from its candidates; an edited row's are taken below, from the raw row's own.
    std::optional<double> normalizer;
    const bool logprobs_after = edited(r) && selection_.wants[r].logprobs >= 0;
    if (candidates != nullptr && selection_.wants[r].logprobs >= 0) {
      ++stats_.backend_logprob_rows;
      if (!logprobs_after) normalizer = selection_.log_normalizers[r];
    }
    for (int k = 0; k < e.num_samples; ++k) {
      SampleResult s;
      if (candidates != nullptr && selection_.wants[r].kind == Kind::kNucleus) {
        processed.assign(candidates->values.begin(), candidates->values.end());
        std::optional<SampleResult> from_nucleus =
            sampler->second.SampleNucleus(history, candidates->ids, processed,
                                          selection_.denominators[r], index + k, normalizer);
        if (!from_nucleus.has_value()) {  // the model checked it with the same rule
          return absl::InternalError(absl::StrCat("BatchRunner: the nucleus of sequence ",
                                                  e.seq_id, " reaches past its candidates"));
        }
        s = *std::move(from_nucleus);
      } else if (candidates != nullptr) {  // the same token as the whole row would give
        processed.assign(candidates->values.begin(), candidates->values.end());
        s = sampler->second.SampleCandidates(history, candidates->ids, processed, index + k,
                                             normalizer);
      } else if (edited(r)) {  // back whole, edited
        processed.assign(raw.begin(), raw.end());
        s = sampler->second.SampleEdited(history, processed, index + k);
      } else {
        processed.assign(raw.begin(), raw.end());
        s = sampler->second.Sample(history, processed, index + k);
      }
      if (s.token < 0) {  // the processors removed every token
        out.tokens.clear();
        out.finish = FinishReason::kAborted;
        break;
      }
      out.tokens.push_back(s.token);
      if (logprobs_after) {  // the token's value in the edited row it was chosen from
        float value = 0.0f;
        if (candidates != nullptr) {
          const auto at =
              std::lower_bound(candidates->ids.begin(), candidates->ids.end(), s.token);
          value = candidates->values[static_cast<size_t>(at - candidates->ids.begin())];
        } else {
          value = raw[static_cast<size_t>(s.token)];
        }
        s = raw_logprobs(r, s.token, raw_logit(r, s.token, value));
      }
      if (sampler->second.wants_logprobs()) {
        (*drawn)[batch.logits_entries[r]].push_back(std::move(s));
      }
    }
    result.outputs.push_back(std::move(out));
  }
  return result;
}

absl::Status BatchRunner::RefreshRankTimes() {
  if (leader_ == nullptr) {
    rank_times_ = {stage_runner_.times()};
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(rank_times_, leader_->CollectRankTimes(stage_runner_.times()));
  return absl::OkStatus();
}

absl::Status BatchRunner::Launch(StepPlan plan) {
  InFlightStep& step = in_flight_.emplace_back();
  step.plan = std::move(plan);
  step.batch = BuildStepBatch(step.plan);  // views step.plan, which stays put in the deque
  StepWork work = BuildStepWork(step.plan, step.batch);
  // Leader-local (not encoded for the other ranks): with stages the logits come back whole.
  if (!stage_runner_.pipelined()) work.logits_wants = LogitsWants(step.plan, step.batch);
  // Every rank of the model group runs the same work; their collectives meet inside.
  if (leader_ != nullptr) RETURN_IF_ERROR(leader_->SendStep(work));
  RETURN_IF_ERROR(stage_runner_.Launch(work, cache_, host_cache_));
  stats_.blocks_swapped += static_cast<int64_t>(work.swap_out.size() + work.swap_in.size());
  stats_.block_copies += static_cast<int64_t>(work.copies.size());
  stats_.max_batches_in_flight =
      std::max(stats_.max_batches_in_flight, static_cast<int64_t>(in_flight_.size()));
  return absl::OkStatus();
}

absl::Status BatchRunner::Land() {
  RETURN_IF_ERROR(stage_runner_.Finish(&logits_, &hidden_, &selection_));
  const InFlightStep& step = in_flight_.front();
  const StepPlan& plan = step.plan;
  if (!plan.empty()) {
    std::vector<std::vector<SampleResult>> drawn;
    ASSIGN_OR_RETURN(const StepResult result, Decode(plan, step.batch, &drawn));
    const auto& wants = selection_.wants;
    if (!wants.empty() && std::all_of(wants.begin(), wants.end(), [](const LogitsRowWant& w) {
          return w.kind == LogitsRowWant::Kind::kArgMax;
        })) {
      ++stats_.argmax_steps;
    }
    std::vector<SampleFork> forks;
    RETURN_IF_ERROR(scheduler_->Update(result, &forks));
    RecordLogprobs(plan, drawn, forks);
    RETURN_IF_ERROR(CheckStopTexts(plan));
    RETURN_IF_ERROR(AdvanceStrategies());
    ++stats_.steps;
    stats_.forward_tokens += static_cast<int64_t>(step.batch.token_ids.size());
  }
  in_flight_.pop_front();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RequestOutput>> BatchRunner::Step(absl::Time now) {
  // Launch plans until max_steps_in_flight are out (one, without pipeline stages) or
  // nothing more can run, then land the oldest.
  const size_t max_in_flight = static_cast<size_t>(scheduler_->config().max_steps_in_flight);
  while (in_flight_.size() < max_in_flight) {
    ASSIGN_OR_RETURN(StepPlan plan, scheduler_->Schedule(now));
    const bool runs = !plan.empty();
    // A plan that only preempted still swaps blocks out on every rank.
    if (runs || !plan.swap_out.empty()) RETURN_IF_ERROR(Launch(std::move(plan)));
    if (!runs) break;
  }
  const bool landed = !in_flight_.empty() && !in_flight_.front().plan.empty();
  if (!in_flight_.empty()) RETURN_IF_ERROR(Land());
  std::vector<RequestOutput> finished = scheduler_->TakeFinished();
  for (RequestOutput& out : finished) {
    samplers_.erase(out.request_id);
    stop_checks_.erase(out.request_id);
    AttachLogprobs(out);
    KeepBest(out);
    ReplaceWithStrategyResults(out);
  }
  // The ranks' step times: every kRankTimesEverySteps steps, and when a burst of work ends.
  if (landed && (stats_.steps % kRankTimesEverySteps == 0 || !HasUnfinished())) {
    RETURN_IF_ERROR(RefreshRankTimes());
  }
  return finished;
}

absl::StatusOr<std::vector<RequestOutput>> BatchRunner::RunUntilIdle(absl::Time now) {
  std::vector<RequestOutput> all;
  // An empty step that finishes nothing changes no state unless it preempted, after which
  // the next step schedules the preempted sequences; two in a row mean no progress is
  // possible at this `now` (the scheduler's admission checks should make that unreachable).
  int idle_steps = 0;
  // At least one step: a request cancelled since the last one waits there for its output.
  do {
    const int64_t steps_before = stats_.steps;
    ASSIGN_OR_RETURN(std::vector<RequestOutput> done, Step(now));
    idle_steps = stats_.steps == steps_before && done.empty() ? idle_steps + 1 : 0;
    if (idle_steps >= 2) {
      return absl::InternalError(absl::StrCat(
          "BatchRunner::RunUntilIdle: no request can be scheduled (", scheduler_->num_waiting(),
          " waiting, ", scheduler_->num_running(), " running)"));
    }
    for (RequestOutput& out : done) all.push_back(std::move(out));
  } while (HasUnfinished());
  return all;
}

}  // namespace tessera
