// The penalties and biases as per-token LogitEdits (LogitsProcessorChain::Edits, applied by
// a backend where the logits are): applying them and then the rest of the chain is the
// whole chain, bit for bit, and each selection a sampler offers over the edited row gives
// the token Sample gives over the raw row.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "common/row_argmax.h"
#include "common/row_sample.h"
#include "decoding/sampler.h"
#include "gtest/gtest.h"
#include "kernels/logit_edit.h"
#include "tests/common/row_candidates.h"

namespace tessera {
namespace {

constexpr int32_t kVocab = 97;
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// Rows with signs of both kinds (the repetition penalty depends on it), zeros of both signs
// and some -inf.
std::vector<float> MixedRow(std::mt19937& rng) {
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::uniform_int_distribution<int> kind(0, 19);
  std::vector<float> row(kVocab);
  for (float& v : row) {
    v = logit(rng);
    const int k = kind(rng);
    if (k == 0) v = 0.0f;
    if (k == 1) v = -0.0f;
    if (k == 2) v = kMinusInf;
  }
  return row;
}

// A history of few distinct ids (repeats for the penalties and n-grams to find).
std::vector<int32_t> RandomHistory(std::mt19937& rng, size_t n) {
  std::uniform_int_distribution<int32_t> id(0, 11);
  std::vector<int32_t> ids(n);
  for (int32_t& t : ids) t = id(rng) * 7 % kVocab;
  return ids;
}

// Every processor that changes a few tokens, at random strengths, with or without sampling.
GenerationConfig RandomPenalties(std::mt19937& rng, bool do_sample) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  GenerationConfig c;
  c.do_sample = do_sample;
  c.top_k = 0;
  c.seed = 5;
  c.eos_token_ids = {7, 14};
  c.stop_token_ids = {21};
  if (unit(rng) < 0.7) c.repetition_penalty = 0.5 + 1.5 * unit(rng);
  if (unit(rng) < 0.7) c.frequency_penalty = 2.0 * unit(rng) - 0.5;
  if (unit(rng) < 0.7) c.presence_penalty = 1.3 * unit(rng);
  if (unit(rng) < 0.5) c.no_repeat_ngram_size = 1 + static_cast<int64_t>(3 * unit(rng));
  if (unit(rng) < 0.5) c.min_new_tokens = 1 + static_cast<int64_t>(6 * unit(rng));
  if (unit(rng) < 0.6) {
    c.logit_bias[14] = 2.5f;
    c.logit_bias[28] = -1.25f;
    c.sequence_bias.push_back({{7, 14}, 0.75f});
    c.sequence_bias.push_back({{0, 0, 28}, 3.0f});
  }
  if (unit(rng) < 0.5) c.bad_words_ids = {{35}, {14, 42}, {7}};
  return c;
}

// Edits applied as a backend applies them, then the rest of the chain.
std::vector<float> EditedThenRest(const LogitsProcessorChain& chain, const TokenHistory& h,
                                  std::vector<float> row) {
  for (const LogitEdit& e : chain.Edits(h)) row[e.token] = ApplyLogitEdit(row[e.token], e);
  chain.ApplyPastEdits(h, row);
  return row;
}

void ExpectSameBits(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(std::memcmp(&got[i], &want[i], sizeof(float)) == 0 ||
                (std::isnan(got[i]) && std::isnan(want[i])))
        << "token " << i << ": " << got[i] << " vs " << want[i];
  }
}

TEST(LogitEditsTest, EditsThenTheRestAreTheWholeChain) {
  std::mt19937 rng(3);
  int with_edits = 0;
  for (int trial = 0; trial < 300; ++trial) {
    GenerationConfig c = RandomPenalties(rng, trial % 2 == 1);
    if (trial % 2 == 1) {
      c.temperature = 0.8;
      c.top_k = trial % 3 == 0 ? 10 : 0;
      c.top_p = trial % 5 == 0 ? 0.9 : 1.0;
      c.typical_p = trial % 7 == 0 ? 0.8 : 1.0;
    }
    auto chain = LogitsProcessorChain::Create(c, kVocab);
    ASSERT_TRUE(chain.ok()) << chain.status();
    const std::vector<int32_t> ids = RandomHistory(rng, 4 + trial % 20);
    const TokenHistory h{ids, static_cast<size_t>(trial % 4)};
    const std::vector<float> raw = MixedRow(rng);
    std::vector<float> whole = raw;
    chain->Apply(h, whole);
    ExpectSameBits(EditedThenRest(*chain, h, raw), whole);
    const std::vector<LogitEdit> edits = chain->Edits(h);
    for (size_t i = 1; i < edits.size(); ++i) {
      EXPECT_LT(edits[i - 1].token, edits[i].token) << "ascending, each token once";
    }
    for (const LogitEdit& e : edits) {
      EXPECT_EQ(e.row, 0);
      EXPECT_NE(e.steps, 0u);
    }
    with_edits += !edits.empty();
  }
  EXPECT_GT(with_edits, 200);
}

// Diverse beam search's Hamming penalty reads other groups' choices, not one token's logit:
// only the sequence bias before it becomes edits, and the rest still applies in order.
TEST(LogitEditsTest, EditsStopAtTheDiversityPenalty) {
  GenerationConfig c;
  c.num_beams = 4;
  c.num_beam_groups = 2;
  c.diversity_penalty = 0.5;
  c.repetition_penalty = 1.3;
  c.logit_bias[3] = 1.0f;
  auto chain = LogitsProcessorChain::Create(c, kVocab);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_TRUE(chain->has_edits());
  EXPECT_FALSE(chain->only_edits());
  const std::vector<int32_t> ids = {3, 5, 5, 9}, earlier = {5, 9, 9};
  const TokenHistory h{ids, 2, earlier};
  const std::vector<LogitEdit> edits = chain->Edits(h);
  ASSERT_EQ(edits.size(), 1u);
  EXPECT_EQ(edits[0].token, 3);
  EXPECT_EQ(edits[0].steps, static_cast<uint32_t>(kEditBias));
  std::mt19937 rng(1);
  const std::vector<float> raw = MixedRow(rng);
  std::vector<float> whole = raw;
  chain->Apply(h, whole);
  ExpectSameBits(EditedThenRest(*chain, h, raw), whole);
}

// Each selection over the edited row gives Sample's token over the raw row: greedy's argmax,
// top-k's candidates, the nucleus and the plain draw.
TEST(LogitEditsTest, SelectionsOverTheEditedRowAreSamplesOverTheRawRow) {
  std::mt19937 rng(17);
  int argmax = 0, top_k = 0, nucleus = 0, draw = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int kind = trial % 4;
    GenerationConfig c = RandomPenalties(rng, kind != 0);
    c.temperature = kind == 0 ? 1.0 : 0.9;
    if (kind == 1) c.top_k = 6;
    if (kind == 2) c.top_p = 0.8;
    auto sampler = Sampler::Create(c, kVocab, 0);
    ASSERT_TRUE(sampler.ok()) << sampler.status();
    const std::vector<int32_t> ids = RandomHistory(rng, 6 + trial % 9);
    const TokenHistory h{ids, 3};
    const std::vector<float> raw = MixedRow(rng);
    std::vector<float> whole = raw;
    const SampleResult want = sampler->Sample(h, whole, 2);
    std::vector<float> edited = raw;
    for (const LogitEdit& e : sampler->chain().Edits(h)) {
      edited[e.token] = ApplyLogitEdit(edited[e.token], e);
    }
    // A backend's whole edited row, sampled by the rest of the chain.
    std::vector<float> back_whole = edited;
    EXPECT_EQ(sampler->SampleEdited(h, back_whole, 2).token, want.token);
    if (kind == 0) {
      ASSERT_TRUE(sampler->greedy_after_edits());
      const RowArgMax best = ArgMaxOfRow(edited);
      EXPECT_EQ(best.value == kMinusInf ? -1 : best.index, want.token);
      ++argmax;
    } else if (kind == 1) {
      const auto selection = sampler->top_k_candidates();
      ASSERT_TRUE(selection.has_value());
      testing::RowCandidates top =
          testing::CandidatesOfRow(edited, selection->k, selection->temperature);
      if (top.ids.empty()) continue;
      EXPECT_EQ(sampler->SampleCandidates(h, top.ids, top.values, 2).token, want.token);
      ++top_k;
    } else if (kind == 2) {
      const auto selection = sampler->nucleus();
      ASSERT_TRUE(selection.has_value());
      float max = kMinusInf;
      for (float v : edited) max = std::max(max, v / selection->temperature);
      double denominator = 0;
      for (float v : edited) denominator += std::exp(double(v / selection->temperature) - max);
      testing::RowCandidates all = testing::CandidatesOfRow(edited, kVocab, selection->temperature);
      ASSERT_FALSE(all.ids.empty());
      const auto got = sampler->SampleNucleus(h, all.ids, all.values, denominator, 2);
      ASSERT_TRUE(got.has_value()) << "the whole vocabulary holds the nucleus";
      EXPECT_EQ(got->token, want.token);
      ++nucleus;
    } else {
      const auto temperature = sampler->plain_sampling_temperature();
      ASSERT_TRUE(temperature.has_value());
      std::vector<float> scaled = edited;
      for (float& v : scaled) v /= *temperature;
      EXPECT_EQ(DrawFromRow(scaled, sampler->DrawUniform(h, 2)), want.token);
      ++draw;
    }
  }
  EXPECT_GT(argmax, 90);
  EXPECT_GT(top_k, 90);
  EXPECT_GT(nucleus, 90);
  EXPECT_GT(draw, 90);
}

// Samplers that report the raw row's logprobs keep their selections with edits: the
// backend takes the raw row's logprobs before it edits (LogitsSelection), so a top-k row may
// then report more alternatives than its k. The sampler's own calls over edited values
// report no logprobs (the caller's), and the processed row's logprobs have no selection.
TEST(LogitEditsTest, RawLogprobsWithEditsKeepTheSelections) {
  GenerationConfig c;
  c.repetition_penalty = 1.2;
  c.logprobs = 8;
  auto greedy = Sampler::Create(c, kVocab, 0);
  ASSERT_TRUE(greedy.ok()) << greedy.status();
  EXPECT_FALSE(greedy->greedy_after_edits());
  EXPECT_EQ(greedy->greedy_raw_logprobs(), std::optional<int64_t>(8));
  c.do_sample = true;
  c.seed = 3;
  c.top_k = 5;
  auto top_k = Sampler::Create(c, kVocab, 0);
  ASSERT_TRUE(top_k.ok()) << top_k.status();
  ASSERT_TRUE(top_k->top_k_candidates().has_value()) << "8 alternatives of a top-5 row";
  c.top_k = 0;
  c.top_p = 0.9;
  auto nucleus = Sampler::Create(c, kVocab, 0);
  ASSERT_TRUE(nucleus.ok()) << nucleus.status();
  EXPECT_TRUE(nucleus->nucleus_with_raw_logprobs().has_value());
  c.top_p = 1.0;
  auto plain = Sampler::Create(c, kVocab, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(plain->plain_sampling_with_raw_logprobs().has_value());
  auto processed = Sampler::Create(c, kVocab, 0, LogprobsSource::kProcessed);
  ASSERT_TRUE(processed.ok()) << processed.status();
  EXPECT_FALSE(processed->plain_sampling_with_raw_logprobs().has_value());
  EXPECT_FALSE(processed->plain_sampling_temperature().has_value());

  // Over edited values: the token, and no logprobs.
  std::mt19937 rng(9);
  const std::vector<int32_t> ids = {3, 7, 3};
  const TokenHistory h{ids, 1};
  std::vector<float> row = MixedRow(rng);
  std::vector<float> whole = row;
  const SampleResult want = top_k->Sample(h, whole, 0);
  for (const LogitEdit& e : top_k->chain().Edits(h)) row[e.token] = ApplyLogitEdit(row[e.token], e);
  testing::RowCandidates top = testing::CandidatesOfRow(row, 5, 1.0f);
  ASSERT_FALSE(top.ids.empty());
  const SampleResult got = top_k->SampleCandidates(h, top.ids, top.values, 0);
  EXPECT_EQ(got.token, want.token);
  EXPECT_TRUE(got.top.empty());
  std::vector<float> edited = row;
  const SampleResult from_whole = top_k->SampleEdited(h, edited, 0);
  EXPECT_EQ(from_whole.token, want.token);
  EXPECT_TRUE(from_whole.top.empty());
}

}  // namespace
}  // namespace tessera
