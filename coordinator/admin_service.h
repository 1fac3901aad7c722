// tessera.v1.Admin: the cluster's models and replicas with their load, capacity in KV
// tokens, and Drain (stop admitting, let the calls in flight finish, say when none is
// left) for rolling updates and preStop hooks.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "coordinator/model_registry.h"
#include "coordinator/request_gate.h"
#include "grpcpp/grpcpp.h"
#include "tessera/v1/admin.grpc.pb.h"

namespace tessera {

class AdminService final : public tessera::v1::Admin::CallbackService {
 public:
  // Both must outlive the service. `on_drain` runs when draining starts (health).
  AdminService(ModelRegistry* registry, RequestGate* gate, std::string auth_token,
               std::function<void()> on_drain);
  // Ends the Drain calls still waiting (they answer with what they see) and waits for them.
  ~AdminService() override;
  // Makes the waiting Drain calls answer now (server shutdown).
  void Stop() { stopping_ = true; }

  grpc::ServerUnaryReactor* GetClusterStatus(grpc::CallbackServerContext* context,
                                             const tessera::v1::GetClusterStatusRequest* request,
                                             tessera::v1::ClusterStatus* response) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const tessera::v1::DrainRequest* request,
                                  tessera::v1::DrainResponse* response) override;
  grpc::ServerUnaryReactor* GetCapacity(grpc::CallbackServerContext* context,
                                        const tessera::v1::GetCapacityRequest* request,
                                        tessera::v1::Capacity* response) override;

 private:
  ModelRegistry* registry_;
  RequestGate* gate_;
  std::string auth_token_;
  std::function<void()> on_drain_;
  std::atomic<bool> stopping_ = false;
  std::atomic<int> waiting_drains_ = 0;
};

}  // namespace tessera
