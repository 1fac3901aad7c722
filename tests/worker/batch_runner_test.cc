// BatchRunner with tiny random-weight models: many requests arriving over time through a
// small token budget and a small block pool (chunked prefill, preemption by recompute),
// prefix caching, seeded sampling with parallel samples (copy-on-write forks), cancellation
// and refusals. Every generated sequence must equal what the request generates alone
// through the contiguous Forward (tests/worker/solo_decode.h), token for token.
#include "worker/batch_runner.h"

#include <cstdio>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "decoding/sampler.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "tests/model/tiny_llama.h"
#include "tests/worker/solo_decode.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Param {
  std::string backend;
  DType dtype;
};

void PrintTo(const Param& p, std::ostream* os) { *os << DTypeName(p.dtype) << " on " << p.backend; }

class BatchRunnerTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    spec_.vocab = 64;
    spec_.context = 128;
    spec_.dtype = GetParam().dtype;
    path_ = testing::TempGgufPath("worker");
    auto tiny = testing::LoadTinyModel(spec_, path_, GetParam().backend, 2);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  std::unique_ptr<BatchRunner> MakeRunner(int num_blocks, int token_budget, int max_seqs,
                                          int num_host_blocks = 0,
                                          DType kv_dtype = DType::kF32,
                                          int steps_in_flight = 1) {
    BatchRunnerOptions options;
    options.scheduler.max_steps_in_flight = steps_in_flight;
    options.kv_cache_dtype = kv_dtype;
    options.scheduler.num_host_blocks = num_host_blocks;
    options.scheduler.block_size = 4;
    options.scheduler.num_blocks = num_blocks;
    options.scheduler.max_num_batched_tokens = token_budget;
    options.scheduler.max_num_seqs = max_seqs;
    options.scheduler.max_model_len = static_cast<int>(spec_.context);
    auto runner = BatchRunner::Create(tiny_.model.get(), options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  std::vector<int32_t> RandomTokens(std::mt19937& rng, int n) {
    std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(spec_.vocab - 1));
    std::vector<int32_t> out(static_cast<size_t>(n));
    for (int32_t& t : out) t = token(rng);
    return out;
  }

  static WorkerRequest Greedy(std::string id, std::vector<int32_t> prompt, int max_new,
                              std::vector<int32_t> stops = {}) {
    WorkerRequest r;
    r.spec.request_id = std::move(id);
    r.spec.prompt_token_ids = std::move(prompt);
    r.spec.max_new_tokens = max_new;
    r.generation.eos_token_ids = std::move(stops);
    return r;
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
};

// Finished outputs by request id; each request must finish exactly once.
std::map<std::string, RequestOutput> ById(std::vector<RequestOutput> outputs) {
  std::map<std::string, RequestOutput> by_id;
  for (RequestOutput& out : outputs) {
    const std::string id = out.request_id;
    EXPECT_TRUE(by_id.emplace(id, std::move(out)).second) << id << " finished twice";
  }
  return by_id;
}

// Adds every request at time 0 and runs until idle: the outputs by request id (empty, with
// a failure recorded, when the runner fails).
std::map<std::string, RequestOutput> RunAll(BatchRunner& runner,
                                            const std::vector<WorkerRequest>& requests) {
  const absl::Time now = absl::UnixEpoch();
  for (const WorkerRequest& r : requests) {
    const absl::Status added = runner.AddRequest(r, now);
    EXPECT_TRUE(added.ok()) << added;
    if (!added.ok()) return {};
  }
  auto outputs = runner.RunUntilIdle(now);
  EXPECT_TRUE(outputs.ok()) << outputs.status();
  if (!outputs.ok()) return {};
  return ById(std::move(*outputs));
}

TEST_P(BatchRunnerTest, ManyArrivingRequestsMatchSoloGreedy) {
  std::mt19937 rng(42);
  constexpr int kRequests = 64;
  std::vector<WorkerRequest> requests;
  std::multimap<int, size_t> arrivals;  // step -> request index
  std::uniform_int_distribution<int> prompt_len(1, 40), max_new(1, 12), arrival(0, 40);
  for (int i = 0; i < kRequests; ++i) {
    std::vector<int32_t> prompt = RandomTokens(rng, prompt_len(rng));
    const int new_tokens = max_new(rng);
    // A third of them stop at a token they generate halfway (found by a solo run).
    std::vector<int32_t> stops;
    if (i % 3 == 0) {
      const auto solo = testing::SoloGenerate(*tiny_.model, prompt, new_tokens, {});
      stops = {solo.tokens[solo.tokens.size() / 2]};
    }
    requests.push_back(Greedy(absl::StrCat("r", i), prompt, new_tokens, stops));
    arrivals.emplace(arrival(rng), static_cast<size_t>(i));
  }
  // One step at a time, and three disjoint batches in flight as a pipeline of 3 stages keeps
  // them (each lands while the next two are out; with one rank they run at launch).
  for (const int in_flight : {1, 3}) {
    SCOPED_TRACE(absl::StrCat(in_flight, " batches in flight"));
    // 24 blocks of 4 = 96 token slots for up to 8 sequences of up to 52 tokens: preemption.
    auto runner = MakeRunner(/*num_blocks=*/24, /*token_budget=*/16, /*max_seqs=*/8,
                             /*num_host_blocks=*/0, DType::kF32, in_flight);
    ASSERT_NE(runner, nullptr);
    auto pending = arrivals;
    std::vector<RequestOutput> outputs;
    const absl::Time now = absl::UnixEpoch();
    for (int step = 0; step < 10000 && (runner->HasUnfinished() || !pending.empty()); ++step) {
      while (!pending.empty() && pending.begin()->first <= step) {
        ASSERT_TRUE(runner->AddRequest(requests[pending.begin()->second], now).ok());
        pending.erase(pending.begin());
      }
      auto done = runner->Step(now);
      ASSERT_TRUE(done.ok()) << done.status();
      for (RequestOutput& out : *done) outputs.push_back(std::move(out));
    }
    const auto by_id = ById(std::move(outputs));
    ASSERT_EQ(by_id.size(), static_cast<size_t>(kRequests));
    const SchedulerStats stats = runner->scheduler().stats();
    EXPECT_GT(stats.preemptions, 0) << "the pool was meant to force preemption";
    int stopped = 0;
    for (const WorkerRequest& r : requests) {
      const testing::SoloResult solo =
          testing::SoloGenerate(*tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens,
                                r.generation.eos_token_ids);
      const RequestOutput& out = by_id.at(r.spec.request_id);
      ASSERT_EQ(out.completions.size(), 1u);
      EXPECT_EQ(out.completions[0].generated_token_ids, solo.tokens) << r.spec.request_id;
      EXPECT_EQ(out.completions[0].finish_reason, solo.finish) << r.spec.request_id;
      stopped += solo.finish == FinishReason::kStop;
    }
    EXPECT_GT(stopped, 0);
    EXPECT_FALSE(runner->HasUnfinished());
    EXPECT_EQ(runner->stats().max_batches_in_flight, in_flight);
    // Plain greedy rows only: their tokens came from the backend's argmax, not from logits.
    EXPECT_GT(runner->stats().argmax_steps, 0);
  }
}

TEST_P(BatchRunnerTest, SharedSystemPromptHitsThePrefixCache) {
  std::mt19937 rng(3);
  const std::vector<int32_t> system = RandomTokens(rng, 24);  // 6 full blocks
  auto runner = MakeRunner(/*num_blocks=*/64, /*token_budget=*/32, /*max_seqs=*/8);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> prompt = system;
    const std::vector<int32_t> user = RandomTokens(rng, 3 + i);
    prompt.insert(prompt.end(), user.begin(), user.end());
    requests.push_back(Greedy(absl::StrCat("p", i), prompt, 6));
  }
  const absl::Time now = absl::UnixEpoch();
  // The first request alone fills the cache with the shared blocks; the rest then reuse them.
  ASSERT_TRUE(runner->AddRequest(requests[0], now).ok());
  auto first = runner->RunUntilIdle(now);
  ASSERT_TRUE(first.ok()) << first.status();
  for (size_t i = 1; i < requests.size(); ++i) {
    ASSERT_TRUE(runner->AddRequest(requests[i], now).ok());
  }
  auto rest = runner->RunUntilIdle(now);
  ASSERT_TRUE(rest.ok()) << rest.status();
  std::vector<RequestOutput> all = std::move(*first);
  for (RequestOutput& out : *rest) all.push_back(std::move(out));
  const auto by_id = ById(std::move(all));
  ASSERT_EQ(by_id.size(), requests.size());
  EXPECT_GT(runner->scheduler().stats().prefix_hit_blocks, 0);
  for (const WorkerRequest& r : requests) {
    const testing::SoloResult solo =
        testing::SoloGenerate(*tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens, {});
    EXPECT_EQ(by_id.at(r.spec.request_id).completions[0].generated_token_ids, solo.tokens)
        << r.spec.request_id;
  }
}

TEST_P(BatchRunnerTest, SeededSamplingAndParallelSamplesMatchSolo) {
  std::mt19937 rng(11);
  auto runner = MakeRunner(/*num_blocks=*/48, /*token_budget=*/16, /*max_seqs=*/12);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 6; ++i) {
    WorkerRequest r = Greedy(absl::StrCat("s", i), RandomTokens(rng, 5 + 3 * i), 8);
    r.generation.do_sample = true;
    r.generation.temperature = 1.5;  // flat enough that the draws vary
    r.generation.top_k = 20;
    r.generation.seed = 1000 + i;
    r.spec.n = i % 2 == 0 ? 2 : 1;  // forks share the prompt's last block: copy-on-write
    requests.push_back(r);
  }
  const auto by_id = RunAll(*runner, requests);
  ASSERT_EQ(by_id.size(), requests.size());
  EXPECT_GT(runner->stats().block_copies, 0);
  EXPECT_EQ(runner->stats().argmax_steps, 0) << "no step was greedy only";
  // Top-k sampling drew from each row's candidates (Backend::TopKRows), not the whole row,
  // and still gives the tokens the whole row gives (the solo runs below).
  EXPECT_GT(runner->stats().backend_sampled_rows, 0);
  bool samples_differ = false;
  for (const WorkerRequest& r : requests) {
    auto sampler = Sampler::Create(r.generation, static_cast<int32_t>(spec_.vocab), 0);
    ASSERT_TRUE(sampler.ok());
    const RequestOutput& out = by_id.at(r.spec.request_id);
    ASSERT_EQ(out.completions.size(), static_cast<size_t>(r.spec.n));
    for (int k = 0; k < r.spec.n; ++k) {
      const testing::SoloResult solo = testing::SoloGenerate(
          *tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens, {}, &*sampler, k);
      EXPECT_EQ(out.completions[k].generated_token_ids, solo.tokens)
          << r.spec.request_id << " sample " << k;
    }
    if (r.spec.n == 2) {
      samples_differ |=
          out.completions[0].generated_token_ids != out.completions[1].generated_token_ids;
    }
  }
  EXPECT_TRUE(samples_differ) << "parallel samples should draw different tokens";
}

// One batch of rows that come back five ways: greedy rows as their argmax, top-k sampled
// rows as candidates, top-p sampled rows as their nucleus' candidates and denominator, plain
// sampling as the drawn token, and rows whose processors need the whole row (typical-p);
// penalties and biases edit rows of the first four kinds where the logits are. Every
// request's tokens equal its solo run's.
TEST_P(BatchRunnerTest, RowsOfEveryKindInOneBatchMatchSolo) {
  std::mt19937 rng(17);
  auto runner = MakeRunner(/*num_blocks=*/48, /*token_budget=*/64, /*max_seqs=*/8);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 10; ++i) {
    WorkerRequest r = Greedy(absl::StrCat("m", i), RandomTokens(rng, 4 + i), 6);
    if (i % 5 != 0) {
      r.generation.do_sample = true;
      r.generation.temperature = 1.3;
      r.generation.top_k = 8;
      r.generation.seed = 500 + i;
    }
    if (i % 5 == 2) r.generation.presence_penalty = 0.8;  // edits the row
    if (i == 5) r.generation.repetition_penalty = 1.5;    // greedy over the edited row
    if (i == 7) r.generation.typical_p = 0.9;             // the whole row's entropy
    if (i == 8) r.generation.logit_bias[3] = 2.0f;        // a draw from the edited row
    if (i % 5 >= 3) r.generation.top_k = 0;               // a draw over the whole row
    if (i % 5 == 4) r.generation.top_p = 0.8;             // the nucleus and the denominator
    if (i == 9) {  // min-p alone
      r.generation.top_p = 1.0;
      r.generation.min_p = 0.2;
    }
    requests.push_back(r);
  }
  const auto by_id = RunAll(*runner, requests);
  ASSERT_EQ(by_id.size(), requests.size());
  EXPECT_GT(runner->stats().backend_sampled_rows, 0);
  EXPECT_GT(runner->stats().backend_edited_rows, 0);
  for (const WorkerRequest& r : requests) {
    auto sampler = Sampler::Create(r.generation, static_cast<int32_t>(spec_.vocab), 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    const testing::SoloResult solo = testing::SoloGenerate(
        *tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens, {}, &*sampler, 0);
    EXPECT_EQ(by_id.at(r.spec.request_id).completions[0].generated_token_ids, solo.tokens)
        << r.spec.request_id;
  }
}

// Greedy, top-k, top-p, min-p and plain-sampled requests that report raw logprobs keep their
// rows where the logits are: the token, its logprob and the alternatives come from the
// backend's argmax, draw, top-k or nucleus candidates (and a drawn token's logit) and its
// softmax denominator,
// and equal Sample's over the whole row (exactly on cpu-reference, whose rows do not depend
// on the batch around them). Every other request has penalties and a bias, which the backend
// applies to the row after taking the raw row's logprobs (a top-k row then reports more
// alternatives than its k).
TEST_P(BatchRunnerTest, LogprobsComeFromTheRowReductions) {
  std::mt19937 rng(29);
  auto runner = MakeRunner(/*num_blocks=*/48, /*token_budget=*/64, /*max_seqs=*/8);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  const std::vector<int64_t> alternatives = {0, 1, 3, 5, -1, 0, 8, 9, 0, 4, 2, 1};
  for (size_t i = 0; i < alternatives.size(); ++i) {
    WorkerRequest r = Greedy(absl::StrCat("g", i), RandomTokens(rng, 3 + 2 * static_cast<int>(i)), 5);
    if (alternatives[i] >= 0) r.generation.logprobs = alternatives[i];
    if (i >= 5) {  // top-k sampling, up to k alternatives
      r.generation.do_sample = true;
      r.generation.top_k = 6;
      r.generation.temperature = 0.8;
      r.generation.seed = 70 + i;
    }
    if (i >= 8) r.generation.top_k = 0;  // plain sampling: the drawn token's logit too
    if (i == 10) r.generation.top_p = 0.7;  // the nucleus' candidates
    if (i == 11) r.generation.min_p = 0.2;
    if (i % 2 == 1) {
      r.generation.repetition_penalty = 1.4;
      r.generation.presence_penalty = 0.5;
      r.generation.logit_bias[2] = 1.5f;
    }
    // Penalties of the generated tokens only: the first row has no edits.
    if (i == 10 || i == 6) r.generation.frequency_penalty = 0.6;
    requests.push_back(r);
  }
  const auto by_id = RunAll(*runner, requests);
  ASSERT_EQ(by_id.size(), requests.size());
  EXPECT_GT(runner->stats().backend_logprob_rows, 0);
  EXPECT_GT(runner->stats().backend_edited_rows, 0);
  EXPECT_GT(runner->stats().backend_sampled_rows, 0);
  const bool exact = GetParam().backend == "cpu-reference";
  for (size_t i = 0; i < requests.size(); ++i) {
    const WorkerRequest& r = requests[i];
    SCOPED_TRACE(r.spec.request_id);
    const RequestOutput::Completion& c = by_id.at(r.spec.request_id).completions.at(0);
    auto sampler = Sampler::Create(r.generation, static_cast<int32_t>(spec_.vocab), 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    const testing::SoloResult solo = testing::SoloGenerate(
        *tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens, {}, &*sampler, 0);
    ASSERT_EQ(c.generated_token_ids, solo.tokens);
    if (alternatives[i] < 0) {
      EXPECT_TRUE(c.token_logprobs.empty());
      continue;
    }
    // Every generated token's row, from one Forward over the prompt and the tokens.
    std::vector<int32_t> tokens = r.spec.prompt_token_ids;
    tokens.insert(tokens.end(), c.generated_token_ids.begin(), c.generated_token_ids.end() - 1);
    auto cache = tiny_.model->NewKvCache(static_cast<int64_t>(tokens.size()));
    ASSERT_TRUE(cache.ok());
    std::vector<float> logits;
    ASSERT_TRUE(tiny_.model->Forward(tokens, 0, *cache, /*all_logits=*/true, &logits).ok());
    const size_t vocab = static_cast<size_t>(spec_.vocab);
    ASSERT_EQ(c.token_logprobs.size(), c.generated_token_ids.size());
    ASSERT_EQ(c.top_logprobs.size(), c.generated_token_ids.size());
    for (size_t t = 0; t < c.generated_token_ids.size(); ++t) {
      const size_t at = r.spec.prompt_token_ids.size() - 1 + t;
      const std::span<const float> row(logits.data() + at * vocab, vocab);
      const float want = TokenLogprobOf(row, c.generated_token_ids[t]);
      const std::vector<TokenLogprob> top = TopLogprobs(row, alternatives[i]);
      ASSERT_EQ(c.top_logprobs[t].size(), top.size()) << t;
      if (exact) {
        EXPECT_EQ(c.token_logprobs[t], want) << t;
      } else {
        EXPECT_NEAR(c.token_logprobs[t], want, 1e-4) << t;
      }
      for (size_t j = 0; j < top.size(); ++j) {
        EXPECT_EQ(c.top_logprobs[t][j].first, top[j].token) << t << " " << j;
        if (exact) {
          EXPECT_EQ(c.top_logprobs[t][j].second, top[j].logprob) << t << " " << j;
        } else {
          EXPECT_NEAR(c.top_logprobs[t][j].second, top[j].logprob, 1e-4) << t << " " << j;
        }
      }
    }
  }
}

// Plain-sampled, top-p and min-p requests alone: their logprob rows are the backend's (no
// row comes back: the tiny vocabulary lies within the nucleus candidates), a frequency
// penalty on the top-p and min-p ones included.
TEST_P(BatchRunnerTest, SampledLogprobRowsStayOnTheBackend) {
  std::mt19937 rng(31);
  auto runner = MakeRunner(/*num_blocks=*/16, /*token_budget=*/32, /*max_seqs=*/4);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 4; ++i) {
    WorkerRequest r = Greedy(absl::StrCat("p", i), RandomTokens(rng, 5), 4);
    r.generation.do_sample = true;
    r.generation.top_k = 0;
    r.generation.temperature = 0.9;
    r.generation.seed = 90 + i;
    r.generation.logprobs = 2 * (i % 2);
    if (i == 2) r.generation.top_p = 0.8;
    if (i == 3) r.generation.min_p = 0.1;
    if (i >= 2) r.generation.frequency_penalty = 0.7;  // edited after the raw logprobs
    requests.push_back(r);
  }
  const auto by_id = RunAll(*runner, requests);
  ASSERT_EQ(by_id.size(), requests.size());
  // Every generated token's row, the prompt's last row included.
  int64_t generated = 0;
  for (const WorkerRequest& r : requests) {
    const RequestOutput::Completion& c = by_id.at(r.spec.request_id).completions.at(0);
    EXPECT_EQ(c.token_logprobs.size(), c.generated_token_ids.size()) << r.spec.request_id;
    generated += static_cast<int64_t>(c.generated_token_ids.size());
  }
  EXPECT_GT(generated, 0);
  EXPECT_EQ(runner->stats().backend_logprob_rows, generated);
}

// Requests with every penalty and bias (no logprobs): each generated token's row is edited
// where the logits are (never sent back whole) and the tokens equal the solo runs', which
// apply the processors to the whole row on the host.
TEST_P(BatchRunnerTest, PenalizedRowsStayOnTheBackend) {
  std::mt19937 rng(43);
  auto runner = MakeRunner(/*num_blocks=*/32, /*token_budget=*/48, /*max_seqs=*/6);
  ASSERT_NE(runner, nullptr);
  std::vector<WorkerRequest> requests;
  for (int i = 0; i < 6; ++i) {
    WorkerRequest r = Greedy(absl::StrCat("pen", i), RandomTokens(rng, 3 + i), 8, {5});
    r.generation.repetition_penalty = 1.2 + 0.1 * i;
    r.generation.no_repeat_ngram_size = 2;
    r.generation.min_new_tokens = 3;
    r.generation.bad_words_ids = {{7}, {1, 2}};
    r.generation.logit_bias[9] = 1.5f;
    if (i >= 2) {
      r.generation.do_sample = true;
      r.generation.seed = 700 + i;
      r.generation.frequency_penalty = 0.4;
      r.generation.presence_penalty = 0.3;
      r.generation.temperature = 0.8;
      r.generation.top_k = i == 2 ? 5 : 0;                 // candidates
      if (i == 3) r.generation.top_p = 0.85;               // the nucleus
      if (i == 4) r.generation.min_p = 0.05;               // the nucleus by min-p
    }                                                       // 0, 1: argmax; 5: a draw
    requests.push_back(r);
  }
  const auto by_id = RunAll(*runner, requests);
  ASSERT_EQ(by_id.size(), requests.size());
  int64_t generated = 0;
  for (const WorkerRequest& r : requests) {
    auto sampler = Sampler::Create(r.generation, static_cast<int32_t>(spec_.vocab), 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    const testing::SoloResult solo = testing::SoloGenerate(
        *tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens,
        r.generation.eos_token_ids, &*sampler, 0);
    const auto& got = by_id.at(r.spec.request_id).completions[0].generated_token_ids;
    EXPECT_EQ(got, solo.tokens) << r.spec.request_id;
    EXPECT_GE(got.size(), 3u) << "min_new_tokens";
    generated += static_cast<int64_t>(got.size());
  }
  EXPECT_EQ(runner->stats().backend_edited_rows, generated);
  // Greedy rows (pen0, pen1) are argmax rows; the others were sampled on the backend.
  int64_t greedy = 0;
  for (const char* id : {"pen0", "pen1"}) {
    greedy += static_cast<int64_t>(by_id.at(id).completions[0].generated_token_ids.size());
  }
  EXPECT_EQ(runner->stats().backend_sampled_rows, generated - greedy);
}

TEST_P(BatchRunnerTest, CancelEndsOneRequestAndLeavesTheOtherIntact) {
  std::mt19937 rng(5);
  auto runner = MakeRunner(/*num_blocks=*/32, /*token_budget=*/16, /*max_seqs=*/4);
  ASSERT_NE(runner, nullptr);
  const WorkerRequest keep = Greedy("keep", RandomTokens(rng, 10), 10);
  const WorkerRequest drop = Greedy("drop", RandomTokens(rng, 10), 10);
  const absl::Time now = absl::UnixEpoch();
  ASSERT_TRUE(runner->AddRequest(keep, now).ok());
  ASSERT_TRUE(runner->AddRequest(drop, now).ok());
  std::vector<RequestOutput> outputs;
  for (int i = 0; i < 4; ++i) {
    auto done = runner->Step(now);
    ASSERT_TRUE(done.ok());
    ASSERT_TRUE(done->empty());
  }
  ASSERT_TRUE(runner->Cancel("drop").ok());
  EXPECT_EQ(runner->Cancel("nobody").code(), absl::StatusCode::kNotFound);
  auto rest = runner->RunUntilIdle(now);
  ASSERT_TRUE(rest.ok()) << rest.status();
  const auto by_id = ById(std::move(*rest));
  ASSERT_EQ(by_id.size(), 2u);
  const auto& dropped = by_id.at("drop").completions[0];
  EXPECT_EQ(dropped.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(dropped.generated_token_ids.size(), 10u);
  const testing::SoloResult solo =
      testing::SoloGenerate(*tiny_.model, keep.spec.prompt_token_ids, 10, {});
  EXPECT_EQ(by_id.at("keep").completions[0].generated_token_ids, solo.tokens);
  // The cancelled request's id may be used again.
  EXPECT_TRUE(runner->AddRequest(drop, now).ok());
}

// Preemption by swapping to host memory: sequences resume with their KV copied back
// instead of recomputed, and every output still equals the request alone. With too little
// swap space for a victim, the scheduler falls back to recompute.
TEST_P(BatchRunnerTest, SwapPreemptionKeepsEveryOutput) {
  std::mt19937 rng(7);
  std::vector<WorkerRequest> requests;
  std::uniform_int_distribution<int> prompt_len(4, 30), max_new(4, 14);
  for (int i = 0; i < 24; ++i) {
    requests.push_back(Greedy(absl::StrCat("r", i), RandomTokens(rng, prompt_len(rng)),
                              max_new(rng)));
  }
  for (const auto& [host_blocks, in_flight] : {std::pair{64, 1}, {3, 1}, {64, 2}}) {
    SCOPED_TRACE(absl::StrCat(host_blocks, " host blocks, ", in_flight, " batches in flight"));
    auto runner = MakeRunner(/*num_blocks=*/20, /*token_budget=*/16, /*max_seqs=*/8, host_blocks,
                             DType::kF32, in_flight);
    ASSERT_NE(runner, nullptr);
    EXPECT_THAT(runner->StartupReport(), HasSubstr("swap space"));
    for (const WorkerRequest& r : requests) ASSERT_TRUE(runner->AddRequest(r, absl::UnixEpoch()).ok());
    auto outputs = runner->RunUntilIdle(absl::UnixEpoch());
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    const auto by_id = ById(std::move(*outputs));
    const SchedulerStats stats = runner->scheduler().stats();
    EXPECT_GT(stats.swaps_out, 0);
    EXPECT_EQ(stats.swaps_in, stats.swaps_out);
    EXPECT_GT(runner->stats().blocks_swapped, 0);
    EXPECT_EQ(runner->stats().max_batches_in_flight, in_flight);
    if (host_blocks == 3) {
      EXPECT_GT(stats.preemptions, stats.swaps_out) << "some recomputed";
    }
    for (const WorkerRequest& r : requests) {
      const testing::SoloResult solo = testing::SoloGenerate(
          *tiny_.model, r.spec.prompt_token_ids, r.spec.max_new_tokens, {});
      EXPECT_EQ(by_id.at(r.spec.request_id).completions.at(0).generated_token_ids, solo.tokens)
          << r.spec.request_id;
    }
  }
}

// A half KV cache: the same byte budget holds twice the blocks, and with preemption by
// recompute and by swapping, every request still gives exactly what it gives alone on a half
// cache (the rounding is per element, so it does not depend on the batch).
TEST_P(BatchRunnerTest, HalfCacheHoldsTwiceTheTokensAndKeepsOutputsBatchIndependent) {
  BatchRunnerOptions options;
  options.scheduler.block_size = 4;
  options.scheduler.max_model_len = static_cast<int>(spec_.context);
  options.kv_cache_bytes = 1 << 20;
  auto f32 = BatchRunner::Create(tiny_.model.get(), options);
  options.kv_cache_dtype = DType::kF16;
  auto f16 = BatchRunner::Create(tiny_.model.get(), options);
  ASSERT_TRUE(f32.ok() && f16.ok()) << f32.status() << f16.status();
  EXPECT_EQ((*f16)->capacity().bytes_per_block * 2, (*f32)->capacity().bytes_per_block);
  EXPECT_EQ((*f16)->capacity().num_blocks, 2 * (*f32)->capacity().num_blocks);
  EXPECT_EQ((*f16)->kv_cache().layout().dtype, DType::kF16);
  options.kv_cache_dtype = DType::kBF16;
  auto bad = BatchRunner::Create(tiny_.model.get(), options);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("kv_cache_dtype"));

  std::mt19937 rng(9);
  std::vector<WorkerRequest> requests;
  std::uniform_int_distribution<int> prompt_len(4, 30), max_new(4, 14);
  for (int i = 0; i < 16; ++i) {
    requests.push_back(Greedy(absl::StrCat("r", i), RandomTokens(rng, prompt_len(rng)),
                              max_new(rng)));
  }
  for (const int host_blocks : {0, 64}) {
    SCOPED_TRACE(absl::StrCat(host_blocks, " host blocks"));
    auto runner = MakeRunner(/*num_blocks=*/20, /*token_budget=*/16, /*max_seqs=*/8, host_blocks,
                             DType::kF16);
    ASSERT_NE(runner, nullptr);
    for (const WorkerRequest& r : requests) ASSERT_TRUE(runner->AddRequest(r, absl::UnixEpoch()).ok());
    auto outputs = runner->RunUntilIdle(absl::UnixEpoch());
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    const auto by_id = ById(std::move(*outputs));
    EXPECT_GT(runner->scheduler().stats().preemptions, 0);
    for (const WorkerRequest& r : requests) {
      auto alone = MakeRunner(/*num_blocks=*/20, /*token_budget=*/16, /*max_seqs=*/8, 0,
                              DType::kF16);
      ASSERT_TRUE(alone->AddRequest(r, absl::UnixEpoch()).ok());
      auto solo = alone->RunUntilIdle(absl::UnixEpoch());
      ASSERT_TRUE(solo.ok() && solo->size() == 1u) << solo.status();
      EXPECT_EQ(by_id.at(r.spec.request_id).completions.at(0).generated_token_ids,
                solo->at(0).completions.at(0).generated_token_ids)
          << r.spec.request_id;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, BatchRunnerTest,
                         ::testing::Values(Param{"cpu-reference", DType::kF32},
                                           Param{"cpu", DType::kF32},
                                           Param{"cpu", DType::kQ8_0}),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           std::string name = std::string(DTypeName(info.param.dtype)) + "_" +
                                              info.param.backend;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace tessera
