#include "coordinator/cluster_service.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/cluster_wire.h"
#include "coordinator/grpc_util.h"
#include "parallel/shard_plan.h"

namespace tessera {

namespace cv1 = ::tessera::cluster::v1;

// One leader's stream, and the Replica the model routes to. Its state outlives the gRPC
// reactor (the model and pending calls hold it). Reactor operations follow one rule: Finish
// is called once, by whoever sets `finished_`, and only when no write is in flight; a read
// or write is started only while not finished (checked under ops_mu_, which Finish also
// holds), so every call reaches a live reactor.
class LeaderConnection final : public Replica,
                               public std::enable_shared_from_this<LeaderConnection> {
 public:
  using Reactor = grpc::ServerBidiReactor<cv1::LeaderMessage, cv1::CoordinatorMessage>;

  LeaderConnection(ClusterService* service, Reactor* reactor)
      : service_(service), reactor_(reactor), last_seen_(absl::Now()) {}

  // --- Replica ---
  void Submit(TokenRequest request, ReplicaEventSink sink) override {
    {
      absl::MutexLock lock(&mu_);
      if (!lost_ && registered_) {
        cv1::CoordinatorMessage m;
        *m.mutable_run() = ToRunRequest(request);
        sinks_[request.spec.request_id] = std::move(sink);
        queue_.push_back(std::move(m));
        sink = nullptr;
      }
    }
    if (sink != nullptr) {
      ReplicaEvent event;
      event.status = absl::UnavailableError(absl::StrCat("replica ", id_, " is gone"));
      sink(std::move(event));
      return;
    }
    Pump();
  }
  void Cancel(std::string_view request_id) override {
    {
      absl::MutexLock lock(&mu_);
      if (lost_ || !sinks_.contains(std::string(request_id))) return;
      cv1::CoordinatorMessage m;
      m.mutable_cancel()->set_request_id(std::string(request_id));
      queue_.push_back(std::move(m));
    }
    Pump();
  }
  ReplicaInfo Info() const override {
    absl::MutexLock lock(&mu_);
    return info_;
  }
  ReplicaLoad Load() const override {
    absl::MutexLock lock(&mu_);
    ReplicaLoad load = load_;
    load.ready = load_.ready && registered_ && !lost_;
    return load;
  }

  // --- The stream ---
  void OnMessage(const cv1::LeaderMessage& message) {
    switch (message.kind_case()) {
      case cv1::LeaderMessage::kRegister:
        Register(message.register_());
        break;
      case cv1::LeaderMessage::kHeartbeat: {
        absl::MutexLock lock(&mu_);
        load_ = FromLoadProto(message.heartbeat().load());
        last_seen_ = absl::Now();
        break;
      }
      case cv1::LeaderMessage::kEvent:
        Deliver(message.event());
        break;
      default:
        Lose("the leader sent an empty message");
        break;
    }
  }

  // Ends the stream; a registered replica is lost: it leaves the model and its requests
  // end with UNAVAILABLE. `code` is what the leader's end of the stream reads.
  void Lose(const std::string& reason, grpc::StatusCode code = grpc::StatusCode::UNAVAILABLE) {
    absl::flat_hash_map<std::string, ReplicaEventSink> sinks;
    ServedModel* model = nullptr;
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      if (lost_) return;
      lost_ = true;
      sinks.swap(sinks_);
      model = registered_ ? model_ : nullptr;
      id = id_;
      finish_requested_ = true;
      finish_status_ = grpc::Status(code, reason);
    }
    if (model != nullptr) {
      model->RemoveReplica(this);
      std::fprintf(stderr, "tessera coordinator: replica %s of model '%s' lost: %s\n", id.c_str(),
                   model->name().c_str(), reason.c_str());
    }
    for (auto& [request_id, sink] : sinks) {
      ReplicaEvent event;
      event.status = absl::UnavailableError(
          absl::StrCat("replica ", id, " serving this request was lost: ", reason));
      sink(std::move(event));
    }
    Pump();
  }

  void WriteDone(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    if (!ok) Lose("a write to the leader failed");
    Pump();
  }

  // Starts the next read unless the stream is finishing.
  void ContinueReading(cv1::LeaderMessage* in) {
    absl::MutexLock ops(&ops_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
    }
    reactor_->StartRead(in);
  }

  // True when a registered replica's heartbeats stopped, or a connection never registered.
  bool Silent(absl::Time now, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    return !lost_ && now - last_seen_ > timeout;
  }

 private:
  void Register(const cv1::Register& r) {
    auto model = service_->registry_->Find(r.model());
    if (!model.ok()) {
      Lose(std::string(model.status().message()),
           static_cast<grpc::StatusCode>(model.status().code()));
      return;
    }
    if (r.tp() < 1 || r.pp() < 1 || r.ranks_size() != r.tp() * r.pp()) {
      Lose(absl::StrFormat("register: tp %d x pp %d must be >= 1 and match the %d ranks listed",
                           r.tp(), r.pp(), r.ranks_size()),
           grpc::StatusCode::INVALID_ARGUMENT);
      return;
    }
    // The coordinator's planner decides the layout; a layout the model cannot take is
    // refused here, before the replica serves anything.
    const ServedModelSpec& spec = (*model)->spec();
    PlannerInput in;
    in.model = spec.config;
    in.tp = r.tp();
    in.pp = r.pp();
    in.sequence_parallel = r.sequence_parallel();
    in.bytes_per_weight = spec.bytes_per_weight;
    in.ffn_alignment = spec.ffn_alignment;
    in.block_size = r.block_size() > 0 ? r.block_size() : 16;
    bool measured = true;
    for (const cv1::RankInfo& rank : r.ranks()) {
      // 0: not measured; the replica sized its own KV cache.
      measured = measured && rank.memory_bytes() > 0;
      in.rank_memory_bytes.push_back(rank.memory_bytes() > 0 ? rank.memory_bytes()
                                                             : int64_t{1} << 50);
    }
    absl::StatusOr<ShardPlan> plan = PlanShards(in);
    if (!plan.ok()) {
      Lose(absl::StrCat("register: ", plan.status().message()),
           static_cast<grpc::StatusCode>(plan.status().code()));
      return;
    }
    if (!measured) plan->num_kv_blocks = r.kv_blocks();  // the replica's own sizing (or 0)
    cv1::CoordinatorMessage reply;
    cv1::Registered* registered = reply.mutable_registered();
    {
      absl::MutexLock lock(&mu_);
      if (registered_ || lost_) return;
      id_ = absl::StrCat((*model)->name(), "/", service_->next_replica_++);
      info_ = ReplicaInfo{.id = id_,
                          .tp = r.tp(),
                          .pp = r.pp(),
                          .block_size = in.block_size,
                          .remote = true,
                          .ranks = {}};
      for (const cv1::RankInfo& rank : r.ranks()) {
        info_.ranks.push_back({.host = rank.host(), .device = rank.device()});
      }
      registered_ = true;
      model_ = *model;
      last_seen_ = absl::Now();
      // Ready once a heartbeat says so: the ranks load their slices after this answer.
      load_.ready = false;
      load_.kv_blocks_total = static_cast<int>(r.kv_blocks());
      registered->set_replica_id(id_);
      registered->set_heartbeat_interval_ms(
          static_cast<int32_t>(absl::ToInt64Milliseconds(service_->options_.heartbeat_interval)));
      *registered->mutable_plan() = ToShardPlanProto(*plan);
      queue_.push_back(std::move(reply));
    }
    (*model)->AddReplica(shared_from_this());
    std::fprintf(stderr,
                 "tessera coordinator: replica %s registered (tp %d, pp %d, %d KV blocks)\n",
                 id_.c_str(), r.tp(), r.pp(), static_cast<int>(r.kv_blocks()));
    Pump();
  }

  void Deliver(const cv1::TokenEvent& e) {
    ReplicaEventSink sink;
    ReplicaEvent event = FromTokenEvent(e);
    {
      absl::MutexLock lock(&mu_);
      last_seen_ = absl::Now();
      auto it = sinks_.find(e.request_id());
      if (it == sinks_.end()) return;  // cancelled and answered already
      sink = event.last() ? std::move(it->second) : it->second;
      if (event.last()) sinks_.erase(it);
    }
    sink(std::move(event));
  }

  // Starts the next write, or the finish, when nothing is in flight.
  void Pump() {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    grpc::Status status;
    absl::MutexLock ops(&ops_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (finish_requested_) {
        finished_ = true;
        status = finish_status_;
        action = kFinish;
      } else if (!queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        action = kWrite;
      }
    }
    if (action == kWrite) reactor_->StartWrite(&current_);
    if (action == kFinish) reactor_->Finish(status);
  }

  ClusterService* service_;
  Reactor* const reactor_;  // alive until finished_
  absl::Mutex ops_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::string id_ ABSL_GUARDED_BY(mu_);
  ReplicaInfo info_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  ServedModel* model_ ABSL_GUARDED_BY(mu_) = nullptr;
  ReplicaLoad load_ ABSL_GUARDED_BY(mu_);
  absl::Time last_seen_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ReplicaEventSink> sinks_ ABSL_GUARDED_BY(mu_);
  std::deque<cv1::CoordinatorMessage> queue_ ABSL_GUARDED_BY(mu_);
  cv1::CoordinatorMessage current_;  // being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

namespace {

class LeaderReactor final
    : public grpc::ServerBidiReactor<cv1::LeaderMessage, cv1::CoordinatorMessage> {
 public:
  explicit LeaderReactor(ClusterService* service) {}
  void Begin(std::shared_ptr<LeaderConnection> connection) {
    connection_ = std::move(connection);
    connection_->ContinueReading(&in_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      connection_->Lose("the leader's stream ended");
      return;
    }
    connection_->OnMessage(in_);
    connection_->ContinueReading(&in_);
  }
  void OnWriteDone(bool ok) override { connection_->WriteDone(ok); }
  void OnCancel() override { connection_->Lose("the leader's call was cancelled"); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<LeaderConnection> connection_;
  cv1::LeaderMessage in_;
};

}  // namespace

ClusterService::ClusterService(ModelRegistry* registry, ClusterServiceOptions options)
    : registry_(registry), options_(std::move(options)) {
  watchdog_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(options_.heartbeat_interval)) {
      std::vector<std::shared_ptr<LeaderConnection>> live;
      {
        absl::MutexLock lock(&mu_);
        std::erase_if(connections_, [](const auto& c) { return c.expired(); });
        for (const auto& weak : connections_) {
          if (auto c = weak.lock()) live.push_back(std::move(c));
        }
      }
      const absl::Time now = absl::Now();
      for (const auto& c : live) {
        if (c->Silent(now, options_.heartbeat_timeout)) {
          c->Lose(
              absl::StrCat("no heartbeat for ", absl::FormatDuration(options_.heartbeat_timeout)));
        }
      }
    }
  });
}

ClusterService::~ClusterService() {
  stop_.Notify();
  watchdog_.join();
}

grpc::ServerBidiReactor<cv1::LeaderMessage, cv1::CoordinatorMessage>* ClusterService::Connect(
    grpc::CallbackServerContext* context) {
  if (grpc::Status s = CheckBearerToken(*context, options_.auth_token); !s.ok()) {
    class Refusal final
        : public grpc::ServerBidiReactor<cv1::LeaderMessage, cv1::CoordinatorMessage> {
     public:
      explicit Refusal(grpc::Status s) { Finish(std::move(s)); }
      void OnDone() override { delete this; }
    };
    return new Refusal(s);
  }
  auto* reactor = new LeaderReactor(this);
  auto connection = std::make_shared<LeaderConnection>(this, reactor);
  {
    absl::MutexLock lock(&mu_);
    connections_.push_back(connection);
  }
  reactor->Begin(std::move(connection));
  return reactor;
}

void ClusterService::CloseAll(const std::string& reason) {
  std::vector<std::shared_ptr<LeaderConnection>> live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& weak : connections_) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  for (const auto& c : live) c->Lose(reason);
}

int ClusterService::connected() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& weak : connections_) {
    if (auto c = weak.lock(); c != nullptr && c->Load().ready) ++n;
  }
  return n;
}

}  // namespace tessera
