// The coordinator's gRPC server: tessera.v1.Inference, tessera.v1.Admin,
// tessera.cluster.v1.Cluster (replica leaders dial in), grpc.health.v1 (one service name per
// model, SERVING while it has a ready replica; "" while any model has one;
// "tessera.coordinator" while not draining, for its own probes), server
// reflection, keepalive and message-size limits, optional TLS and bearer token; and
// optionally the HTTP side (OpenAI-compatible API, Prometheus /metrics) sharing admission,
// drain and metrics with tessera.v1.
//
// Thread-safety: all methods from any thread; Shutdown once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/admin_service.h"
#include "coordinator/cluster_service.h"
#include "coordinator/http_server.h"
#include "coordinator/inference_service.h"
#include "coordinator/model_registry.h"
#include "coordinator/request_gate.h"
#include "coordinator/serving_metrics.h"
#include "grpcpp/grpcpp.h"

namespace tessera {

struct CoordinatorServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;            // 0: the kernel picks one (see port())
  std::string auth_token;  // non-empty: calls need "authorization: Bearer <token>"
  // Both or neither: PEM files for TLS; neither serves plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  int max_message_bytes = 16 << 20;  // larger requests are RESOURCE_EXHAUSTED
  // The OpenAI-compatible API and /metrics (coordinator/http_server.h) on this port, with
  // the same host, token and TLS files; -1: no HTTP, 0: the kernel picks one.
  int http_port = -1;
  int http_threads = 128;
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  absl::Duration health_poll = absl::Milliseconds(200);
  // Leaders send a heartbeat this often; one silent for heartbeat_timeout is lost.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(10);
};

class CoordinatorServer {
 public:
  // Binds and starts serving. INVALID_ARGUMENT for a bad port or half a TLS pair, NOT_FOUND
  // for an unreadable cert/key file, UNAVAILABLE when the address cannot be bound.
  // `registry` must outlive the server.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      ModelRegistry* registry, CoordinatorServerOptions options);
  ~CoordinatorServer();

  int port() const { return port_; }
  int http_port() const;  // -1 without HTTP
  const ServingMetrics& metrics() const { return *metrics_; }
  // Stops accepting calls; calls in flight get `grace` to finish, then are cancelled.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown.
  void Wait();
  // Sets every health status from the replicas now (the poller does this every
  // health_poll).
  void UpdateHealth();

  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

 private:
  CoordinatorServer(ModelRegistry* registry, CoordinatorServerOptions options);

  ModelRegistry* registry_;
  CoordinatorServerOptions options_;
  std::unique_ptr<RequestGate> gate_;
  std::unique_ptr<ServingMetrics> metrics_;
  std::unique_ptr<InferenceService> inference_;
  std::unique_ptr<ClusterService> cluster_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
  absl::Notification stop_;
  std::thread health_thread_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace tessera
