#include "tools/decoding_flags.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

// GenerationConfig field -> the flag that sets it.
constexpr std::pair<std::string_view, std::string_view> kFieldFlags[] = {
    {"do_sample", "--do-sample"},
    {"temperature", "--temperature"},
    {"top_k", "--top-k"},
    {"top_p", "--top-p"},
    {"min_p", "--min-p"},
    {"typical_p", "--typical-p"},
    {"repetition_penalty", "--repetition-penalty"},
    {"frequency_penalty", "--frequency-penalty"},
    {"presence_penalty", "--presence-penalty"},
    {"no_repeat_ngram_size", "--no-repeat-ngram-size"},
    {"min_new_tokens", "--min-new-tokens"},
    {"max_new_tokens", "--max-new-tokens"},
    {"seed", "--seed"},
    {"logprobs", "--logprobs"},
    {"stop_token_ids", "--stop-token-id"},
    {"num_beams", "--num-beams"},
    {"num_beam_groups", "--num-beam-groups"},
    {"diversity_penalty", "--diversity-penalty"},
    {"penalty_alpha", "--penalty-alpha"},
    {"num_return_sequences", "--num-return-sequences"},
    {"length_penalty", "--length-penalty"},
    {"early_stopping", "--early-stopping"},
    {"stop_strings", "--stop-strings"},
    {"max_time", "--max-time"},
    {"best_of", "--best-of"},
};

constexpr std::string_view kSamplingFlags[] = {"--temperature", "--top-k", "--top-p", "--min-p",
                                               "--typical-p"};

// The flag whose field a GenerationConfig::Validate message names ("field 'top_k' ..."),
// or "" when none does.
std::string_view FlagInMessage(std::string_view message) {
  constexpr std::string_view kField = "field '";
  const size_t begin = message.find(kField);
  if (begin == std::string_view::npos) return "";
  const size_t name_begin = begin + kField.size();
  const size_t end = message.find('\'', name_begin);
  if (end == std::string_view::npos) return "";
  const std::string_view field = message.substr(name_begin, end - name_begin);
  for (const auto& [f, flag] : kFieldFlags) {
    if (f == field) return flag;
  }
  return "";
}

// Copies every flag the command line gave onto `c`.
void ApplyGivenFlags(const DecodingFlags& f, GenerationConfig& c) {
  if (f.Given("--do-sample")) c.do_sample = f.do_sample;
  if (f.Given("--temperature")) c.temperature = f.temperature;
  if (f.Given("--top-k")) c.top_k = f.top_k;
  if (f.Given("--top-p")) c.top_p = f.top_p;
  if (f.Given("--min-p")) c.min_p = f.min_p;
  if (f.Given("--typical-p")) c.typical_p = f.typical_p;
  if (f.Given("--repetition-penalty")) c.repetition_penalty = f.repetition_penalty;
  if (f.Given("--frequency-penalty")) c.frequency_penalty = f.frequency_penalty;
  if (f.Given("--presence-penalty")) c.presence_penalty = f.presence_penalty;
  if (f.Given("--no-repeat-ngram-size")) c.no_repeat_ngram_size = f.no_repeat_ngram_size;
  if (f.Given("--min-new-tokens")) c.min_new_tokens = f.min_new_tokens;
  if (f.Given("--seed")) c.seed = f.seed;
  if (f.Given("--logprobs")) c.logprobs = f.logprobs;
  if (f.Given("--stop-token-id")) c.stop_token_ids = f.stop_token_ids;
  if (f.Given("--num-beams")) c.num_beams = f.num_beams;
  if (f.Given("--num-beam-groups")) c.num_beam_groups = f.num_beam_groups;
  if (f.Given("--diversity-penalty")) c.diversity_penalty = f.diversity_penalty;
  if (f.Given("--penalty-alpha")) c.penalty_alpha = f.penalty_alpha;
  if (f.Given("--num-return-sequences")) c.num_return_sequences = f.num_return_sequences;
  if (f.Given("--length-penalty")) c.length_penalty = f.length_penalty;
  if (f.Given("--early-stopping")) {
    c.early_stopping = f.early_stopping == "true"    ? EarlyStopping::kTrue
                       : f.early_stopping == "never" ? EarlyStopping::kNever
                                                     : EarlyStopping::kFalse;
  }
  if (f.Given("--stop-strings")) c.stop_strings = f.stop_strings;
  if (f.Given("--max-time")) c.max_time = f.max_time;
  if (f.Given("--best-of")) c.best_of = f.best_of;
}

}  // namespace

bool DecodingFlags::Given(std::string_view flag) const {
  for (const auto& [name, option] : options) {
    if (name == flag) return option->count() > 0;
  }
  return false;
}

void AddDecodingFlags(CLI::App* app, DecodingFlags* f) {
  constexpr const char* kGroup = "Decoding (transformers GenerationConfig names)";
  auto reg = [&](const char* name, CLI::Option* o) {
    o->group(kGroup);
    f->options.emplace_back(name, o);
    return o;
  };
  reg("--generation-config",
      app->add_option("--generation-config", f->generation_config_file,
                      "generation_config.json to start from; flags override its fields"));
  reg("--do-sample",
      app->add_flag("--do-sample", f->do_sample,
                    "Sample instead of greedy decoding; the warpers below apply only then"));
  reg("--temperature",
      app->add_option("--temperature", f->temperature, "Sampling: divide logits by this (> 0)")
          ->capture_default_str());
  reg("--top-k", app->add_option("--top-k", f->top_k,
                                 "Sampling: keep the K most likely tokens (0 = off; "
                                 "transformers' default 50 applies with --do-sample)")
                     ->capture_default_str());
  reg("--top-p", app->add_option("--top-p", f->top_p,
                                 "Sampling: keep the smallest set with this much probability "
                                 "(nucleus), in (0, 1]")
                     ->capture_default_str());
  reg("--min-p", app->add_option("--min-p", f->min_p,
                                 "Sampling: drop tokens below this fraction of the top "
                                 "probability (0 = off)")
                     ->capture_default_str());
  reg("--typical-p", app->add_option("--typical-p", f->typical_p,
                                     "Sampling: locally typical sampling mass, in (0, 1]")
                         ->capture_default_str());
  reg("--repetition-penalty",
      app->add_option("--repetition-penalty", f->repetition_penalty,
                      "Penalize tokens of the prompt and output (CTRL; 1 = off)")
          ->capture_default_str());
  reg("--frequency-penalty",
      app->add_option("--frequency-penalty", f->frequency_penalty,
                      "OpenAI frequency penalty over generated tokens, in [-2, 2]")
          ->capture_default_str());
  reg("--presence-penalty",
      app->add_option("--presence-penalty", f->presence_penalty,
                      "OpenAI presence penalty over generated tokens, in [-2, 2]")
          ->capture_default_str());
  reg("--no-repeat-ngram-size", app->add_option("--no-repeat-ngram-size", f->no_repeat_ngram_size,
                                                "Never repeat an n-gram of this size (0 = off)")
                                    ->capture_default_str());
  reg("--min-new-tokens",
      app->add_option("--min-new-tokens", f->min_new_tokens,
                      "EOS and stop tokens are suppressed until this many tokens")
          ->capture_default_str());
  CLI::Option* max_new =
      reg("--max-new-tokens",
          app->add_option("--max-new-tokens", f->max_new_tokens,
                          "Most tokens to generate (default 128, or the --generation-config "
                          "file's max_new_tokens / max_length)"));
  CLI::Option* max_tokens = reg("--max-tokens", app->add_option("--max-tokens", f->max_new_tokens,
                                                                "Alias of --max-new-tokens"));
  max_new->excludes(max_tokens);
  reg("--seed", app->add_option("--seed", f->seed,
                                "Sampling seed: the same seed gives the same text (default: "
                                "random, reported with --json)")
                    ->check(CLI::NonNegativeNumber));
  reg("--logprobs",
      app->add_option("--logprobs", f->logprobs,
                      "With --json: also the N most likely alternatives of each token, N in "
                      "[0, 20]"));
  reg("--stop-token-id", app->add_option("--stop-token-id", f->stop_token_ids,
                                         "A further token id that ends generation (repeatable)")
                             ->allow_extra_args(false));
  reg("--stop-strings",
      app->add_option("--stop-strings", f->stop_strings,
                      "Text that ends generation, not itself returned (repeatable; at most 16)")
          ->allow_extra_args(false));
  reg("--max-time", app->add_option("--max-time", f->max_time,
                                    "Seconds after which generation ends with what it has "
                                    "(finish_reason \"deadline\")"));
  reg("--num-beams",
      app->add_option("--num-beams", f->num_beams, "Beam search with this many beams (> 1)"));
  reg("--num-beam-groups",
      app->add_option("--num-beam-groups", f->num_beam_groups,
                      "Diverse beam search: groups the beams split into (must divide "
                      "--num-beams)"));
  reg("--diversity-penalty",
      app->add_option("--diversity-penalty", f->diversity_penalty,
                      "Diverse beam search: subtracted per earlier group's choice of a token"));
  reg("--penalty-alpha",
      app->add_option("--penalty-alpha", f->penalty_alpha,
                      "Contrastive search weight of the degeneration penalty (> 0, with "
                      "--top-k > 1 and no sampling)"));
  reg("--length-penalty",
      app->add_option("--length-penalty", f->length_penalty,
                      "Beam search: score = sum logprob / length^length_penalty"));
  reg("--early-stopping", app->add_option("--early-stopping", f->early_stopping,
                                          "Beam search stop rule: true, false (heuristic) or never")
                              ->check(CLI::IsMember({"true", "false", "never"})));
  reg("--num-return-sequences",
      app->add_option("--num-return-sequences", f->num_return_sequences,
                      "Sequences returned: beams kept, or samples drawn with --do-sample"));
  reg("--best-of", app->add_option("--best-of", f->best_of,
                                   "With --do-sample: draw this many samples and return the "
                                   "--num-return-sequences with the highest cumulative logprob"));
}

absl::Status AttributeToFlag(const DecodingFlags& f, const absl::Status& status) {
  const std::string message(status.message());
  const std::string_view flag = FlagInMessage(message);
  std::string source;
  if (!flag.empty() && (f.Given(flag) || f.generation_config_file.empty())) {
    source = std::string(flag);
  } else if (!f.generation_config_file.empty()) {
    source = f.generation_config_file;
  }
  if (source.empty()) return status;
  return absl::Status(status.code(), absl::StrFormat("%s: %s", source, message));
}

int64_t DecodingSettings::MaxNewTokens(int64_t prompt_tokens) const {
  if (max_new_tokens_flag.has_value()) return *max_new_tokens_flag;
  if (config.max_new_tokens.has_value()) return *config.max_new_tokens;
  if (config.max_length.has_value())
    return std::max<int64_t>(0, *config.max_length - prompt_tokens);
  return kDefaultMaxNewTokens;
}

absl::StatusOr<DecodingSettings> ResolveDecodingFlags(const DecodingFlags& f) {
  DecodingSettings s;
  if (!f.generation_config_file.empty()) {
    ASSIGN_OR_RETURN(s.config, GenerationConfigFromJsonFile(f.generation_config_file));
  }
  for (const char* flag : {"--max-new-tokens", "--max-tokens"}) {
    if (!f.Given(flag)) continue;
    if (f.max_new_tokens < 0) {
      return absl::InvalidArgumentError(absl::StrFormat("%s must be >= 0", flag));
    }
    s.max_new_tokens_flag = f.max_new_tokens;
    // 0 generates nothing; GenerationConfig has no way to say so, and needs none.
    s.config.max_new_tokens =
        f.max_new_tokens > 0 ? std::optional<int64_t>(f.max_new_tokens) : std::nullopt;
  }
  ApplyGivenFlags(f, s.config);
  if (absl::Status v = s.config.Validate(); !v.ok()) return AttributeToFlag(f, v);
  const GenerationConfig& c = s.config;
  if (!c.do_sample) {
    for (std::string_view flag : kSamplingFlags) {
      if (flag == "--top-k" && c.IsContrastiveSearch()) continue;  // its candidate count
      if (f.Given(flag)) {
        s.warnings.push_back(
            absl::StrFormat("%s has no effect without --do-sample (decoding is greedy)", flag));
      }
    }
  }
  return s;
}

}  // namespace tessera
