// The `tessera` subcommands. Each Add*Command registers its options on `root` and returns a
// runner to call when that subcommand was parsed; the runner returns the process exit code:
// 0 success, 1 runtime failure (e.g. an invalid model file), 2 bad arguments or unusable
// input (one line on stderr).
#pragma once

#include <functional>

#include "CLI/CLI.hpp"

namespace tessera {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

Command AddGenerateCommand(CLI::App& root);
Command AddTokenizeCommand(CLI::App& root);
Command AddDetokenizeCommand(CLI::App& root);
Command AddInspectCommand(CLI::App& root);
Command AddServeCommand(CLI::App& root);
Command AddLaunchCommand(CLI::App& root);
Command AddSynthesizeCommand(CLI::App& root);
Command AddDevicesCommand(CLI::App& root);

}  // namespace tessera
