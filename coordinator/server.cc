#include "coordinator/server.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace tessera {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot read %s", flag, path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int Millis(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

}  // namespace

CoordinatorServer::CoordinatorServer(ModelRegistry* registry, CoordinatorServerOptions options)
    : registry_(registry), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    ModelRegistry* registry, CoordinatorServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("port must be in [0, 65535] (is %d)", options.port));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both a certificate and a key file");
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    auto key = ReadPem(options.tls_key_file, "TLS key");
    if (!key.ok()) return key.status();
    auto cert = ReadPem(options.tls_cert_file, "TLS certificate");
    if (!cert.ok()) return cert.status();
    pair.private_key = *std::move(key);
    pair.cert_chain = *std::move(cert);
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    credentials = grpc::SslServerCredentials(ssl);
  }

  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer(registry, options));
  server->gate_ = std::make_unique<RequestGate>(registry);
  server->metrics_ = std::make_unique<ServingMetrics>(registry, server->gate_.get());
  server->inference_ = std::make_unique<InferenceService>(
      server->gate_.get(),
      InferenceServiceOptions{.auth_token = options.auth_token, .metrics = server->metrics_.get()});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  builder.AddListeningPort(address, credentials, &server->port_);
  server->cluster_ = std::make_unique<ClusterService>(
      registry, ClusterServiceOptions{.auth_token = options.auth_token,
                                      .heartbeat_interval = options.heartbeat_interval,
                                      .heartbeat_timeout = options.heartbeat_timeout});
  server->admin_ = std::make_unique<AdminService>(registry, server->gate_.get(), options.auth_token,
                                                  [raw = server.get()] { raw->UpdateHealth(); });
  builder.RegisterService(server->inference_.get());
  builder.RegisterService(server->admin_.get());
  builder.RegisterService(server->cluster_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Clients may ping as often as every 10 s without being told to go away.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  if (options.http_port != -1) {
    absl::StatusOr<std::unique_ptr<HttpServer>> http =
        HttpServer::Start(server->gate_.get(), server->metrics_.get(),
                          {.host = options.host,
                           .port = options.http_port,
                           .auth_token = options.auth_token,
                           .tls_cert_file = options.tls_cert_file,
                           .tls_key_file = options.tls_key_file,
                           .threads = options.http_threads});
    if (!http.ok()) {
      server->server_->Shutdown();
      return http.status();
    }
    server->http_ = *std::move(http);
  }
  server->UpdateHealth();
  server->health_thread_ = std::thread([raw = server.get()] {
    while (!raw->stop_.WaitForNotificationWithTimeout(raw->options_.health_poll)) {
      raw->UpdateHealth();
    }
  });
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

void CoordinatorServer::UpdateHealth() {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  bool any = false;
  const bool draining = gate_->draining();
  for (const ServedModel* model : registry_->models()) {
    const bool ready = !draining && model->ReadyReplicas() > 0;
    health->SetServingStatus(model->name(), ready);
    any = any || ready;
  }
  health->SetServingStatus("", any);
  health->SetServingStatus("tessera.v1.Inference", any);
  // The coordinator itself, replicas or not: what its pod's probes ask, so that it receives
  // traffic (leaders registering) before any replica is ready, and leaves it when draining.
  health->SetServingStatus("tessera.coordinator", !draining);
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  gate_->StartDraining();  // HTTP admits nothing more either
  stop_.Notify();
  if (health_thread_.joinable()) health_thread_.join();
  if (admin_ != nullptr) admin_->Stop();
  if (server_ != nullptr) {
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
      health->Shutdown();  // every status NOT_SERVING
    }
    // The server stops taking calls now and waits for those in flight, leader streams
    // included: those end once the requests they serve are done (or at the deadline).
    const absl::Time deadline = absl::Now() + grace;
    std::thread stopper([&] { server_->Shutdown(absl::ToChronoTime(deadline)); });
    while (gate_->calls_in_flight() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (http_ != nullptr) http_->Shutdown();
    cluster_->CloseAll("the coordinator is shutting down");
    stopper.join();
  }
}

int CoordinatorServer::http_port() const { return http_ != nullptr ? http_->port() : -1; }

void CoordinatorServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace tessera
