#include "decoding/generation_config.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(GenerationConfigTest, DefaultsAreTransformersDefaults) {
  const GenerationConfig c;
  EXPECT_FALSE(c.do_sample);
  EXPECT_EQ(c.num_beams, 1);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_EQ(c.top_p, 1.0);
  EXPECT_EQ(c.temperature, 1.0);
  EXPECT_EQ(c.typical_p, 1.0);
  EXPECT_EQ(c.repetition_penalty, 1.0);
  EXPECT_EQ(c.length_penalty, 1.0);
  EXPECT_EQ(c.early_stopping, EarlyStopping::kFalse);
  EXPECT_EQ(c.num_return_sequences, 1);
  EXPECT_TRUE(c.Validate().ok());
}

TEST(GenerationConfigTest, ParsesEveryField) {
  const json j = json::parse(R"({
    "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "min_p": 0.05,
    "typical_p": 0.95, "repetition_penalty": 1.1, "frequency_penalty": 0.5,
    "presence_penalty": -0.25, "no_repeat_ngram_size": 3, "min_new_tokens": 2,
    "max_new_tokens": 64, "max_length": 100, "logit_bias": {"5": 2.5, "7": -100},
    "sequence_bias": [[[1, 2], 1.5]], "bad_words_ids": [[3], [4, 5]],
    "num_beams": 4, "num_beam_groups": 1, "diversity_penalty": 0.0, "penalty_alpha": 0.0,
    "length_penalty": 0.8, "early_stopping": "never", "num_return_sequences": 2,
    "seed": 1234, "eos_token_id": [2, 9], "stop_token_ids": [11], "logprobs": 5,
    "transformers_version": "4.45.0", "pad_token_id": 0, "bos_token_id": 1
  })");
  auto c = GenerationConfigFromJson(j, "gen.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->do_sample);
  EXPECT_EQ(c->temperature, 0.7);
  EXPECT_EQ(c->top_k, 20);
  EXPECT_EQ(c->top_p, 0.9);
  EXPECT_EQ(c->min_p, 0.05);
  EXPECT_EQ(c->typical_p, 0.95);
  EXPECT_EQ(c->repetition_penalty, 1.1);
  EXPECT_EQ(c->frequency_penalty, 0.5);
  EXPECT_EQ(c->presence_penalty, -0.25);
  EXPECT_EQ(c->no_repeat_ngram_size, 3);
  EXPECT_EQ(c->min_new_tokens, 2);
  EXPECT_EQ(c->max_new_tokens, 64);
  EXPECT_EQ(c->max_length, 100);
  EXPECT_EQ(c->logit_bias, (std::map<int32_t, float>{{5, 2.5f}, {7, -100.0f}}));
  EXPECT_EQ(c->sequence_bias, (std::vector<SequenceBias>{{{1, 2}, 1.5f}}));
  EXPECT_EQ(c->bad_words_ids, (std::vector<std::vector<int32_t>>{{3}, {4, 5}}));
  EXPECT_EQ(c->num_beams, 4);
  EXPECT_EQ(c->length_penalty, 0.8);
  EXPECT_EQ(c->early_stopping, EarlyStopping::kNever);
  EXPECT_EQ(c->num_return_sequences, 2);
  EXPECT_EQ(c->seed, 1234u);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 9}));
  EXPECT_EQ(c->stop_token_ids, (std::vector<int32_t>{11}));
  EXPECT_EQ(c->logprobs, 5);
}

TEST(GenerationConfigTest, ToJsonRoundTrips) {
  GenerationConfig c;
  c.do_sample = true;
  c.temperature = 0.7;  // not exactly representable: must survive the text form
  c.top_k = 20;
  c.top_p = 0.9;
  c.max_new_tokens = 64;
  c.logit_bias = {{5, 2.5f}, {7, -100.0f}};
  c.sequence_bias = {{{1, 2}, 1.5f}};
  c.bad_words_ids = {{3}, {4, 5}};
  c.early_stopping = EarlyStopping::kNever;
  c.seed = 18446744073709551615ull;
  c.eos_token_ids = {2, 9};
  c.stop_token_ids = {11};
  c.pad_token_id = 0;
  c.stop_strings = {"\n\n", "END"};
  c.max_time = 1.5;
  c.logprobs = 3;
  c.best_of = 4;
  c.num_return_sequences = 2;
  auto back = GenerationConfigFromJson(json::parse(GenerationConfigToJson(c).dump()), "wire");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, c);
  auto defaults = GenerationConfigFromJson(GenerationConfigToJson(GenerationConfig{}), "wire");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(*defaults, GenerationConfig{});
}

// The shape of Meta-Llama-3.1-8B-Instruct's generation_config.json.
TEST(GenerationConfigTest, ParsesAPublishedFile) {
  const json j = json::parse(R"({
    "bos_token_id": 128000,
    "do_sample": true,
    "eos_token_id": [128001, 128008, 128009],
    "temperature": 0.6,
    "top_p": 0.9,
    "transformers_version": "4.42.3"
  })");
  auto c = GenerationConfigFromJson(j, "generation_config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->do_sample);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->temperature, 0.6);
  EXPECT_EQ(c->top_p, 0.9);
  EXPECT_EQ(c->top_k, 50);  // transformers' default stays
}

TEST(GenerationConfigTest, SingleEosIdAndBooleanEarlyStopping) {
  auto c =
      GenerationConfigFromJson(json::parse(R"({"eos_token_id": 2, "early_stopping": true})"), "g");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(c->early_stopping, EarlyStopping::kTrue);
}

TEST(GenerationConfigTest, NullAndAbsentKeysKeepTheBase) {
  GenerationConfig base;
  base.top_k = 7;
  base.max_new_tokens = 9;
  auto c =
      GenerationConfigFromJson(json::parse(R"({"top_k": null, "unknown_key": [1, 2]})"), "g", base);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->top_k, 7);
  EXPECT_EQ(c->max_new_tokens, 9);
}

TEST(GenerationConfigTest, IntegralFloatIsAnInteger) {
  auto c = GenerationConfigFromJson(json::parse(R"({"top_k": 40.0})"), "g");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->top_k, 40);
}

struct BadJson {
  const char* key;
  const char* text;
};

class IllTypedKeyTest : public ::testing::TestWithParam<BadJson> {};

TEST_P(IllTypedKeyTest, NamesTheKey) {
  auto c = GenerationConfigFromJson(json::parse(GetParam().text), "cfg/generation_config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cfg/generation_config.json"));
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr(std::string("'") + GetParam().key + "'"));
}

INSTANTIATE_TEST_SUITE_P(
    Keys, IllTypedKeyTest,
    ::testing::Values(BadJson{"do_sample", R"({"do_sample": "yes"})"},
                      BadJson{"temperature", R"({"temperature": "hot"})"},
                      BadJson{"top_k", R"({"top_k": 2.5})"},
                      BadJson{"top_p", R"({"top_p": [0.9]})"},
                      BadJson{"max_new_tokens", R"({"max_new_tokens": "10"})"},
                      BadJson{"eos_token_id", R"({"eos_token_id": "</s>"})"},
                      BadJson{"eos_token_id", R"({"eos_token_id": [1, "x"]})"},
                      BadJson{"stop_token_ids", R"({"stop_token_ids": 5})"},
                      BadJson{"bad_words_ids", R"({"bad_words_ids": [1, 2]})"},
                      BadJson{"logit_bias", R"({"logit_bias": {"abc": 1}})"},
                      BadJson{"logit_bias", R"({"logit_bias": {"3": "x"}})"},
                      BadJson{"logit_bias", R"({"logit_bias": [1]})"},
                      BadJson{"sequence_bias", R"({"sequence_bias": [[1, 2.0]]})"},
                      BadJson{"early_stopping", R"({"early_stopping": "sometimes"})"},
                      BadJson{"seed", R"({"seed": -1})"},
                      BadJson{"logprobs", R"({"logprobs": true})"},
                      BadJson{"num_beams", R"({"num_beams": "4"})"},
                      BadJson{"stop_strings", R"({"stop_strings": [1]})"},
                      BadJson{"max_time", R"({"max_time": "1s"})"}));

TEST(GenerationConfigTest, StopStringsAndMaxTime) {
  auto one = GenerationConfigFromJson(json::parse(R"({"stop_strings": "###", "max_time": 2.5})"),
                                      "cfg");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->stop_strings, std::vector<std::string>{"###"});
  EXPECT_EQ(one->max_time, 2.5);
  auto many = GenerationConfigFromJson(json::parse(R"({"stop_strings": ["a", "\n\n"]})"), "cfg");
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_EQ(many->stop_strings.size(), 2u);
}

TEST(GenerationConfigTest, NotAnObject) {
  auto c = GenerationConfigFromJson(json::parse("[1]"), "g.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("g.json"));
}

TEST(GenerationConfigTest, ParsedValuesAreValidated) {
  auto c = GenerationConfigFromJson(json::parse(R"({"top_p": 1.5})"), "g.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("'top_p'"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("g.json"));
}

TEST(GenerationConfigTest, FromFile) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/decoding_generation_config.json";
  {
    std::ofstream out(path);
    out << R"({"do_sample": true, "temperature": 0.6, "top_p": 0.9, "eos_token_id": 2})";
  }
  auto c = GenerationConfigFromJsonFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->temperature, 0.6);
  {
    std::ofstream out(path);
    out << "{not json";
  }
  EXPECT_EQ(GenerationConfigFromJsonFile(path).status().code(), absl::StatusCode::kInvalidArgument);
  std::remove(path.c_str());
  auto missing = GenerationConfigFromJsonFile(dir + "/no_such_generation_config.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// One bad field per case: Validate() says INVALID_ARGUMENT and names it.
struct BadField {
  std::string field;
  std::function<void(GenerationConfig&)> mutate;
};

class ValidateTest : public ::testing::TestWithParam<BadField> {};

TEST_P(ValidateTest, NamesTheField) {
  GenerationConfig c;
  GetParam().mutate(c);
  const absl::Status s = c.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'" + GetParam().field + "'"));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ValidateTest,
    ::testing::Values(
        BadField{"temperature", [](GenerationConfig& c) { c.temperature = -0.1; }},
        BadField{"temperature", [](GenerationConfig& c) { c.temperature = NAN; }},
        BadField{"temperature", [](GenerationConfig& c) { c.do_sample = true; c.temperature = 0; }},
        BadField{"top_k", [](GenerationConfig& c) { c.top_k = -1; }},
        BadField{"top_p", [](GenerationConfig& c) { c.top_p = 0.0; }},
        BadField{"top_p", [](GenerationConfig& c) { c.top_p = 1.01; }},
        BadField{"min_p", [](GenerationConfig& c) { c.min_p = -0.1; }},
        BadField{"min_p", [](GenerationConfig& c) { c.min_p = 1.5; }},
        BadField{"typical_p", [](GenerationConfig& c) { c.typical_p = 0.0; }},
        BadField{"typical_p", [](GenerationConfig& c) { c.typical_p = 2.0; }},
        BadField{"repetition_penalty", [](GenerationConfig& c) { c.repetition_penalty = 0.0; }},
        BadField{"frequency_penalty", [](GenerationConfig& c) { c.frequency_penalty = 2.5; }},
        BadField{"presence_penalty", [](GenerationConfig& c) { c.presence_penalty = -3; }},
        BadField{"no_repeat_ngram_size", [](GenerationConfig& c) { c.no_repeat_ngram_size = -1; }},
        BadField{"min_new_tokens", [](GenerationConfig& c) { c.min_new_tokens = -2; }},
        BadField{"max_new_tokens", [](GenerationConfig& c) { c.max_new_tokens = 0; }},
        BadField{"max_length", [](GenerationConfig& c) { c.max_length = -5; }},
        BadField{"logit_bias", [](GenerationConfig& c) { c.logit_bias[3] = 101.0f; }},
        BadField{"logit_bias", [](GenerationConfig& c) { c.logit_bias[-3] = 1.0f; }},
        BadField{"sequence_bias", [](GenerationConfig& c) { c.sequence_bias.push_back({{}, 1}); }},
        BadField{"sequence_bias",
                 [](GenerationConfig& c) { c.sequence_bias.push_back({{1, -2}, 1}); }},
        BadField{"bad_words_ids", [](GenerationConfig& c) { c.bad_words_ids = {{1}, {}}; }},
        BadField{"bad_words_ids", [](GenerationConfig& c) { c.bad_words_ids = {{-1}}; }},
        BadField{"eos_token_id", [](GenerationConfig& c) { c.eos_token_ids = {2, -1}; }},
        BadField{"stop_token_ids", [](GenerationConfig& c) { c.stop_token_ids = {-7}; }},
        BadField{"logprobs", [](GenerationConfig& c) { c.logprobs = 21; }},
        BadField{"stop_strings", [](GenerationConfig& c) { c.stop_strings = {"ok", ""}; }},
        BadField{"stop_strings",
                 [](GenerationConfig& c) { c.stop_strings.assign(17, std::string("x")); }},
        BadField{"stop_strings",
                 [](GenerationConfig& c) { c.stop_strings = {std::string(257, 'x')}; }},
        BadField{"max_time", [](GenerationConfig& c) { c.max_time = 0.0; }},
        BadField{"penalty_alpha",
                 [](GenerationConfig& c) { c.penalty_alpha = 0.5; c.num_beams = 2; }},
        BadField{"penalty_alpha",
                 [](GenerationConfig& c) { c.penalty_alpha = 0.5; c.do_sample = true; }},
        BadField{"penalty_alpha", [](GenerationConfig& c) { c.penalty_alpha = 0.5; c.top_k = 1; }},
        BadField{"best_of", [](GenerationConfig& c) { c.best_of = 3; }},  // greedy
        BadField{"best_of", [](GenerationConfig& c) {
                   c.do_sample = true; c.num_return_sequences = 3; c.best_of = 2; }},
        BadField{"best_of", [](GenerationConfig& c) { c.do_sample = true; c.best_of = 65; }},
        BadField{"max_time", [](GenerationConfig& c) { c.max_time = -1.0; }},
        BadField{"logprobs", [](GenerationConfig& c) { c.logprobs = -1; }},
        BadField{"num_beams", [](GenerationConfig& c) { c.num_beams = 0; }},
        BadField{"num_beams", [](GenerationConfig& c) { c.num_beams = int64_t{1} << 31; }},
        BadField{"num_beam_groups", [](GenerationConfig& c) { c.num_beam_groups = 0; }},
        BadField{"num_beam_groups",
                 [](GenerationConfig& c) { c.num_beams = 2; c.num_beam_groups = 3; }},
        BadField{"num_beam_groups", [](GenerationConfig& c) {
                   c.num_beams = 6; c.num_beam_groups = 4; c.diversity_penalty = 1; }},
        BadField{"num_beam_groups", [](GenerationConfig& c) {
                   c.num_beams = 4; c.num_beam_groups = 2; c.diversity_penalty = 1;
                   c.do_sample = true; }},
        BadField{"diversity_penalty",
                 [](GenerationConfig& c) { c.num_beams = 4; c.num_beam_groups = 2; }},
        BadField{"diversity_penalty", [](GenerationConfig& c) { c.diversity_penalty = -1; }},
        BadField{"penalty_alpha", [](GenerationConfig& c) { c.penalty_alpha = 1.5; }},
        BadField{"length_penalty", [](GenerationConfig& c) { c.length_penalty = INFINITY; }},
        BadField{"num_return_sequences", [](GenerationConfig& c) { c.num_return_sequences = 0; }},
        BadField{"num_return_sequences", [](GenerationConfig& c) { c.num_return_sequences = 2; }},
        BadField{"num_return_sequences",
                 [](GenerationConfig& c) { c.num_beams = 2; c.num_return_sequences = 3; }}));

TEST(GenerationConfigTest, LegalCombinations) {
  GenerationConfig c;
  c.do_sample = true;
  c.num_return_sequences = 4;  // sampling may return several
  EXPECT_TRUE(c.Validate().ok());
  GenerationConfig beams;
  beams.num_beams = 6;
  beams.num_beam_groups = 3;
  beams.diversity_penalty = 0.5;
  beams.num_return_sequences = 6;
  EXPECT_TRUE(beams.Validate().ok());
  EXPECT_TRUE(beams.IsGroupBeamSearch());
  GenerationConfig contrastive;
  contrastive.penalty_alpha = 0.6;
  contrastive.top_k = 4;
  EXPECT_TRUE(contrastive.Validate().ok());
  EXPECT_TRUE(contrastive.IsContrastiveSearch());
  GenerationConfig greedy_t0;  // temperature 0 is fine when not sampling
  greedy_t0.temperature = 0;
  EXPECT_TRUE(greedy_t0.Validate().ok());
}

}  // namespace
}  // namespace tessera
