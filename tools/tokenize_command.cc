// `tessera tokenize`: text -> token ids with a model's tokenizer, one text (--text) or a
// JSON-lines stream on stdin ({"text": ...} -> {"ids": [...]}, in order).
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/model_session.h"

namespace tessera {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string text;
  bool jsonl = false;
  bool no_bos = false;
};

int RunTokenize(const TokenizeOptions& o, CLI::App* app) {
  constexpr std::string_view kName = "tokenize";
  const bool has_text = app->count("--text") > 0;
  if (has_text == o.jsonl) return Fail(kName, "give exactly one of --text or --jsonl", kExitUsage);
  auto handle = LoadTokenizer(o.model);
  if (!handle.ok()) return FailStatus(kName, handle.status());
  const Tokenizer& tok = *handle->tokenizer;
  EncodeOptions options;
  options.add_bos = !o.no_bos;

  if (has_text) {
    auto ids = tok.Encode(o.text, options);
    if (!ids.ok()) return FailStatus(kName, ids.status());
    std::cout << absl::StrJoin(*ids, " ") << "\n";
    return kExitOk;
  }
  std::string line;
  int64_t line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
    const nlohmann::json in = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (in.is_discarded() || !in.is_object() || !in.contains("text") || !in["text"].is_string()) {
      return Fail(kName,
                  absl::StrCat("stdin line ", line_number,
                               ": expected a JSON object with a string \"text\""),
                  kExitUsage);
    }
    auto ids = tok.Encode(in["text"].get<std::string>(), options);
    if (!ids.ok()) {
      return Fail(kName, absl::StrCat("stdin line ", line_number, ": ", ids.status().message()),
                  ExitCodeFor(ids.status()));
    }
    std::cout << nlohmann::json{{"ids", *ids}}.dump() << "\n";
  }
  std::cout.flush();
  return kExitOk;
}

}  // namespace

Command AddTokenizeCommand(CLI::App& root) {
  auto o = std::make_shared<TokenizeOptions>();
  CLI::App* app = root.add_subcommand("tokenize", "Print the token ids of a text");
  app->add_option("--model", o->model,
                  "GGUF model file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (the synthetic "
                  "vocabulary of that shape; nothing is written)")
      ->required();
  app->add_option("--text", o->text, "Text to tokenize");
  app->add_flag("--jsonl", o->jsonl,
                "Read {\"text\": ...} lines on stdin, write {\"ids\": [...]} lines");
  app->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token");
  return {app, [o, app] { return RunTokenize(*o, app); }};
}

}  // namespace tessera
