// `tessera`: the command-line entry point. Subcommands live in one file each
// (*_command.cc); this file only parses and dispatches, mapping CLI11 errors to exit code 2
// and --help to 0.
#include <cstdio>
#include <vector>

#include "CLI/CLI.hpp"
#include "tools/command.h"

int main(int argc, char** argv) {
  CLI::App app{"Tessera: Llama-family LLM inference", "tessera"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tessera 0.1.0");
  std::vector<tessera::Command> commands = {
      tessera::AddGenerateCommand(app),   tessera::AddTokenizeCommand(app),
      tessera::AddDetokenizeCommand(app), tessera::AddInspectCommand(app),
      tessera::AddServeCommand(app),      tessera::AddLaunchCommand(app),
      tessera::AddSynthesizeCommand(app), tessera::AddDevicesCommand(app),
  };
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const tessera::Command& c : commands) known |= c.app->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr,
                   "tessera: unknown command '%s' (commands: generate, serve, launch, "
                   "tokenize, detokenize, inspect, synthesize, devices)\n",
                   argv[1]);
      return tessera::kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tessera: %s (see tessera --help)\n", e.what());
    return tessera::kExitUsage;
  }
  for (const tessera::Command& c : commands) {
    if (c.app->parsed()) return c.run();
  }
  return tessera::kExitUsage;  // unreachable: require_subcommand(1)
}
