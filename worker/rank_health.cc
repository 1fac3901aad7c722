#include "worker/rank_health.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/health_check_service_interface.h"

namespace tessera {

absl::StatusOr<std::unique_ptr<RankHealthServer>> RankHealthServer::Start(const std::string& host,
                                                                          int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("health port must be in [0, 65535] (is %d)", port));
  }
  grpc::EnableDefaultHealthCheckService(true);
  auto server = std::unique_ptr<RankHealthServer>(new RankHealthServer);
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(host, ":", port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &server->port_);
  // A server needs a service of its own besides the built-in health one; the generic one
  // answers every other method UNIMPLEMENTED.
  builder.RegisterCallbackGenericService(&server->unimplemented_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve health on ", address));
  }
  server->SetServing(false);
  return server;
}

RankHealthServer::~RankHealthServer() {
  if (server_ != nullptr) server_->Shutdown();
}

void RankHealthServer::SetServing(bool serving) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus("tessera.worker", serving);
}

}  // namespace tessera
