// Beam, diverse beam and contrastive search through the BatchRunner on a tiny random model:
// beam search against an exhaustive search it must agree with, and a batch mixing every
// strategy (with preemption and chunked prefill) giving each request what it gets alone.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model/tiny_llama.h"
#include "worker/batch_runner.h"

namespace tessera {
namespace {

class BatchRunnerStrategyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab = 64;
    spec_.context = 128;
    path_ = testing::TempGgufPath("strategy");
    auto tiny = testing::LoadTinyModel(spec_, path_, "cpu-reference", 2);
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    tiny_ = std::move(*tiny);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  std::unique_ptr<BatchRunner> MakeRunner(int num_blocks, int token_budget, int max_seqs) {
    BatchRunnerOptions options;
    options.scheduler.block_size = 4;
    options.scheduler.num_blocks = num_blocks;
    options.scheduler.max_num_batched_tokens = token_budget;
    options.scheduler.max_num_seqs = max_seqs;
    options.scheduler.max_model_len = static_cast<int>(spec_.context);
    options.default_seed = 7;
    auto runner = BatchRunner::Create(tiny_.model.get(), options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(*runner) : nullptr;
  }

  static WorkerRequest Request(std::string id, std::vector<int32_t> prompt, int max_new,
                               GenerationConfig g) {
    WorkerRequest r;
    r.spec.request_id = std::move(id);
    r.spec.prompt_token_ids = std::move(prompt);
    r.spec.max_new_tokens = max_new;
    if (!g.IsBeamSearch() && !g.IsContrastiveSearch()) {
      r.spec.n = static_cast<int>(g.num_return_sequences);
    }
    r.generation = std::move(g);
    return r;
  }

  // log_softmax of the model's last-position logits after `ids`, by contiguous Forward.
  std::vector<double> LogProbs(const std::vector<int32_t>& ids) {
    auto cache = tiny_.model->NewKvCache();
    EXPECT_TRUE(cache.ok());
    std::vector<float> logits;
    EXPECT_TRUE(tiny_.model->Forward(ids, 0, *cache, false, &logits).ok());
    double max = -std::numeric_limits<double>::infinity(), sum = 0.0;
    for (float x : logits) max = std::max(max, static_cast<double>(x));
    for (float x : logits) sum += std::exp(x - max);
    std::vector<double> out;
    for (float x : logits) out.push_back(x - max - std::log(sum));
    return out;
  }

  testing::TinySpec spec_;
  std::string path_;
  testing::LoadedTinyModel tiny_;
};

// With as many beams as the vocabulary, two steps and no length penalty, beam search
// considers every two-token continuation: its best must be the exhaustive argmax.
TEST_F(BatchRunnerStrategyTest, WideBeamSearchFindsTheExhaustiveBest) {
  const std::vector<int32_t> prompt = {3, 17, 42, 5, 9};
  const std::vector<double> first = LogProbs(prompt);
  double best = -std::numeric_limits<double>::infinity();
  std::vector<int32_t> best_ids;
  std::vector<double> all_scores;
  for (int32_t a = 0; a < spec_.vocab; ++a) {
    std::vector<int32_t> ids = prompt;
    ids.push_back(a);
    const std::vector<double> second = LogProbs(ids);
    for (int32_t b = 0; b < spec_.vocab; ++b) {
      const double score = first[static_cast<size_t>(a)] + second[static_cast<size_t>(b)];
      all_scores.push_back(score);
      if (score > best) {
        best = score;
        best_ids = {a, b};
      }
    }
  }
  std::sort(all_scores.rbegin(), all_scores.rend());
  GenerationConfig g;
  g.num_beams = spec_.vocab;
  g.num_return_sequences = 3;
  g.length_penalty = 0.0;
  g.early_stopping = EarlyStopping::kNever;
  auto runner = MakeRunner(/*num_blocks=*/64 * 3, /*token_budget=*/256, /*max_seqs=*/64);
  ASSERT_NE(runner, nullptr);
  ASSERT_TRUE(runner->AddRequest(Request("wide", prompt, 2, g), absl::UnixEpoch()).ok());
  auto out = runner->RunUntilIdle(absl::UnixEpoch());
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  const auto& completions = (*out)[0].completions;
  ASSERT_EQ(completions.size(), 3u);
  EXPECT_EQ(completions[0].generated_token_ids, best_ids);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(completions[i].score.has_value());
    EXPECT_NEAR(*completions[i].score, all_scores[i], 1e-4) << i;
    EXPECT_EQ(completions[i].finish_reason, FinishReason::kLength);
  }
  EXPECT_EQ(runner->scheduler().block_manager().Usage().used, 0) << "blocks leaked";
}

std::vector<std::pair<std::string, GenerationConfig>> Strategies() {
  std::vector<std::pair<std::string, GenerationConfig>> out;
  GenerationConfig beam;
  beam.num_beams = 4;
  beam.num_return_sequences = 2;
  beam.eos_token_ids = {1};
  out.emplace_back("beam", beam);
  GenerationConfig beam_sample = beam;
  beam_sample.do_sample = true;
  beam_sample.seed = 11;
  out.emplace_back("beam_sample", beam_sample);
  GenerationConfig early = beam;
  early.early_stopping = EarlyStopping::kTrue;
  early.length_penalty = 0.5;
  out.emplace_back("beam_early", early);
  GenerationConfig group;
  group.num_beams = 4;
  group.num_beam_groups = 2;
  group.diversity_penalty = 0.8;
  group.num_return_sequences = 3;
  group.eos_token_ids = {1};
  out.emplace_back("group_beam", group);
  GenerationConfig contrastive;
  contrastive.penalty_alpha = 0.6;
  contrastive.top_k = 4;
  contrastive.repetition_penalty = 1.2;
  out.emplace_back("contrastive", contrastive);
  GenerationConfig greedy;
  out.emplace_back("greedy", greedy);
  GenerationConfig sample;
  sample.do_sample = true;
  sample.seed = 5;
  sample.num_return_sequences = 2;
  out.emplace_back("sample", sample);
  return out;
}

// Every strategy, several prompts each, arriving over time into a small cache and token
// budget (chunked prefill, preemption): each request's sequences and scores equal those
// of the request run alone.
TEST_F(BatchRunnerStrategyTest, MixedStrategiesMatchEachRequestAlone) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> token(2, static_cast<int32_t>(spec_.vocab - 1));
  std::uniform_int_distribution<int> len(3, 30), max_new(4, 12), arrival(0, 6);
  std::vector<WorkerRequest> requests;
  for (int copy = 0; copy < 3; ++copy) {
    for (const auto& [name, g] : Strategies()) {
      std::vector<int32_t> prompt(static_cast<size_t>(len(rng)));
      for (int32_t& t : prompt) t = token(rng);
      requests.push_back(Request(absl::StrCat(name, copy), prompt, max_new(rng), g));
    }
  }
  std::map<std::string, RequestOutput> alone;
  for (const WorkerRequest& r : requests) {
    auto runner = MakeRunner(/*num_blocks=*/64, /*token_budget=*/64, /*max_seqs=*/8);
    ASSERT_NE(runner, nullptr);
    ASSERT_TRUE(runner->AddRequest(r, absl::UnixEpoch()).ok()) << r.spec.request_id;
    auto out = runner->RunUntilIdle(absl::UnixEpoch());
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->size(), 1u);
    alone[r.spec.request_id] = (*out)[0];
  }
  // 48 blocks of 4 tokens for up to 24 sequences of up to 42 tokens: preemption is certain.
  auto runner = MakeRunner(/*num_blocks=*/48, /*token_budget=*/24, /*max_seqs=*/24);
  ASSERT_NE(runner, nullptr);
  std::multimap<int, size_t> arrivals;
  for (size_t i = 0; i < requests.size(); ++i) arrivals.emplace(arrival(rng), i);
  std::map<std::string, RequestOutput> batched;
  for (int step = 0; step < 20000 && (runner->HasUnfinished() || !arrivals.empty()); ++step) {
    while (!arrivals.empty() && arrivals.begin()->first <= step) {
      const WorkerRequest& r = requests[arrivals.begin()->second];
      ASSERT_TRUE(runner->AddRequest(r, absl::UnixEpoch()).ok()) << r.spec.request_id;
      arrivals.erase(arrivals.begin());
    }
    auto done = runner->Step(absl::UnixEpoch());
    ASSERT_TRUE(done.ok()) << done.status();
    for (RequestOutput& out : *done) batched[out.request_id] = std::move(out);
  }
  EXPECT_GT(runner->scheduler().stats().preemptions, 0) << "meant to preempt";
  ASSERT_EQ(batched.size(), requests.size());
  for (const auto& [id, expected] : alone) {
    const RequestOutput& got = batched.at(id);
    ASSERT_EQ(got.completions.size(), expected.completions.size()) << id;
    for (size_t i = 0; i < got.completions.size(); ++i) {
      EXPECT_EQ(got.completions[i].generated_token_ids, expected.completions[i].generated_token_ids)
          << id << " completion " << i;
      EXPECT_EQ(got.completions[i].finish_reason, expected.completions[i].finish_reason) << id;
      EXPECT_EQ(got.completions[i].score, expected.completions[i].score) << id;
    }
  }
  EXPECT_EQ(runner->scheduler().block_manager().Usage().used, 0) << "blocks leaked";
  EXPECT_EQ(alone.at("beam0").completions.size(), 2u);
  EXPECT_EQ(alone.at("group_beam0").completions.size(), 3u);
  EXPECT_EQ(alone.at("contrastive0").completions.size(), 1u);
}

// best_of: the kept samples are the best by cumulative logprob among the same draws that a
// plain n = best_of request makes (draws are keyed by seed, sample index and position).
// With one new token the samples are forked and finished in the same step, and their
// logprobs must still decide.
TEST_F(BatchRunnerStrategyTest, BestOfKeepsTheMostLikelySamples) {
  for (const int max_new : {6, 1}) {
    SCOPED_TRACE(absl::StrCat("max_new_tokens ", max_new));
    GenerationConfig g;
    g.do_sample = true;
    g.seed = 21;
    g.num_return_sequences = 5;
    // The tiny model is sure of its first token here; a high temperature makes 5 draws
    // differ.
    if (max_new == 1) g.temperature = 8.0f;
    auto runner = MakeRunner(64, 64, 8);
    ASSERT_NE(runner, nullptr);
    g.logprobs = 0;
    ASSERT_TRUE(runner->AddRequest(Request("all", {4, 5, 6}, max_new, g), absl::UnixEpoch()).ok());
    g.num_return_sequences = 2;
    g.best_of = 5;
    g.logprobs.reset();
    WorkerRequest best = Request("best", {4, 5, 6}, max_new, g);
    ASSERT_TRUE(runner->AddRequest(best, absl::UnixEpoch()).ok());
    auto out = runner->RunUntilIdle(absl::UnixEpoch());
    ASSERT_TRUE(out.ok()) << out.status();
    std::map<std::string, RequestOutput> by_id;
    for (RequestOutput& o : *out) by_id[o.request_id] = std::move(o);
    std::vector<std::pair<double, std::vector<int32_t>>> all;
    for (const auto& c : by_id.at("all").completions) {
      ASSERT_EQ(c.token_logprobs.size(), c.generated_token_ids.size());
      double sum = 0.0;
      for (float lp : c.token_logprobs) sum += lp;
      all.emplace_back(sum, c.generated_token_ids);
    }
    ASSERT_EQ(all.size(), 5u);
    std::stable_sort(all.begin(), all.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    ASSERT_LT(all[1].first, all[0].first + 1e-9);
    ASSERT_GT(all[1].first, all[4].first) << "the draws should differ";
    const auto& kept = by_id.at("best").completions;
    ASSERT_EQ(kept.size(), 2u);
    EXPECT_EQ(kept[0].generated_token_ids, all[0].second);
    EXPECT_EQ(kept[1].generated_token_ids, all[1].second);
  }
}

// A strategy-driven request that ends early (deadline, cancel) returns the strategy's
// hypotheses, not its raw sequences: its running beams join the finished ones with their
// length-penalised scores, as if a stopping criterion fired after the last step. Without
// end ids that is what the same request with max_new_tokens = the steps run returns,
// finish reason aside; contrastive search returns the tokens it chose (one fewer than the
// steps: a step's candidates are chosen among by the next one).
TEST_F(BatchRunnerStrategyTest, EndingEarlyReturnsTheStrategysHypotheses) {
  struct Case {
    std::string name;
    GenerationConfig g;
    int tokens_chosen = 3;  // after kSteps steps
  };
  std::vector<Case> cases;
  GenerationConfig beam;
  beam.num_beams = 3;
  beam.num_return_sequences = 2;
  beam.length_penalty = 1.5;
  cases.push_back({"beam", beam});
  GenerationConfig groups;
  groups.num_beams = 4;
  groups.num_beam_groups = 2;
  groups.diversity_penalty = 0.7;
  groups.num_return_sequences = 3;
  cases.push_back({"group_beam", groups});
  GenerationConfig contrastive;
  contrastive.penalty_alpha = 0.6;
  contrastive.top_k = 3;
  cases.push_back({"contrastive", contrastive, 2});
  constexpr int kSteps = 3;
  const absl::Time t0 = absl::UnixEpoch();
  for (const Case& c : cases) {
    for (const bool cancel : {false, true}) {
      SCOPED_TRACE(c.name + (cancel ? " cancelled" : " deadline"));
      auto runner = MakeRunner(64, 64, 8);
      ASSERT_NE(runner, nullptr);
      WorkerRequest early = Request("early", {7, 8, 9}, 10, c.g);
      early.spec.deadline = t0 + absl::Seconds(10);
      ASSERT_TRUE(runner->AddRequest(early, t0).ok());
      for (int i = 0; i < kSteps; ++i) {
        auto step = runner->Step(t0);
        ASSERT_TRUE(step.ok()) << step.status();
        ASSERT_TRUE(step->empty());
      }
      std::vector<RequestOutput> ended;
      if (cancel) {
        ASSERT_TRUE(runner->Cancel("early").ok());
        auto out = runner->RunUntilIdle(t0);
        ASSERT_TRUE(out.ok()) << out.status();
        ended = std::move(*out);
      } else {
        auto out = runner->RunUntilIdle(t0 + absl::Seconds(11));
        ASSERT_TRUE(out.ok()) << out.status();
        ended = std::move(*out);
      }
      ASSERT_EQ(ended.size(), 1u);

      auto reference_runner = MakeRunner(64, 64, 8);
      ASSERT_NE(reference_runner, nullptr);
      ASSERT_TRUE(
          reference_runner->AddRequest(Request("ref", {7, 8, 9}, c.tokens_chosen, c.g), t0).ok());
      auto ref = reference_runner->RunUntilIdle(t0);
      ASSERT_TRUE(ref.ok()) << ref.status();
      ASSERT_EQ(ref->size(), 1u);

      const auto& got = ended[0].completions;
      const auto& want = ref->front().completions;
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].seq_id, -1);
        EXPECT_EQ(got[i].generated_token_ids, want[i].generated_token_ids) << i;
        EXPECT_EQ(got[i].token_logprobs, want[i].token_logprobs) << i;
        ASSERT_TRUE(got[i].score.has_value());
        EXPECT_NEAR(*got[i].score, *want[i].score, 1e-5) << i;
        EXPECT_EQ(got[i].finish_reason,
                  cancel ? FinishReason::kCancelled : FinishReason::kDeadline) << i;
      }
    }
  }
}

// Diverse beam search where one group finishes early while the other goes on: with one
// beam per group and early_stopping, group 0 is done when EOS is its best token. EOS is
// chosen as group 0's best token after its first one, on a prompt where group 1 (kept off
// group 0's first token by the diversity penalty) prefers something else. The finished
// group's slots then hold no sequence, and the request ends with both groups' hypotheses.
TEST_F(BatchRunnerStrategyTest, GroupThatFinishesEarlyLeavesTheOthersRunning) {
  auto argmax = [](const std::vector<double>& v, int32_t skip = -1) {
    int32_t best = -1;
    for (int32_t t = 0; t < static_cast<int32_t>(v.size()); ++t) {
      if (t != skip && (best < 0 || v[static_cast<size_t>(t)] > v[static_cast<size_t>(best)])) {
        best = t;
      }
    }
    return best;
  };
  std::vector<int32_t> prompt;
  int32_t eos = -1;
  for (int32_t seed = 1; seed < 40 && eos < 0; ++seed) {
    prompt = {seed, seed + 1, seed + 2};
    const std::vector<double> first = LogProbs(prompt);
    const int32_t a = argmax(first), b = argmax(first, a);
    std::vector<int32_t> with_a = prompt, with_b = prompt;
    with_a.push_back(a);
    with_b.push_back(b);
    const int32_t candidate = argmax(LogProbs(with_a));
    if (candidate != a && candidate != b && argmax(LogProbs(with_b)) != candidate) eos = candidate;
  }
  ASSERT_GE(eos, 0) << "no prompt separates the groups";
  GenerationConfig g;
  g.num_beams = 2;
  g.num_beam_groups = 2;
  g.diversity_penalty = 50.0;
  g.early_stopping = EarlyStopping::kTrue;
  g.num_return_sequences = 2;
  g.eos_token_ids = {eos};
  auto runner = MakeRunner(64, 64, 8);
  ASSERT_NE(runner, nullptr);
  ASSERT_TRUE(runner->AddRequest(Request("g", prompt, 8, g), absl::UnixEpoch()).ok());
  auto out = runner->RunUntilIdle(absl::UnixEpoch());
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  const auto& completions = (*out)[0].completions;
  ASSERT_EQ(completions.size(), 2u);
  bool stopped = false, longer = false;
  for (const auto& c : completions) {
    EXPECT_NE(c.finish_reason, FinishReason::kAborted);
    stopped |= c.generated_token_ids.size() == 2u && c.generated_token_ids[1] == eos;
    longer |= c.generated_token_ids.size() > 2u;
  }
  EXPECT_TRUE(stopped) << "group 0 ends with EOS at its second token";
  EXPECT_TRUE(longer) << "group 1 goes on after group 0 is done";
  EXPECT_EQ(runner->scheduler().block_manager().Usage().used, 0);
}

// Contrastive search needs the hidden state of every prompt position, so a prompt that is
// already in the prefix cache is computed again rather than matched (found in review: the
// request used to abort).
TEST_F(BatchRunnerStrategyTest, ContrastiveSearchAfterItsPromptWasCached) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 20; ++i) prompt.push_back(3 + i);
  GenerationConfig g;
  g.penalty_alpha = 0.6;
  g.top_k = 4;
  auto runner = MakeRunner(64, 64, 8);
  ASSERT_NE(runner, nullptr);
  std::vector<std::vector<int32_t>> outputs;
  for (const char* id : {"first", "second"}) {
    ASSERT_TRUE(runner->AddRequest(Request(id, prompt, 5, g), absl::UnixEpoch()).ok());
    auto out = runner->RunUntilIdle(absl::UnixEpoch());
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->size(), 1u);
    ASSERT_EQ((*out)[0].completions.size(), 1u);
    EXPECT_EQ((*out)[0].completions[0].finish_reason, FinishReason::kLength) << id;
    outputs.push_back((*out)[0].completions[0].generated_token_ids);
  }
  EXPECT_EQ(outputs[0].size(), 5u);
  EXPECT_EQ(outputs[0], outputs[1]);
}

TEST_F(BatchRunnerStrategyTest, CancelledBeamRequestFreesItsBlocks) {
  GenerationConfig g;
  g.num_beams = 3;
  auto runner = MakeRunner(/*num_blocks=*/64, /*token_budget=*/64, /*max_seqs=*/8);
  ASSERT_NE(runner, nullptr);
  ASSERT_TRUE(runner->AddRequest(Request("b", {4, 5, 6, 7}, 20, g), absl::UnixEpoch()).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(runner->Step(absl::UnixEpoch()).ok());
  ASSERT_TRUE(runner->Cancel("b").ok());
  auto done = runner->Step(absl::UnixEpoch());
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->size(), 1u);
  EXPECT_EQ((*done)[0].completions.front().finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(runner->scheduler().block_manager().Usage().used, 0);
  EXPECT_FALSE(runner->HasUnfinished());
}

TEST_F(BatchRunnerStrategyTest, RefusesNAboveOneForBeamSearch) {
  GenerationConfig g;
  g.num_beams = 2;
  WorkerRequest r = Request("b", {4, 5}, 4, g);
  r.spec.n = 2;
  auto runner = MakeRunner(64, 64, 8);
  ASSERT_NE(runner, nullptr);
  const absl::Status s = runner->AddRequest(r, absl::UnixEpoch());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("n must be 1"));
}

}  // namespace
}  // namespace tessera
