#include "coordinator/admin_service.h"

#include <thread>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/grpc_util.h"

namespace tessera {

namespace v1 = ::tessera::v1;

AdminService::AdminService(ModelRegistry* registry, RequestGate* gate, std::string auth_token,
                           std::function<void()> on_drain)
    : registry_(registry),
      gate_(gate),
      auth_token_(std::move(auth_token)),
      on_drain_(std::move(on_drain)) {}

AdminService::~AdminService() {
  stopping_ = true;
  while (waiting_drains_.load() > 0) absl::SleepFor(absl::Milliseconds(1));
}

grpc::ServerUnaryReactor* AdminService::GetClusterStatus(grpc::CallbackServerContext* context,
                                                         const v1::GetClusterStatusRequest* request,
                                                         v1::ClusterStatus* response) {
  if (grpc::Status s = CheckBearerToken(*context, auth_token_); !s.ok()) {
    return Respond(context, s);
  }
  for (const ServedModel* model : registry_->models()) {
    v1::ModelStatus* m = response->add_models();
    m->set_name(model->name());
    int ready = 0;
    int queue = 0;
    for (const auto& replica : model->replicas()) {
      const ReplicaInfo info = replica->Info();
      const ReplicaLoad load = replica->Load();
      v1::ReplicaStatus* r = m->add_replicas();
      r->set_id(info.remote ? info.id : model->name() + "/" + info.id);
      r->set_ready(load.ready);
      r->set_tp(info.tp);
      r->set_pp(info.pp);
      r->set_remote(info.remote);
      for (size_t i = 0; i < info.ranks.size(); ++i) {
        v1::RankStatus* rank = r->add_ranks();
        rank->set_rank(static_cast<int32_t>(i));
        rank->set_host(info.ranks[i].host);
        rank->set_device(info.ranks[i].device);
      }
      r->set_running_requests(load.running_requests);
      r->set_waiting_requests(load.waiting_requests);
      r->set_outstanding_tokens(load.outstanding_tokens);
      r->set_kv_blocks_used(load.kv_blocks_used);
      r->set_kv_blocks_total(load.kv_blocks_total);
      ready += load.ready ? 1 : 0;
      queue += load.waiting_requests;
    }
    m->set_ready_replicas(ready);
    m->set_queue_depth(queue);
  }
  response->set_draining(gate_->draining());
  response->set_calls_in_flight(gate_->calls_in_flight());
  return Respond(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::Drain(grpc::CallbackServerContext* context,
                                              const v1::DrainRequest* request,
                                              v1::DrainResponse* response) {
  if (grpc::Status s = CheckBearerToken(*context, auth_token_); !s.ok()) {
    return Respond(context, s);
  }
  if (!(request->wait_seconds() >= 0) || request->wait_seconds() > 3600) {
    return Respond(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                         absl::StrFormat("field 'wait_seconds' must be in "
                                                         "[0, 3600] (is %g)",
                                                         request->wait_seconds())));
  }
  if (!gate_->draining()) {
    gate_->StartDraining();
    if (on_drain_) on_drain_();
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = absl::Now() + absl::Seconds(request->wait_seconds());
  // Waiting must not hold a gRPC callback thread: a short-lived thread waits instead (the
  // destructor waits for it).
  ++waiting_drains_;
  std::thread([this, reactor, response, deadline] {
    while (gate_->calls_in_flight() > 0 && absl::Now() < deadline && !stopping_) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    const int left = gate_->calls_in_flight();
    response->set_drained(left == 0);
    response->set_calls_in_flight(left);
    reactor->Finish(grpc::Status::OK);
    --waiting_drains_;
  }).detach();
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetCapacity(grpc::CallbackServerContext* context,
                                                    const v1::GetCapacityRequest* request,
                                                    v1::Capacity* response) {
  if (grpc::Status s = CheckBearerToken(*context, auth_token_); !s.ok()) {
    return Respond(context, s);
  }
  std::vector<ServedModel*> models;
  if (request->model().empty()) {
    models = registry_->models();
  } else {
    absl::StatusOr<ServedModel*> model = registry_->Find(request->model());
    if (!model.ok()) return Respond(context, ToGrpcStatus(model.status()));
    models.push_back(*model);
  }
  for (const ServedModel* model : models) {
    v1::ModelCapacity* c = response->add_models();
    c->set_name(model->name());
    c->set_context_length(model->spec().context_length);
    int64_t total = 0;
    int64_t free = 0;
    int ready = 0;
    for (const auto& replica : model->replicas()) {
      const ReplicaLoad load = replica->Load();
      if (!load.ready) continue;
      const int64_t block = replica->Info().block_size;
      total += load.kv_blocks_total * block;
      free += (load.kv_blocks_total - load.kv_blocks_used) * block;
      ++ready;
    }
    c->set_kv_tokens_total(total);
    c->set_kv_tokens_free(free);
    c->set_ready_replicas(ready);
  }
  return Respond(context, grpc::Status::OK);
}

}  // namespace tessera
