// Helpers shared by the `tessera` subcommands and tessera-coordinator: error printing with
// exit codes, served model names, flag files.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera {

// Prints "tessera <command>: <message>" on one line of stderr and returns `exit_code`.
int Fail(std::string_view command, const std::string& message, int exit_code);
// Same for a status: INVALID_ARGUMENT / NOT_FOUND / OUT_OF_RANGE are the user's input
// (exit 2), anything else is a runtime failure (exit 1).
int FailStatus(std::string_view command, const absl::Status& status);
// Exit code FailStatus would use.
int ExitCodeFor(const absl::Status& status);

// The same status with a different code (kept message). Used to mark a bad model file as a
// runtime failure (exit 1) rather than bad arguments.
absl::Status WithCode(const absl::Status& status, absl::StatusCode code);

// The name a model is served under when none is given: "default" for the default model,
// else the file's name without its directory and ".gguf" (the coordinator and the workers
// that register with it must agree on it).
std::string DefaultServedModelName(const std::string& model);

// The contents of the file a flag names; NOT_FOUND "<flag>: cannot read <path>".
absl::StatusOr<std::string> ReadFlagFile(const std::string& path, std::string_view flag);
// An --auth-token-file's bearer token, surrounding whitespace removed; INVALID_ARGUMENT when
// nothing is left.
absl::StatusOr<std::string> ReadAuthTokenFile(const std::string& path);

}  // namespace tessera
