// tessera-coordinator: the gRPC front end alone (DESIGN.md §1). It serves each --model by
// name with that model's tokenizer and chat template (read from the GGUF file; no weights
// are loaded), and routes requests to the replicas whose leaders register with it:
//   tessera-coordinator --model default --port 50051
//   mpirun -np 4 tessera-worker --model default --tp 2 --pp 2 --coordinator HOST:50051
// Health for a model is SERVING while it has a ready replica. SIGINT / SIGTERM stop it
// after letting calls in flight finish (--drain-timeout).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "formats/model_locator.h"
#include "formats/weight_store.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/decoding_flags.h"
#include "tools/random_model_spec.h"
#include "tools/served_model.h"
#include "tools/server_flags.h"
#include "tools/stop_signals.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "coordinator";

struct CoordinatorOptions {
  std::vector<std::string> models = {"default"};
  ServerFlags server;
  int64_t default_max_new_tokens = kDefaultMaxNewTokens;
  double drain_timeout_s = 30.0;
  double heartbeat_timeout_s = 10.0;
};

// "[NAME=]PATH": the model's text side (tokenizer, chat template, shapes) and its limits.
absl::StatusOr<ServedModelSpec> LoadModelSpec(const std::string& argument,
                                              int64_t default_max_new_tokens) {
  std::string name;
  std::string model = argument;
  if (size_t eq = argument.find('='); eq != std::string::npos) {
    name = argument.substr(0, eq);
    model = argument.substr(eq + 1);
  }
  if (name.empty()) name = DefaultServedModelName(model);
  if (IsRandomModel(model)) {
    return ServedModelSpecForRandomModel(model, {.name = name,
                                                 .chat_template_file = "",
                                                 .default_max_new_tokens = default_max_new_tokens,
                                                 .tokenizer = nullptr});
  }
  ASSIGN_OR_RETURN(const std::string path, ResolveModelPath(model));
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> store, OpenWeightStore(path));
  return ServedModelSpecFromStore(*store, {.name = name,
                                           .chat_template_file = "",
                                           .default_max_new_tokens = default_max_new_tokens,
                                           .tokenizer = nullptr});
}

int Run(const CoordinatorOptions& o) {
  StopSignals signals;  // before any thread starts
  absl::StatusOr<CoordinatorServerOptions> server_options = ServerOptionsFromFlags(o.server);
  if (!server_options.ok()) {
    return Fail(kName, std::string(server_options.status().message()), kExitUsage);
  }
  server_options->heartbeat_timeout = absl::Seconds(o.heartbeat_timeout_s);
  ModelRegistry registry;
  for (const std::string& m : o.models) {
    auto spec = LoadModelSpec(m, o.default_max_new_tokens);
    if (!spec.ok()) return FailStatus(kName, spec.status());
    auto added = registry.Add(*std::move(spec));
    if (!added.ok()) return Fail(kName, std::string(added.status().message()), kExitUsage);
    std::fprintf(stderr, "tessera coordinator: serving model '%s' (waiting for replicas)\n",
                 (*added)->name().c_str());
  }
  auto server = CoordinatorServer::Start(&registry, *server_options);
  if (!server.ok()) return FailStatus(kName, server.status());
  AnnounceServer(kName, o.server, *server_options, **server);
  const int signal = signals.Wait();
  std::fprintf(stderr, "tessera coordinator: %s, stopping\n", StopSignals::Name(signal));
  (*server)->Shutdown(absl::Seconds(o.drain_timeout_s));
  return kExitOk;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  auto o = std::make_shared<tessera::CoordinatorOptions>();
  CLI::App app{
      "The Tessera coordinator: tessera.v1.Inference over gRPC for replicas that register "
      "with it (mpirun ... tessera-worker --coordinator HOST:PORT)",
      "tessera-coordinator"};
  app.add_option("--model", o->models,
                 "[NAME=]PATH of a model to serve (repeatable; 'default' for the default "
                 "model; random:SHAPE[:DTYPE[:LAYERS]] for the random-weight model workers "
                 "started with that --model synthesize; NAME defaults to the file's stem)")
      ->capture_default_str();
  AddServerFlags(app, &o->server);
  app.add_option("--default-max-new-tokens", o->default_max_new_tokens,
                 "max_new_tokens of a request that sets no length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--drain-timeout", o->drain_timeout_s,
                 "Seconds calls in flight get to finish after SIGTERM")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--heartbeat-timeout", o->heartbeat_timeout_s,
                 "Seconds without a heartbeat after which a replica is lost")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tessera-coordinator: %s (see tessera-coordinator --help)\n", e.what());
    return tessera::kExitUsage;
  }
  return tessera::Run(*o);
}
