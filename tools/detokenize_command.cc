// `tessera detokenize`: token ids -> text with a model's tokenizer, from --ids "1 2 3" or a
// JSON-lines stream on stdin ({"ids": [...]} -> {"text": ...}, in order).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/model_session.h"

namespace tessera {
namespace {

struct DetokenizeOptions {
  std::string model;
  std::string ids;
  bool jsonl = false;
  bool skip_special = false;
};

// Parses whitespace- or comma-separated integers.
bool ParseIds(const std::string& text, std::vector<int32_t>* ids, std::string* error) {
  for (absl::string_view piece : absl::StrSplit(text, absl::ByAnyChar(" \t,"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      *error = absl::StrCat("--ids: '", piece, "' is not an integer token id");
      return false;
    }
    ids->push_back(id);
  }
  return true;
}

int RunDetokenize(const DetokenizeOptions& o, CLI::App* app) {
  constexpr std::string_view kName = "detokenize";
  const bool has_ids = app->count("--ids") > 0;
  if (has_ids == o.jsonl) return Fail(kName, "give exactly one of --ids or --jsonl", kExitUsage);
  std::vector<int32_t> ids;
  std::string error;
  if (has_ids && !ParseIds(o.ids, &ids, &error)) return Fail(kName, error, kExitUsage);
  auto handle = LoadTokenizer(o.model);
  if (!handle.ok()) return FailStatus(kName, handle.status());
  const Tokenizer& tok = *handle->tokenizer;

  if (has_ids) {
    auto text = tok.Decode(ids, o.skip_special);
    if (!text.ok()) return FailStatus(kName, text.status());
    std::cout << *text << "\n";
    return kExitOk;
  }
  std::string line;
  int64_t line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json in = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool valid = !in.is_discarded() && in.is_object() && in.contains("ids") && in["ids"].is_array();
    std::vector<int32_t> line_ids;
    if (valid) {
      for (const nlohmann::json& v : in["ids"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN ||
            v.get<int64_t>() > INT32_MAX) {
          valid = false;
          break;
        }
        line_ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    }
    if (!valid) {
      return Fail(kName,
                  absl::StrCat("stdin line ", line_number,
                               ": expected a JSON object with an integer array \"ids\""),
                  kExitUsage);
    }
    auto text = tok.Decode(line_ids, o.skip_special);
    if (!text.ok()) {
      return Fail(kName, absl::StrCat("stdin line ", line_number, ": ", text.status().message()),
                  ExitCodeFor(text.status()));
    }
    // Invalid UTF-8 (a split multi-byte character) is replaced rather than failing.
    std::cout << nlohmann::json{{"text", *text}}.dump(-1, ' ', false,
                                                      nlohmann::json::error_handler_t::replace)
              << "\n";
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace

Command AddDetokenizeCommand(CLI::App& root) {
  auto o = std::make_shared<DetokenizeOptions>();
  CLI::App* app = root.add_subcommand("detokenize", "Print the text of token ids");
  app->add_option("--model", o->model,
                  "GGUF model file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (the synthetic "
                  "vocabulary of that shape; nothing is written)")
      ->required();
  app->add_option("--ids", o->ids, "Token ids, separated by spaces or commas");
  app->add_flag("--jsonl", o->jsonl,
                "Read {\"ids\": [...]} lines on stdin, write {\"text\": ...} lines");
  app->add_flag("--skip-special", o->skip_special, "Leave special tokens out of the text");
  return {app, [o, app] { return RunDetokenize(*o, app); }};
}

}  // namespace tessera
