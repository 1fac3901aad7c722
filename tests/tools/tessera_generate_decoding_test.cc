// `tessera generate` decoding flags, run as a subprocess on the default model: bad values
// exit 2 naming the flag; beam, contrastive and n-sample modes run through the engine; the --json record's
// shape, with logprobs equal to the log-softmax of logits computed here in-process;
// seeded sampling repeats across runs and thread counts; --do-sample --top-k 1 is greedy;
// a --generation-config file is applied and a flag overrides it; --min-new-tokens holds
// EOS back.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/registry.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "tests/tools/subprocess.h"
#include "tokenizer/tokenizer.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr char kPrompt[] = "The capital of France is";

testing::ProcessResult Generate(const std::vector<std::string>& extra,
                                const std::string& prompt = kPrompt,
                                const std::string& threads = "2") {
  std::vector<std::string> args = {TESSERA_BINARY, "generate", "--model", "default",
                                   "--prompt", prompt, "--threads", threads};
  args.insert(args.end(), extra.begin(), extra.end());
  return testing::RunProcess(args);
}

// Runs with --json and parses the single record.
json GenerateJson(const std::vector<std::string>& extra, const std::string& prompt = kPrompt) {
  std::vector<std::string> args = extra;
  args.push_back("--json");
  const testing::ProcessResult r = Generate(args, prompt);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_object()) << r.out;
  return j.is_object() ? j : json::object();
}

std::vector<int32_t> TokenIds(const json& j) {
  return j.value("token_ids", json::array()).get<std::vector<int32_t>>();
}

std::string WriteTempFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

struct BadFlag {
  std::vector<std::string> args;
  std::string named;  // what the one line on stderr must name
};

TEST(TesseraGenerateDecodingTest, HelpListsTheDecodingFlags) {
  const testing::ProcessResult r = testing::RunProcess({TESSERA_BINARY, "generate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--do-sample", "--temperature", "--top-k", "--top-p", "--min-p", "--typical-p",
        "--repetition-penalty", "--frequency-penalty", "--presence-penalty",
        "--no-repeat-ngram-size", "--min-new-tokens", "--max-new-tokens", "--max-tokens",
        "--seed", "--logprobs", "--stop-token-id", "--generation-config", "--json"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  EXPECT_THAT(r.out, HasSubstr("default 50 applies with --do-sample"));
}

TEST(TesseraGenerateDecodingTest, BadValuesExitTwoNamingTheFlag) {
  const BadFlag cases[] = {
      {{"--top-k", "-1"}, "--top-k"},
      {{"--top-k", "many"}, "--top-k"},
      {{"--temperature", "-0.5"}, "--temperature"},
      {{"--do-sample", "--temperature", "0"}, "--temperature"},
      {{"--top-p", "1.5"}, "--top-p"},
      {{"--min-p", "2"}, "--min-p"},
      {{"--typical-p", "0"}, "--typical-p"},
      {{"--repetition-penalty", "0"}, "--repetition-penalty"},
      {{"--frequency-penalty", "2.5"}, "--frequency-penalty"},
      {{"--presence-penalty", "-3"}, "--presence-penalty"},
      {{"--no-repeat-ngram-size", "-1"}, "--no-repeat-ngram-size"},
      {{"--min-new-tokens", "-2"}, "--min-new-tokens"},
      {{"--max-new-tokens", "-1"}, "--max-new-tokens"},
      {{"--max-tokens", "-1"}, "--max-tokens"},
      {{"--json", "--logprobs", "21"}, "--logprobs"},
      {{"--stop-token-id", "-4"}, "--stop-token-id"},
      {{"--stop-token-id", "99999999"}, "--stop-token-id"},  // outside the vocabulary
      {{"--seed", "-1"}, "--seed"},
      {{"--logprobs", "2"}, "--logprobs needs --json"},
      {{"--max-tokens", "3", "--max-new-tokens", "4"}, "--max-"},
  };
  for (const BadFlag& c : cases) {
    const testing::ProcessResult r = Generate(c.args);
    const std::string what = c.args[0] + " " + c.args[1];
    EXPECT_EQ(r.exit_code, 2) << what << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.named)) << what;
    EXPECT_EQ(r.out, "") << what;
  }
}

// Runs with --json and parses one record per line.
std::vector<json> GenerateJsonLines(std::vector<std::string> args) {
  args.push_back("--json");
  const testing::ProcessResult r = Generate(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    out.push_back(json::parse(line, nullptr, /*allow_exceptions=*/false));
  }
  return out;
}

// Beam, diverse beam and contrastive search and several samples run through the engine:
// one record per returned sequence, best first, each with its score.
TEST(TesseraGenerateDecodingTest, EngineStrategiesReturnEverySequence) {
  const std::vector<json> beams = GenerateJsonLines({"--num-beams", "3", "--num-return-sequences",
                                                    "2", "--max-new-tokens", "6", "--logprobs",
                                                    "2"});
  ASSERT_EQ(beams.size(), 2u);
  for (const json& b : beams) {
    ASSERT_EQ(b["logprobs"].size(), TokenIds(b).size());
    EXPECT_EQ(b["logprobs"][0]["top_logprobs"].size(), 2u);
  }
  EXPECT_EQ(beams[0]["index"], 0);
  EXPECT_EQ(beams[1]["index"], 1);
  EXPECT_GE(beams[0]["score"].get<double>(), beams[1]["score"].get<double>());
  EXPECT_NE(TokenIds(beams[0]), TokenIds(beams[1]));
  const std::vector<json> groups =
      GenerateJsonLines({"--num-beams", "4", "--num-beam-groups", "2", "--diversity-penalty",
                         "1.0", "--num-return-sequences", "4", "--max-new-tokens", "4"});
  EXPECT_EQ(groups.size(), 4u);
  const std::vector<json> contrastive =
      GenerateJsonLines({"--penalty-alpha", "0.6", "--top-k", "4", "--max-new-tokens", "5"});
  ASSERT_EQ(contrastive.size(), 1u);
  const size_t n = TokenIds(contrastive[0]).size();
  if (contrastive[0]["finish_reason"] == "length") {
    EXPECT_EQ(n, 5u);
  } else {
    EXPECT_EQ(contrastive[0]["finish_reason"], "stop");
    EXPECT_LT(n, 5u);  // the stop token is not among token_ids
  }
  const std::vector<json> samples = GenerateJsonLines(
      {"--do-sample", "--seed", "3", "--num-return-sequences", "2", "--max-new-tokens", "4"});
  EXPECT_EQ(samples.size(), 2u);
  const std::vector<json> best = GenerateJsonLines(
      {"--do-sample", "--seed", "3", "--best-of", "3", "--max-new-tokens", "4"});
  EXPECT_EQ(best.size(), 1u);
  // Impossible combinations are refused naming the flag.
  const testing::ProcessResult alpha = Generate({"--penalty-alpha", "0.5", "--num-beams", "2"});
  EXPECT_EQ(alpha.exit_code, 2);
  EXPECT_THAT(alpha.err, HasSubstr("--penalty-alpha"));
  const testing::ProcessResult r = Generate({"--num-beams", "4", "--num-beam-groups", "3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--num-beam-groups"));
}

// A stop string ends the text before it, streamed or not: the streamed text never shows a
// part of it. max_time ends generation with "deadline".
TEST(TesseraGenerateDecodingTest, StopStringsAreHeldBackAndMaxTimeEnds) {
  const json plain = GenerateJson({"--max-new-tokens", "24"});
  const std::string text = plain["text"];
  ASSERT_GT(text.size(), 20u) << text;
  const std::string stop = text.substr(text.size() / 2, 5);
  const std::string before = text.substr(0, text.find(stop));
  const json cut = GenerateJson({"--max-new-tokens", "24", "--stop-strings", stop});
  EXPECT_EQ(cut["text"], before);
  EXPECT_EQ(cut["finish_reason"], "stop");
  EXPECT_TRUE(cut["stop_token_id"].is_null());
  const testing::ProcessResult streamed =
      Generate({"--max-new-tokens", "24", "--stop-strings", stop});
  ASSERT_EQ(streamed.exit_code, 0) << streamed.err;
  EXPECT_EQ(streamed.out, before + "\n");
  const json timed = GenerateJson({"--max-new-tokens", "24", "--max-time", "1e-9"});
  EXPECT_EQ(timed["finish_reason"], "deadline");
  EXPECT_EQ(TokenIds(timed).size(), 1u);
  const testing::ProcessResult bad = Generate({"--stop-strings", ""});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--stop-strings"));
}

// Several samples per prompt (the engine path) end at a stop string each, seeded alike, and
// their text stops before it; beams refuse stop strings naming the flag.
TEST(TesseraGenerateDecodingTest, StopStringsEndEachOfSeveralSamples) {
  const std::vector<std::string> sampled = {"--do-sample", "--seed", "5", "--num-return-sequences",
                                            "2", "--max-new-tokens", "24"};
  const std::vector<json> plain = GenerateJsonLines(sampled);
  ASSERT_EQ(plain.size(), 2u);
  const std::string text = plain[0]["text"];
  ASSERT_GT(text.size(), 20u) << text;
  const std::string stop = text.substr(text.size() / 2, 4);
  std::vector<std::string> with_stop = sampled;
  with_stop.insert(with_stop.end(), {"--stop-strings", stop});
  const std::vector<json> cut = GenerateJsonLines(with_stop);
  ASSERT_EQ(cut.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const std::string full = plain[i]["text"];
    const size_t at = full.find(stop);
    if (at == std::string::npos) {
      EXPECT_EQ(cut[i]["text"], full) << i;
      continue;
    }
    EXPECT_EQ(cut[i]["text"], full.substr(0, at)) << i;
    EXPECT_EQ(cut[i]["finish_reason"], "stop") << i;
    EXPECT_LT(TokenIds(cut[i]).size(), TokenIds(plain[i]).size()) << i;
  }
  const testing::ProcessResult beams = Generate({"--num-beams", "2", "--stop-strings", "x"});
  EXPECT_EQ(beams.exit_code, 2);
  EXPECT_THAT(beams.err, HasSubstr("--stop-strings"));
}

TEST(TesseraGenerateDecodingTest, JsonRecordWithLogprobsOfTheRawLogits) {
  constexpr int kNew = 5;
  // The penalty makes the row the token is chosen from differ from the model's raw row;
  // logprobs are reported from the raw one.
  const json j = GenerateJson({"--max-new-tokens", std::to_string(kNew), "--logprobs", "3",
                               "--repetition-penalty", "1.3"});
  for (const char* key : {"index", "text", "token_ids", "logprobs", "cumulative_logprob",
                          "finish_reason", "stop_token_id", "prompt_tokens", "seed"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  const std::vector<int32_t> ids = TokenIds(j);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kNew)) << j.dump();
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_TRUE(j["stop_token_id"].is_null());
  ASSERT_EQ(j["logprobs"].size(), ids.size());

  // The chosen tokens' log-softmax over this model's logits, computed here.
  auto path = ResolveModelPath("default");
  ASSERT_TRUE(path.ok()) << "fetch the default model first: " << path.status();
  auto store = OpenWeightStore(*path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto backend = CreateBackend("cpu", 2);
  ASSERT_TRUE(backend.ok());
  auto model = LlamaModel::Load(**store, backend->get());
  ASSERT_TRUE(model.ok()) << model.status();
  const int64_t prompt_len = j["prompt_tokens"].get<int64_t>();
  std::vector<int32_t> feed;
  {
    // The binary encodes the plain prompt with default options; do the same.
    auto tok = Tokenizer::FromGguf(*(*store)->gguf());
    ASSERT_TRUE(tok.ok());
    auto p = (*tok)->Encode(kPrompt, EncodeOptions{});
    ASSERT_TRUE(p.ok());
    feed = *p;
  }
  ASSERT_EQ(static_cast<int64_t>(feed.size()), prompt_len);
  // Prefill, then one token at a time, as the binary runs the model (a batched forward
  // over all positions takes other kernel paths and rounds differently).
  auto cache = (*model)->NewKvCache(static_cast<int64_t>(feed.size() + ids.size()));
  ASSERT_TRUE(cache.ok());
  std::vector<std::vector<float>> rows(ids.size());
  ASSERT_TRUE((*model)->Forward(feed, 0, *cache, /*all_logits=*/false, &rows[0]).ok());
  for (size_t i = 1; i < ids.size(); ++i) {
    const int32_t token[1] = {ids[i - 1]};
    ASSERT_TRUE((*model)->Forward(token, prompt_len + static_cast<int64_t>(i) - 1, *cache,
                                  /*all_logits=*/false, &rows[i])
                    .ok());
  }
  const size_t vocab = static_cast<size_t>((*model)->config().vocab_size);

  double sum = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const json& entry = j["logprobs"][i];
    EXPECT_EQ(entry["token_id"], ids[i]);
    EXPECT_TRUE(entry["text"].is_string());
    const double lp = entry["logprob"].get<double>();
    EXPECT_LE(lp, 0.0);
    const float* row = rows[i].data();
    double max = row[0];
    for (size_t v = 1; v < vocab; ++v) max = std::max<double>(max, row[v]);
    double z = 0;
    for (size_t v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]) - max);
    EXPECT_NEAR(lp, row[ids[i]] - max - std::log(z), 1e-5) << "token " << i;
    const json& top = entry["top_logprobs"];
    ASSERT_EQ(top.size(), 3u);
    EXPECT_GE(top[0]["logprob"].get<double>(), lp);
    EXPECT_EQ(top[0]["token_id"], std::max_element(row, row + vocab) - row);
    for (size_t k = 1; k < top.size(); ++k) {
      EXPECT_LE(top[k]["logprob"].get<double>(), top[k - 1]["logprob"].get<double>());
    }
    sum += lp;
  }
  EXPECT_NEAR(j["cumulative_logprob"].get<double>(), sum, 1e-6);
}

TEST(TesseraGenerateDecodingTest, SeededSamplingRepeatsAcrossRunsAndThreads) {
  const std::vector<std::string> sample = {"--do-sample", "--seed", "1234", "--max-tokens", "12",
                                           "--temperature", "1.2", "--no-stream"};
  const testing::ProcessResult a = Generate(sample, "Once upon a time");
  const testing::ProcessResult b = Generate(sample, "Once upon a time");
  const testing::ProcessResult c = Generate(sample, "Once upon a time", /*threads=*/"1");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(b.out, a.out);
  EXPECT_EQ(c.out, a.out) << "--threads 1 vs 2";
  bool other_seed_differs = false;
  for (const char* seed : {"1", "2", "3"}) {
    std::vector<std::string> args = sample;
    args[2] = seed;
    other_seed_differs |= Generate(args, "Once upon a time").out != a.out;
  }
  EXPECT_TRUE(other_seed_differs);
  // The seed is reported, so that an unseeded run can be repeated.
  const json j = GenerateJson({"--do-sample", "--max-tokens", "4"}, "Once upon a time");
  const json again = GenerateJson(
      {"--do-sample", "--max-tokens", "4", "--seed", std::to_string(j["seed"].get<uint64_t>())},
      "Once upon a time");
  EXPECT_EQ(TokenIds(again), TokenIds(j));
}

TEST(TesseraGenerateDecodingTest, SamplingWithTopKOneIsGreedy) {
  const testing::ProcessResult greedy = Generate({"--max-tokens", "8"});
  const testing::ProcessResult sampled =
      Generate({"--max-tokens", "8", "--do-sample", "--top-k", "1", "--temperature", "1.5",
                "--seed", "99"});
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  ASSERT_EQ(sampled.exit_code, 0) << sampled.err;
  EXPECT_EQ(sampled.out, greedy.out);
  // Without --do-sample the warpers do nothing (transformers' rule), and it says so.
  const testing::ProcessResult warped = Generate({"--max-tokens", "8", "--top-k", "7"});
  EXPECT_EQ(warped.out, greedy.out);
  EXPECT_THAT(warped.err, HasSubstr("--top-k has no effect without --do-sample"));
}

TEST(TesseraGenerateDecodingTest, GenerationConfigFileIsAppliedAndFlagsOverrideIt) {
  const std::vector<int32_t> greedy = TokenIds(GenerateJson({"--max-tokens", "5"}));
  ASSERT_EQ(greedy.size(), 5u);
  const std::string file = WriteTempFile(
      "generation_config.json",
      R"({"do_sample": true, "top_k": 1, "temperature": 0.7, "max_new_tokens": 3, "seed": 5,
          "transformers_version": "4.42.0"})");
  const json from_file = GenerateJson({"--generation-config", file});
  EXPECT_EQ(TokenIds(from_file), std::vector<int32_t>(greedy.begin(), greedy.begin() + 3));
  EXPECT_EQ(from_file["seed"], 5);
  const json overridden =
      GenerateJson({"--generation-config", file, "--max-new-tokens", "5", "--seed", "6"});
  EXPECT_EQ(TokenIds(overridden), greedy);
  EXPECT_EQ(overridden["seed"], 6);

  // A bad value in the file names the file; a refused mode from the file says where it is.
  const std::string bad = WriteTempFile("bad_generation_config.json", R"({"top_k": -3})");
  testing::ProcessResult r = Generate({"--generation-config", bad});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(bad));
  EXPECT_THAT(r.err, HasSubstr("top_k"));
  const std::string beams = WriteTempFile("beams_generation_config.json",
                                          R"({"num_beams": 4, "num_beam_groups": 3})");
  r = Generate({"--generation-config", beams});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(beams));
  EXPECT_THAT(r.err, HasSubstr("num_beam_groups"));
  r = Generate({"--generation-config", "/nonexistent/generation_config.json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/generation_config.json"));
  for (const std::string& p : {file, bad, beams}) std::remove(p.c_str());
}

TEST(TesseraGenerateDecodingTest, MinNewTokensHoldsEosBack) {
  const std::string prompt = "What is 2+2? Answer with a number only.";
  const json stopped = GenerateJson({"--chat", "--max-tokens", "30"}, prompt);
  ASSERT_EQ(stopped["finish_reason"], "stop") << stopped.dump();
  const int32_t eos = stopped["stop_token_id"].get<int32_t>();
  const std::vector<int32_t> short_ids = TokenIds(stopped);
  const size_t n = short_ids.size() + 4;

  const json held = GenerateJson(
      {"--chat", "--max-tokens", "30", "--min-new-tokens", std::to_string(n)}, prompt);
  const std::vector<int32_t> ids = TokenIds(held);
  ASSERT_GE(ids.size(), n) << held.dump();
  // Same tokens up to where EOS came, then something else instead of it.
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + short_ids.size()), short_ids);
  for (size_t i = 0; i < n; ++i) EXPECT_NE(ids[i], eos) << i;

  // A --stop-token-id ends generation the same way (and is held back too).
  const json stop_first = GenerateJson({"--stop-token-id", std::to_string(short_ids[0]),
                                        "--stop-token-id", "7", "--chat"},
                                       prompt);
  EXPECT_EQ(stop_first["finish_reason"], "stop");
  EXPECT_EQ(stop_first["stop_token_id"], short_ids[0]);
  EXPECT_TRUE(TokenIds(stop_first).empty());
}

}  // namespace
}  // namespace tessera
