// `tessera serve`: the embedded mode of DESIGN.md §1. One process runs the coordinator's
// gRPC server and a one-rank replica of the model (worker/engine_loop.h), with no MPI.
// SIGINT / SIGTERM drain it: no new requests are admitted, those in flight finish (up to
// --drain-timeout), then the server stops.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "tools/backend_flags.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/decoding_flags.h"
#include "tools/engine_flags.h"
#include "tools/model_session.h"
#include "tools/served_model.h"
#include "tools/server_flags.h"
#include "tools/stop_signals.h"
#include "worker/batch_runner.h"
#include "worker/engine_loop.h"

namespace tessera {
namespace {

constexpr std::string_view kName = "serve";

struct ServeOptions {
  std::string model = "default";
  std::string served_model_name;
  std::string backend = "cpu";
  int threads = 0;
  bool deterministic = false;
  bool no_pack_weights = false;  // BackendOptions::pack_weights off
  bool fp8_weights = false;      // --quantization fp8
  std::string chat_template_file;
  ServerFlags server;
  int64_t default_max_new_tokens = kDefaultMaxNewTokens;
  double drain_timeout_s = 30.0;
  EngineFlags engine;
};

// The name clients use: the flag, else DefaultServedModelName.
std::string ServedName(const ServeOptions& o) {
  return o.served_model_name.empty() ? DefaultServedModelName(o.model) : o.served_model_name;
}

int RunServe(const ServeOptions& o) {
  StopSignals signals;  // before any thread starts
  absl::StatusOr<CoordinatorServerOptions> server_options = ServerOptionsFromFlags(o.server);
  if (!server_options.ok()) {
    return Fail(kName, std::string(server_options.status().message()), kExitUsage);
  }

  ModelSession session;
  if (int code = OpenModelSession(kName,
                                  {.model = o.model,
                                   .backend = o.backend,
                                   .threads = o.threads,
                                   .deterministic = o.deterministic,
                                   .pack_weights = !o.no_pack_weights,
                                   .fp8_weights = o.fp8_weights},
                                  &session);
      code != kExitOk) {
    return code;
  }
  const int64_t context = session.model->config().max_position_embeddings;

  std::shared_ptr<const Tokenizer> tokenizer(std::move(session.tokenizer));
  auto spec =
      ServedModelSpecFromStore(*session.store, {.name = ServedName(o),
                                                .chat_template_file = o.chat_template_file,
                                                .default_max_new_tokens = o.default_max_new_tokens,
                                                .tokenizer = tokenizer});
  if (!spec.ok()) return FailStatus(kName, spec.status());

  BatchRunnerOptions runner_options = EngineRunnerOptions(o.engine, context);
  auto runner = BatchRunner::Create(session.model.get(), runner_options);
  if (!runner.ok()) return FailStatus(kName, runner.status());
  std::fprintf(stderr, "%s\n", (*runner)->StartupReport().c_str());
  auto engine = EngineLoop::Start(*std::move(runner), tokenizer.get());
  if (!engine.ok()) return FailStatus(kName, engine.status());
  std::shared_ptr<EngineLoop> replica(*std::move(engine));

  ModelRegistry registry;
  auto model = registry.Add(*std::move(spec));
  if (!model.ok()) return FailStatus(kName, model.status());
  (*model)->AddReplica(replica);

  auto server = CoordinatorServer::Start(&registry, *server_options);
  if (!server.ok()) {
    const int code = server.status().code() == absl::StatusCode::kUnavailable
                         ? kExitFailure
                         : ExitCodeFor(server.status());
    return Fail(kName, std::string(server.status().message()), code);
  }
  std::fprintf(stderr, "tessera serve: serving model '%s'\n", (*model)->name().c_str());
  AnnounceServer(kName, o.server, *server_options, **server);

  const int signal = signals.Wait();
  std::fprintf(stderr, "tessera serve: %s, draining\n", StopSignals::Name(signal));
  const absl::Duration grace = absl::Seconds(o.drain_timeout_s);
  replica->Drain();
  (*server)->UpdateHealth();
  const bool idle = replica->WaitIdle(grace);
  (*server)->Shutdown(idle ? absl::Seconds(1) : absl::ZeroDuration());
  std::fprintf(stderr, "tessera serve: %s\n",
               idle ? "drained, stopped" : "drain timed out; requests still running were ended");
  return kExitOk;
}

}  // namespace

Command AddServeCommand(CLI::App& root) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* app = root.add_subcommand(
      "serve",
      "Serve a model over gRPC (tessera.v1.Inference, health, reflection): the coordinator "
      "and a one-rank worker in this process");
  app->add_option("--model", o->model,
                  "GGUF model file, 'default', or random:SHAPE[:DTYPE[:LAYERS]] (random weights, "
                  "see tessera synthesize --list)")
      ->capture_default_str();
  app->add_option("--served-model-name", o->served_model_name,
                  "Name clients use in 'model' (default: 'default' or the file's stem)");
  AddServerFlags(*app, &o->server);
  app->add_option("--default-max-new-tokens", o->default_max_new_tokens,
                  "max_new_tokens of a request that sets no length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--drain-timeout", o->drain_timeout_s,
                  "Seconds SIGTERM waits for requests in flight before stopping")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--chat-template", o->chat_template_file,
                  "File with a chat format name or a Jinja chat template (default: the "
                  "model's own)");
  app->add_flag("--no-pack-weights", o->no_pack_weights,
                "Keep the weights in the GGUF file's layout, read straight from the mapping, "
                "instead of repacking Q4_0/Q4_1/Q8_0 matrices for the CPU's interleaved GEMM "
                "(faster load, slower prefill and decode)");
  AddQuantizationFlag(app, &o->fp8_weights);
  app->add_flag("--deterministic", o->deterministic,
                "Batch-invariant kernels: a request's tokens do not depend on what it is "
                "batched with");
  app->add_option("--threads", o->threads, "CPU threads (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--backend", o->backend,
                  "Kernel backend: cpu, cpu-reference, or cuda (experimental: needs "
                  "TESSERA_EXPERIMENTAL_CUDA=1 until verified on a GPU)")
      ->capture_default_str();
  AddEngineFlags(app, &o->engine);
  return {app, [o] { return RunServe(*o); }};
}

}  // namespace tessera
