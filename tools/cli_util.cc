#include "tools/cli_util.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "formats/model_locator.h"

namespace tessera {

int Fail(std::string_view command, const std::string& message, int exit_code) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(stderr, "tessera %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               line.c_str());
  return exit_code;
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
      return 2;
    default:
      return 1;
  }
}

int FailStatus(std::string_view command, const absl::Status& status) {
  return Fail(command, std::string(status.message()), ExitCodeFor(status));
}

absl::Status WithCode(const absl::Status& status, absl::StatusCode code) {
  if (status.ok()) return status;
  return absl::Status(code, status.message());
}

std::string DefaultServedModelName(const std::string& model) {
  std::string name = model;
  if (size_t slash = name.find_last_of('/'); slash != std::string::npos) {
    name = name.substr(slash + 1);
  }
  constexpr std::string_view kSuffix = ".gguf";
  if (name.size() > kSuffix.size() && name.ends_with(kSuffix)) {
    name.resize(name.size() - kSuffix.size());
  }
  return name;
}

absl::StatusOr<std::string> ReadFlagFile(const std::string& path, std::string_view flag) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot read %s", flag, path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::string> ReadAuthTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFlagFile(path, "--auth-token-file"));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("--auth-token-file: %s is empty", path));
  }
  return token;
}

}  // namespace tessera
