#include "tools/server_flags.h"

#include <cstdio>
#include <fstream>

#include "tools/cli_util.h"

namespace tessera {

void AddServerFlags(CLI::App& app, ServerFlags* f) {
  app.add_option("--host", f->host, "Address to listen on")->capture_default_str();
  app.add_option("--port", f->port, "gRPC port (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--port-file", f->port_file,
                 "Write the bound gRPC port to this file once serving");
  app.add_option("--http-port", f->http_port,
                 "Port of the OpenAI-compatible HTTP API and /metrics (0: any free port, "
                 "-1: no HTTP)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  app.add_option("--http-port-file", f->http_port_file,
                 "Write the bound HTTP port to this file once serving");
  app.add_option("--http-threads", f->http_threads,
                 "HTTP connections served at once (each streaming request holds one)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("--auth-token-file", f->auth_token_file,
                 "File with a bearer token every call (gRPC metadata or HTTP header "
                 "'authorization: Bearer <token>') and every replica leader must send");
  CLI::Option* cert =
      app.add_option("--tls-cert", f->tls_cert, "PEM certificate chain (TLS for gRPC and HTTP)");
  CLI::Option* key = app.add_option("--tls-key", f->tls_key, "PEM private key (TLS)");
  cert->needs(key);
  key->needs(cert);
}

absl::StatusOr<CoordinatorServerOptions> ServerOptionsFromFlags(const ServerFlags& f) {
  CoordinatorServerOptions o;
  o.host = f.host;
  o.port = f.port;
  o.http_port = f.http_port;
  o.http_threads = f.http_threads;
  o.tls_cert_file = f.tls_cert;
  o.tls_key_file = f.tls_key;
  if (!f.auth_token_file.empty()) {
    absl::StatusOr<std::string> token = ReadAuthTokenFile(f.auth_token_file);
    if (!token.ok()) return token.status();
    o.auth_token = *std::move(token);
  }
  return o;
}

void AnnounceServer(std::string_view who, const ServerFlags& f,
                    const CoordinatorServerOptions& options, const CoordinatorServer& server) {
  const std::string name(who);
  const char* tls = f.tls_cert.empty() ? "" : " (TLS)";
  const char* token = options.auth_token.empty() ? "" : " (bearer token required)";
  std::fprintf(stderr, "tessera %s: gRPC on %s:%d%s%s\n", name.c_str(), f.host.c_str(),
               server.port(), tls, token);
  if (server.http_port() > 0) {
    std::fprintf(stderr,
                 "tessera %s: HTTP on %s:%d%s (OpenAI API under /v1, Prometheus at /metrics)\n",
                 name.c_str(), f.host.c_str(), server.http_port(), tls);
  }
  // The HTTP port first: a script that waits for --port-file then finds both.
  if (!f.http_port_file.empty() && server.http_port() > 0) {
    std::ofstream(f.http_port_file) << server.http_port() << "\n";
  }
  if (!f.port_file.empty()) std::ofstream(f.port_file) << server.port() << "\n";
}

}  // namespace tessera
