// `tessera launch`: the multi-process mode on one machine. Starts tessera-coordinator and
// --replicas mpirun jobs of tessera-worker (tp x pp ranks each) that register with it,
// then supervises them: SIGINT / SIGTERM drain the coordinator (the replicas leave when it
// closes their streams); a replica job that dies is reported and the others keep serving;
// when the coordinator or every replica is gone, the rest is stopped and launch exits 1.
// On a cluster, run the same two programs yourself (README: Serving over gRPC).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tools/backend_flags.h"
#include "tools/cli_util.h"
#include "tools/command.h"
#include "tools/local_gpu.h"
#include "tools/stop_signals.h"

extern char** environ;

namespace tessera {
namespace {

constexpr std::string_view kName = "launch";

struct LaunchOptions {
  std::string model = "default";
  int tp = 1;
  int pp = 1;
  int replicas = 1;
  std::string host = "127.0.0.1";
  int port = 50051;
  std::string port_file;
  int http_port = 8000;  // -1: none
  std::string http_port_file;
  int threads = 0;
  int64_t kv_cache_mb = 512;
  std::string kv_cache_dtype = "f32";
  bool deterministic = false;
  bool no_pack_weights = false;
  bool fp8_weights = false;
  bool enforce_eager = false;
  std::string backend = "cpu";
  double gpu_memory_utilization = 0.0;  // > 0: forwarded (cuda)
  std::string auth_token_file;
  std::string mpirun = "mpirun";
  double stop_timeout_s = 60.0;
};

// The directory this binary lives in: tessera-coordinator and tessera-worker sit beside it.
std::string BinaryDir() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string(".") : self.parent_path().string();
}

// Starts `argv` with `extra_env` added; -1 on failure (errno set).
pid_t Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings(extra_env);
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  std::vector<char*> env;
  for (const std::string& e : env_strings) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);
  // The children must see SIGINT / SIGTERM unblocked (StopSignals blocked them here).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0].c_str(), nullptr, &attr, args.data(), env.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

// Exit status of a child that ended (or -1 while it runs).
int Reap(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// SIGTERM to every child still running, then SIGKILL after `timeout`.
void StopAll(std::vector<pid_t>& running, absl::Duration timeout) {
  for (pid_t p : running) kill(p, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  while (!running.empty() && absl::Now() < deadline) {
    std::erase_if(running, [](pid_t p) { return Reap(p) >= 0; });
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (pid_t p : running) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  running.clear();
}

int RunLaunch(const LaunchOptions& o) {
  if (o.gpu_memory_utilization > 0.0 && o.backend != "cuda") {
    return Fail(kName, "--gpu-memory-utilization needs --backend cuda", kExitUsage);
  }
  if (o.fp8_weights && o.backend != "cuda") {
    return Fail(kName, "--quantization fp8 needs --backend cuda", kExitUsage);
  }
  StopSignals signals;  // before any child or thread starts
  const std::string dir = BinaryDir();
  const std::string port_file =
      o.port_file.empty() ? absl::StrCat("/tmp/tessera_launch_", getpid(), ".port") : o.port_file;
  std::filesystem::remove(port_file);
  std::vector<std::string> coordinator_argv = {dir + "/tessera-coordinator",
                                               "--model",
                                               o.model,
                                               "--host",
                                               o.host,
                                               "--port",
                                               std::to_string(o.port),
                                               "--port-file",
                                               port_file,
                                               "--http-port",
                                               std::to_string(o.http_port)};
  if (!o.http_port_file.empty()) {
    coordinator_argv.insert(coordinator_argv.end(), {"--http-port-file", o.http_port_file});
  }
  if (!o.auth_token_file.empty()) {
    coordinator_argv.insert(coordinator_argv.end(), {"--auth-token-file", o.auth_token_file});
  }
  const pid_t coordinator = Spawn(coordinator_argv, {});
  if (coordinator < 0) {
    return Fail(kName, absl::StrCat("cannot start ", coordinator_argv[0], ": ", strerror(errno)),
                kExitFailure);
  }
  std::vector<pid_t> running = {coordinator};
  // Wait for the coordinator to listen.
  std::string port;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(120); absl::Now() < deadline;) {
    if (std::ifstream in(port_file); in && (in >> port)) break;
    if (Reap(coordinator) >= 0) {
      running.clear();
      return Fail(kName, "tessera-coordinator exited before it listened", kExitFailure);
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (port.empty()) {
    StopAll(running, absl::Seconds(5));
    return Fail(kName, "tessera-coordinator did not listen within 120 s", kExitFailure);
  }
  const std::string target = absl::StrCat(o.host == "0.0.0.0" ? "127.0.0.1" : o.host, ":", port);

  // mpirun refuses root unless told; a launcher on one machine is often run as root in
  // containers, so say so for it.
  std::vector<std::string> root_env;
  if (geteuid() == 0) {
    root_env = {"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"};
  }
  std::vector<pid_t> replicas;
  for (int r = 0; r < o.replicas; ++r) {
    std::vector<std::string> env = root_env;
    if (o.backend == "cuda") {
      // One GPU per rank: each replica gets its own share (tools/local_gpu.h), which its ranks
      // index by local rank.
      const std::optional<std::string> gpus =
          ReplicaGpus(std::getenv("CUDA_VISIBLE_DEVICES"), r, o.tp * o.pp);
      if (!gpus.has_value()) {
        StopAll(running, absl::Seconds(o.stop_timeout_s));
        return Fail(kName,
                    absl::StrCat("CUDA_VISIBLE_DEVICES lists too few GPUs for ", o.replicas,
                                 " replicas of ", o.tp * o.pp, " ranks (one GPU per rank)"),
                    kExitUsage);
      }
      env.push_back("CUDA_VISIBLE_DEVICES=" + *gpus);
    }
    std::vector<std::string> argv = {o.mpirun,
                                     "--oversubscribe",
                                     "-np",
                                     std::to_string(o.tp * o.pp),
                                     dir + "/tessera-worker",
                                     "--model",
                                     o.model,
                                     "--tp",
                                     std::to_string(o.tp),
                                     "--pp",
                                     std::to_string(o.pp),
                                     "--threads",
                                     std::to_string(o.threads),
                                     "--kv-cache-dtype",
                                     o.kv_cache_dtype,
                                     "--backend",
                                     o.backend,
                                     "--coordinator",
                                     target};
    if (o.gpu_memory_utilization > 0.0) {
      argv.insert(argv.end(),
                  {"--gpu-memory-utilization", absl::StrCat(o.gpu_memory_utilization)});
    } else {
      argv.insert(argv.end(), {"--kv-cache-mb", std::to_string(o.kv_cache_mb)});
    }
    if (o.deterministic) argv.push_back("--deterministic");
    if (o.no_pack_weights) argv.push_back("--no-pack-weights");
    if (o.fp8_weights) argv.insert(argv.end(), {"--quantization", "fp8"});
    if (o.enforce_eager) argv.push_back("--enforce-eager");
    if (!o.auth_token_file.empty()) {
      argv.insert(argv.end(), {"--auth-token-file", o.auth_token_file});
    }
    const pid_t pid = Spawn(argv, env);
    if (pid < 0) {
      StopAll(running, absl::Seconds(o.stop_timeout_s));
      return Fail(kName, absl::StrCat("cannot start ", o.mpirun, ": ", strerror(errno)),
                  kExitFailure);
    }
    replicas.push_back(pid);
    running.push_back(pid);
  }
  std::fprintf(stderr,
               "tessera launch: coordinator on %s, %d replica(s) of tp %d x pp %d starting; "
               "Ctrl-C stops\n",
               target.c_str(), o.replicas, o.tp, o.pp);

  // Supervise until a stop signal, the coordinator's end, or the last replica's.
  int exit_code = kExitOk;
  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    const int signal = sigtimedwait(&set, nullptr, &tick);
    if (signal > 0) {
      std::fprintf(stderr, "tessera launch: %s, draining\n", StopSignals::Name(signal));
      break;
    }
    if (int code = Reap(coordinator); code >= 0) {
      std::erase(running, coordinator);
      std::fprintf(stderr, "tessera launch: the coordinator exited (%d)\n", code);
      exit_code = kExitFailure;
      break;
    }
    for (pid_t p : std::vector<pid_t>(replicas)) {
      if (int code = Reap(p); code >= 0) {
        std::erase(replicas, p);
        std::erase(running, p);
        std::fprintf(stderr, "tessera launch: a replica job exited (%d); %zu left\n", code,
                     replicas.size());
      }
    }
    if (replicas.empty()) {
      exit_code = kExitFailure;
      break;
    }
  }
  // The coordinator first: it drains, then closes the replicas' streams, and they leave.
  if (std::find(running.begin(), running.end(), coordinator) != running.end()) {
    kill(coordinator, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(o.stop_timeout_s);
  while (!running.empty() && absl::Now() < deadline) {
    std::erase_if(running, [](pid_t p) { return Reap(p) >= 0; });
    absl::SleepFor(absl::Milliseconds(50));
  }
  StopAll(running, absl::Seconds(5));
  if (o.port_file.empty()) std::filesystem::remove(port_file);
  (void)signals;
  return exit_code;
}

}  // namespace

Command AddLaunchCommand(CLI::App& root) {
  auto o = std::make_shared<LaunchOptions>();
  CLI::App* app = root.add_subcommand(
      "launch",
      "Start tessera-coordinator and mpirun jobs of tessera-worker on this machine, and "
      "supervise them (Ctrl-C drains and stops all)");
  app->add_option("--model", o->model, "GGUF model file, or 'default'")->capture_default_str();
  app->add_option("--tp", o->tp, "Tensor-parallel ranks per replica")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--pp", o->pp, "Pipeline stages per replica")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--replicas", o->replicas, "mpirun jobs (replicas of the model)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app->add_option("--host", o->host, "Address the coordinator listens on")->capture_default_str();
  app->add_option("--port", o->port, "Coordinator port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app->add_option("--port-file", o->port_file, "Write the coordinator's port to this file");
  app->add_option("--http-port", o->http_port,
                  "Coordinator's OpenAI-compatible HTTP and /metrics port (0: any free port, "
                  "-1: none)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  app->add_option("--http-port-file", o->http_port_file,
                  "Write the coordinator's HTTP port to this file");
  app->add_option("--threads", o->threads, "CPU threads per rank (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI::Option* mb = app->add_option("--kv-cache-mb", o->kv_cache_mb, "KV cache MiB per replica")
                        ->capture_default_str()
                        ->check(CLI::PositiveNumber);
  app->add_option("--backend", o->backend,
                  "Kernel backend of the replicas: cpu, cpu-reference, or cuda (one GPU per "
                  "rank; experimental: needs TESSERA_EXPERIMENTAL_CUDA=1)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cpu-reference", "cuda"}));
  app->add_option("--gpu-memory-utilization", o->gpu_memory_utilization,
                  "With --backend cuda: fraction (0, 1] of each GPU the rank may fill; the "
                  "KV cache takes what the weights leave (instead of --kv-cache-mb)")
      ->check(CLI::PositiveNumber)
      ->check(CLI::Range(0.0, 1.0))
      ->excludes(mb);
  app->add_option("--kv-cache-dtype", o->kv_cache_dtype,
                  "KV cache element type of every replica: f32, or f16 (half the memory)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16"}));
  app->add_flag("--deterministic", o->deterministic,
                "replicas use batch-invariant kernels (tessera-worker --deterministic)");
  app->add_flag("--no-pack-weights", o->no_pack_weights,
                "replicas keep the file's weight layout (tessera-worker --no-pack-weights)");
  AddQuantizationFlag(app, &o->fp8_weights);
  app->add_flag("--enforce-eager", o->enforce_eager,
                "replicas launch decode steps kernel by kernel, without CUDA graphs "
                "(tessera-worker --enforce-eager)");
  app->add_option("--auth-token-file", o->auth_token_file,
                  "Bearer token file for the coordinator (and its replicas)");
  app->add_option("--mpirun", o->mpirun, "The mpirun to use")->capture_default_str();
  app->add_option("--stop-timeout", o->stop_timeout_s,
                  "Seconds to wait for everything to stop before killing it")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  return {app, [o] { return RunLaunch(*o); }};
}

}  // namespace tessera
