// `tessera generate --input FILE.jsonl` (tools/batch_generate.h) as a subprocess on the
// default model: outputs in input order with the right ids whatever the finishing order,
// per-line settings over command-line defaults, stop tokens, error lines and exit codes,
// reproducible parallel sampling, and greedy batch output equal to single-prompt
// `tessera generate`.
//
// The greedy comparison runs on "cpu-reference" (float32 activations): on "cpu" the
// activations are quantized per batch row layout, so a batched and a single run may differ
// at a near-tie; BatchRunner promises equality only within the backend's rounding.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/tools/subprocess.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

std::string TempPath(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return (std::filesystem::temp_directory_path() /
          (std::string("tessera_batch_") + info->name() + "_" + name))
      .string();
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

std::vector<json> ParseLines(const std::string& text) {
  std::vector<json> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) lines.push_back(json::parse(text.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

struct BatchRun {
  testing::ProcessResult process;
  std::vector<json> lines;
};

// Runs the batch over `input` on the cpu backend with one thread; output to stdout.
BatchRun RunBatch(const std::string& input, std::vector<std::string> extra = {},
                  const std::string& backend = "cpu") {
  std::vector<std::string> argv = {TESSERA_BINARY,  "generate",   "--input",
                                   WriteFile("in.jsonl", input), "--backend", backend,
                                   "--threads",     "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  BatchRun run;
  run.process = testing::RunProcess(argv);
  run.lines = ParseLines(run.process.out);
  return run;
}

std::vector<int32_t> Ids(const json& completion) {
  return completion.at("token_ids").get<std::vector<int32_t>>();
}

TEST(TesseraBatchGenerateTest, OutputsFollowInputOrderWithLineSettings) {
  // The first request runs longest, so it finishes last; --max-num-seqs 3 makes the later
  // ones wait for slots. Line 3 is blank (skipped, but counted for the default id).
  const std::string input =
      R"({"id": "long", "prompt": "The capital of France is", "max_new_tokens": 12})"
      "\n"
      R"({"prompt": "1, 2, 3, 4,"})"
      "\n\n"
      R"({"id": "chat", "messages": [{"role": "user", "content": "<|im_end|>Say hi"}], "max_new_tokens": 2})"
      "\n"
      R"({"id": "stop", "prompt": "The capital of France is", "stop_token_ids": [30], "max_new_tokens": 8})"
      "\n"
      R"({"id": 7, "prompt": "Hello", "max_new_tokens": 1})"
      "\n"
      R"({"id": "last", "prompt": "def f(x):", "max_new_tokens": 4})"
      "\n"
      R"({"id": "chat2", "messages": [{"role": "user", "content": "Say hi"}], "max_new_tokens": 1})"
      "\n";
  const BatchRun run = RunBatch(input, {"--max-new-tokens", "3", "--max-num-seqs", "3"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_EQ(run.lines.size(), 7u) << run.process.out;
  const std::vector<std::string> ids = {"long", "2", "chat", "stop", "7", "last", "chat2"};
  const std::vector<size_t> lengths = {12, 3, 2, 1, 1, 4, 1};  // "2" takes --max-new-tokens 3
  for (size_t i = 0; i < ids.size(); ++i) {
    const json& line = run.lines[i];
    EXPECT_EQ(line.at("id"), ids[i]) << line;
    ASSERT_EQ(line.at("completions").size(), 1u) << line;
    const json& c = line["completions"][0];
    EXPECT_EQ(c.at("index"), 0);
    EXPECT_EQ(Ids(c).size(), lengths[i]) << line;
    EXPECT_GT(line.at("usage").at("prompt_tokens").get<int>(), 0);
    if (ids[i] != "stop") {
      EXPECT_EQ(c.at("finish_reason"), "length") << line;
      EXPECT_EQ(line["usage"].at("completion_tokens"), lengths[i]);
    }
  }
  // Greedy " Paris" then "." (id 30): the stop token ends the completion and is reported
  // apart from the tokens and the text, but counted in the usage.
  const json& stop = run.lines[3]["completions"][0];
  EXPECT_EQ(stop.at("finish_reason"), "stop");
  EXPECT_EQ(stop.at("stop_token_id"), 30);
  EXPECT_EQ(stop.at("text"), " Paris");
  EXPECT_EQ(Ids(stop), std::vector<int32_t>{7042});
  EXPECT_EQ(run.lines[3]["usage"]["completion_tokens"], 2);
  // "<|im_end|>" typed in a message stays text (several tokens), not one control token.
  EXPECT_GE(run.lines[2]["usage"]["prompt_tokens"].get<int>(),
            run.lines[6]["usage"]["prompt_tokens"].get<int>() + 3);
  EXPECT_THAT(run.process.err, HasSubstr("KV cache:"));
  EXPECT_THAT(run.process.err, HasSubstr("batch: 7 requests (0 failed)"));
}

TEST(TesseraBatchGenerateTest, GreedyBatchEqualsSinglePromptOnCpuReference) {
  const std::vector<std::string> prompts = {"The capital of France is", "def fibonacci(n):"};
  std::string input;
  for (const std::string& p : prompts) {
    input += json{{"prompt", p}, {"max_new_tokens", 4}}.dump() + "\n";
  }
  const BatchRun run = RunBatch(input, {}, "cpu-reference");
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_EQ(run.lines.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const testing::ProcessResult single = testing::RunProcess(
        {TESSERA_BINARY, "generate", "--prompt", prompts[i], "--max-new-tokens", "4", "--json",
         "--backend", "cpu-reference", "--threads", "1"});
    ASSERT_EQ(single.exit_code, 0) << single.err;
    const json expected = json::parse(single.out);
    const json& got = run.lines[i]["completions"][0];
    EXPECT_EQ(Ids(got), expected.at("token_ids").get<std::vector<int32_t>>()) << prompts[i];
    EXPECT_EQ(got.at("text"), expected.at("text"));
    EXPECT_EQ(run.lines[i]["usage"]["prompt_tokens"], expected.at("prompt_tokens"));
  }
}

TEST(TesseraBatchGenerateTest, BadLinesGiveErrorLinesAndExitOne) {
  const std::string input =
      R"({"id": "ok1", "prompt": "Hello", "max_new_tokens": 2})"
      "\n"
      "this is not json\n"
      R"({"id": "noprompt", "max_new_tokens": 2})"
      "\n"
      R"({"id": "badk", "prompt": "Hi", "top_k": -1})"
      "\n"
      R"({"id": "toomany", "prompt": "Hi", "n": 3, "do_sample": true, "max_new_tokens": 2})"
      "\n"
      R"({"id": "ok2", "prompt": "Hi there", "max_new_tokens": 2})"
      "\n";
  const BatchRun run = RunBatch(input, {"--max-num-seqs", "2"});
  EXPECT_EQ(run.process.exit_code, 1) << run.process.err;
  ASSERT_EQ(run.lines.size(), 6u) << run.process.out;
  struct Expected {
    std::string id;
    std::string field;  // empty: the line succeeds
  };
  const std::vector<Expected> expected = {{"ok1", ""},     {"2", "not valid JSON"},
                                          {"noprompt", "'prompt'"}, {"badk", "top_k"},
                                          {"toomany", "(n) = 3"},    {"ok2", ""}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const json& line = run.lines[i];
    EXPECT_EQ(line.at("id"), expected[i].id) << line;
    if (expected[i].field.empty()) {
      EXPECT_FALSE(line.contains("error")) << line;
      EXPECT_EQ(Ids(line.at("completions")[0]).size(), 2u) << line;
      continue;
    }
    ASSERT_TRUE(line.contains("error")) << line;
    EXPECT_EQ(line["error"].at("code"), "INVALID_ARGUMENT") << line;
    const std::string message = line["error"].at("message");
    EXPECT_THAT(message, HasSubstr(expected[i].field));
    EXPECT_THAT(message, HasSubstr("line " + std::to_string(i + 1)));
  }
}

TEST(TesseraBatchGenerateTest, ParallelSamplingWithSeedIsReproducible) {
  const std::string input =
      R"({"id": "s", "prompt": "Once upon a time", "n": 2, "do_sample": true, "seed": 11, "max_new_tokens": 8})"
      "\n";
  const BatchRun first = RunBatch(input);
  ASSERT_EQ(first.process.exit_code, 0) << first.process.err;
  ASSERT_EQ(first.lines.size(), 1u);
  const json& completions = first.lines[0].at("completions");
  ASSERT_EQ(completions.size(), 2u);
  EXPECT_EQ(completions[0].at("index"), 0);
  EXPECT_EQ(completions[1].at("index"), 1);
  // The two samples draw from different streams (keyed by sequence index).
  EXPECT_NE(Ids(completions[0]), Ids(completions[1]));
  EXPECT_EQ(first.lines[0]["usage"]["completion_tokens"],
            Ids(completions[0]).size() + Ids(completions[1]).size() +
                (completions[0]["finish_reason"] == "stop") +
                (completions[1]["finish_reason"] == "stop"));

  const BatchRun second = RunBatch(input);
  ASSERT_EQ(second.process.exit_code, 0) << second.process.err;
  EXPECT_EQ(second.lines, first.lines);
}

// A line's stop_strings cut its text before the first one (tokens up to the one that
// completed it are kept); beam search lines return their hypotheses with scores.
TEST(TesseraBatchGenerateTest, StopStringsAndBeamSearchLines) {
  const std::string prompt = R"("prompt": "Once upon a time", "max_new_tokens": 24)";
  const BatchRun plain = RunBatch("{" + prompt + "}\n");
  ASSERT_EQ(plain.process.exit_code, 0) << plain.process.err;
  const std::string text = plain.lines.at(0)["completions"][0]["text"];
  ASSERT_GT(text.size(), 20u) << text;
  const std::string stop = text.substr(text.size() / 2, 4);
  const size_t cut = text.find(stop);
  const BatchRun run = RunBatch(
      "{" + prompt + R"(, "stop_strings": [)" + json(stop).dump() + "]}\n" +
      R"({"prompt": "Once upon a time", "max_new_tokens": 6, "num_beams": 3, "n": 2})" "\n");
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_EQ(run.lines.size(), 2u);
  const json& stopped = run.lines[0]["completions"][0];
  EXPECT_EQ(stopped["text"], text.substr(0, cut));
  EXPECT_EQ(stopped["finish_reason"], "stop");
  EXPECT_TRUE(stopped["stop_token_id"].is_null());
  const std::vector<int32_t> all = Ids(plain.lines[0]["completions"][0]);
  const std::vector<int32_t> kept = Ids(stopped);
  ASSERT_LT(kept.size(), all.size());
  EXPECT_TRUE(std::equal(kept.begin(), kept.end(), all.begin()));
  const json& beams = run.lines[1]["completions"];
  ASSERT_EQ(beams.size(), 2u);
  EXPECT_GE(beams[0]["score"].get<double>(), beams[1]["score"].get<double>());
}

// "logprobs": N reports each token's logprob and N alternatives, for every sample.
TEST(TesseraBatchGenerateTest, LogprobsForEverySequence) {
  const BatchRun run = RunBatch(
      R"({"prompt": "Once upon a time", "max_new_tokens": 5, "logprobs": 2})" "\n"
      R"({"prompt": "Once upon a time", "max_new_tokens": 5, "logprobs": 0, "n": 2,)"
      R"( "do_sample": true, "seed": 4})" "\n");
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_EQ(run.lines.size(), 2u);
  const json& greedy = run.lines[0]["completions"][0];
  const std::vector<int32_t> ids = Ids(greedy);
  ASSERT_EQ(greedy["logprobs"].size(), ids.size());
  double sum = 0.0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const json& entry = greedy["logprobs"][t];
    EXPECT_EQ(entry["token_id"], ids[t]);
    ASSERT_EQ(entry["top_logprobs"].size(), 2u);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(entry["top_logprobs"][0]["token_id"], ids[t]);
    EXPECT_LE(entry["logprob"].get<double>(), 0.0);
    sum += entry["logprob"].get<double>();
  }
  EXPECT_NEAR(greedy["cumulative_logprob"].get<double>(), sum, 1e-6);
  for (const json& sample : run.lines[1]["completions"]) {
    EXPECT_EQ(sample["logprobs"].size(), Ids(sample).size());
    EXPECT_FALSE(sample["logprobs"][0].contains("top_logprobs"));
  }
}

TEST(TesseraBatchGenerateTest, UsageErrorsExitTwo) {
  const std::string missing = TempPath("missing.jsonl");
  std::filesystem::remove(missing);
  testing::ProcessResult r =
      testing::RunProcess({TESSERA_BINARY, "generate", "--input", missing});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(missing));

  const std::string input = WriteFile("in.jsonl", R"({"prompt": "Hi"})" "\n");
  r = testing::RunProcess({TESSERA_BINARY, "generate", "--input", input, "--prompt", "Hi"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--prompt"));

  r = testing::RunProcess({TESSERA_BINARY, "generate", "--prompt", "Hi", "--max-num-seqs", "2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--input"));

  r = testing::RunProcess(
      {TESSERA_BINARY, "generate", "--input", input, "--kv-cache-dtype", "bf16"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--kv-cache-dtype"));

  r = testing::RunProcess({TESSERA_BINARY, "generate", "--input", input, "--output",
                           "/nonexistent-dir/out.jsonl"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent-dir/out.jsonl"));

  for (const char* bad : {"0", "1.5", "-0.2"}) {
    r = testing::RunProcess(
        {TESSERA_BINARY, "generate", "--input", input, "--gpu-memory-utilization", bad});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_THAT(r.err, HasSubstr("--gpu-memory-utilization")) << bad;
  }
  r = testing::RunProcess({TESSERA_BINARY, "generate", "--input", input,
                           "--gpu-memory-utilization", "0.9", "--kv-cache-tokens", "256"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("excludes"));
}

// The KV cache sized from device memory needs a device backend; the cpu one says so.
TEST(TesseraBatchGenerateTest, GpuMemoryUtilizationOnTheCpuBackendIsRefused) {
  const BatchRun run = RunBatch(R"({"prompt": "Hi", "max_new_tokens": 2})" "\n",
                                {"--gpu-memory-utilization", "0.9"});
  EXPECT_EQ(run.process.exit_code, 1) << run.process.err;
  EXPECT_THAT(run.process.err, HasSubstr("cpu backend allocates host memory"));
  EXPECT_TRUE(run.lines.empty());
}

TEST(TesseraBatchGenerateTest, WritesOutputFile) {
  const std::string out = TempPath("out.jsonl");
  const BatchRun run = RunBatch(R"({"id": "x", "prompt": "Hi", "max_new_tokens": 2})" "\n",
                                {"--output", out, "--kv-cache-tokens", "256",
                                 "--no-prefix-cache", "--block-size", "8"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  EXPECT_TRUE(run.lines.empty()) << "stdout should be empty: " << run.process.out;
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<json> lines = ParseLines(text);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("id"), "x");
  EXPECT_EQ(Ids(lines[0]["completions"][0]).size(), 2u);
  EXPECT_THAT(run.process.err, HasSubstr("32 blocks x 8 tokens"));
}

TEST(TesseraBatchGenerateTest, HalfKvCacheFitsTwiceTheTokens) {
  const BatchRun run = RunBatch(R"({"id": "x", "prompt": "Hi", "max_new_tokens": 3})" "\n",
                                {"--kv-cache-mb", "1", "--kv-cache-dtype", "f16"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  ASSERT_EQ(run.lines.size(), 1u);
  EXPECT_EQ(Ids(run.lines[0]["completions"][0]).size(), 3u);
  // SmolLM2: 2 x 30 layers x 3 KV heads x 64 x 2 bytes = 23040 bytes per token, so 1 MiB
  // holds 2 blocks of 16 tokens (a float cache: 1).
  EXPECT_THAT(run.process.err, HasSubstr("2 blocks x 16 tokens"));
  EXPECT_THAT(run.process.err, HasSubstr("f16 elements"));
}

}  // namespace
}  // namespace tessera
