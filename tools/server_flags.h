// The listening flags `tessera serve` and `tessera-coordinator` share: gRPC and HTTP ports
// (and files to write them to once bound), bearer token and TLS files.
#pragma once

#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "coordinator/server.h"

namespace tessera {

struct ServerFlags {
  std::string host = "0.0.0.0";
  int port = 50051;
  std::string port_file;
  int http_port = 8000;  // -1: no HTTP
  std::string http_port_file;
  int http_threads = 128;
  std::string auth_token_file;
  std::string tls_cert;
  std::string tls_key;
};

void AddServerFlags(CLI::App& app, ServerFlags* flags);

// The server options the flags ask for; INVALID_ARGUMENT for an unusable token file.
[[nodiscard]] absl::StatusOr<CoordinatorServerOptions> ServerOptionsFromFlags(
    const ServerFlags& flags);

// Says on stderr where `server` listens ("tessera <who>: ...") and writes the port files.
void AnnounceServer(std::string_view who, const ServerFlags& flags,
                    const CoordinatorServerOptions& options, const CoordinatorServer& server);

}  // namespace tessera
