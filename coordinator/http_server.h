// The coordinator's HTTP side (cpp-httplib): the OpenAI-compatible API and Prometheus.
//   POST /v1/completions, POST /v1/chat/completions   JSON, or server-sent events with
//        "stream": true (ending "data: [DONE]"); errors in OpenAI's error object
//   GET  /v1/models, GET /v1/models/{name}
//   GET  /metrics   Prometheus text (coordinator/serving_metrics.h); no token needed
//   GET  /health    200 while the process serves HTTP (liveness)
//   GET  /ready     200 while not draining and some model has a ready replica, else 503
// Requests go through the same RequestGate as tessera.v1, so draining, validation and
// routing are shared. A streaming client that goes away cancels its request; a streamed
// request whose stream fails to write is cancelled too.
//
// Thread-safety: Start, then any thread; Shutdown once (the destructor calls it).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/openai_request.h"
#include "coordinator/request_gate.h"
#include "coordinator/serving_metrics.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace tessera {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;            // 0: the kernel picks one (see port())
  std::string auth_token;  // non-empty: /v1 calls need "Authorization: Bearer <token>"
  // Both or neither: PEM files for HTTPS.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Connections served at once; each streaming request holds one thread.
  int threads = 128;
  size_t max_body_bytes = 16 << 20;  // larger bodies get 413
};

class HttpServer {
 public:
  // Binds and starts serving on its own thread. INVALID_ARGUMENT for a bad port or thread
  // count or half a TLS pair, UNAVAILABLE when the address cannot be bound (or the TLS
  // files cannot be loaded). `gate` and `metrics` must outlive the server.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HttpServer>> Start(RequestGate* gate,
                                                                         ServingMetrics* metrics,
                                                                         HttpServerOptions options);
  ~HttpServer();

  int port() const { return port_; }
  // Cancels the requests still running (their clients get what was generated, with finish
  // reason "cancelled"), stops accepting and joins the serving threads.
  void Shutdown();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  struct Call;  // one generation request in flight (http_server.cc)

 private:
  HttpServer(RequestGate* gate, ServingMetrics* metrics, HttpServerOptions options);
  void Routes();
  // POST /v1/completions and /v1/chat/completions.
  void Generate(const httplib::Request& req, httplib::Response& res, OpenAiEndpoint endpoint);
  void Track(const std::string& replica_id, std::shared_ptr<Call> call);
  void Untrack(const std::string& replica_id);

  RequestGate* gate_;
  ServingMetrics* metrics_;
  HttpServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread listener_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tessera
