#include "worker/cluster_leader.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/cluster_wire.h"

namespace tessera {

namespace cv1 = ::tessera::cluster::v1;

// Messages to the coordinator come from the engine thread (events) and the heartbeat; one
// writer thread sends them, so that a slow network never stalls the engine.
class ClusterLeader::Outbox {
 public:
  void Push(cv1::LeaderMessage m) {
    absl::MutexLock lock(&mu_);
    if (closed_) return;  // the stream is gone
    queue_.push_back(std::move(m));
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // The next message, or nullopt after `timeout` or once closed and drained.
  std::optional<cv1::LeaderMessage> Pop(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !queue_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (queue_.empty()) return std::nullopt;
    cv1::LeaderMessage m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<cv1::LeaderMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

ClusterLeader::ClusterLeader(const ClusterLeaderOptions& options)
    : options_(options), outbox_(std::make_shared<Outbox>()) {}

absl::StatusOr<std::unique_ptr<ClusterLeader>> ClusterLeader::Register(
    const ClusterLeaderOptions& options) {
  std::unique_ptr<ClusterLeader> leader(new ClusterLeader(options));
  auto channel = grpc::CreateChannel(options.coordinator, options.credentials != nullptr
                                                              ? options.credentials
                                                              : grpc::InsecureChannelCredentials());
  leader->stub_ = cv1::Cluster::NewStub(channel);
  if (!options.auth_token.empty()) {
    leader->context_.AddMetadata("authorization", absl::StrCat("Bearer ", options.auth_token));
  }
  // The coordinator may still be starting: wait a while for it, then give up.
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot reach the coordinator at ",
                                               options.coordinator, " within ",
                                               absl::FormatDuration(options.connect_timeout)));
  }
  leader->stream_ = leader->stub_->Connect(&leader->context_);
  cv1::LeaderMessage hello;
  *hello.mutable_register_() = options.registration;
  cv1::CoordinatorMessage reply;
  if (!leader->stream_->Write(hello) || !leader->stream_->Read(&reply) || !reply.has_registered()) {
    leader->stream_->WritesDone();
    const grpc::Status s = leader->stream_->Finish();
    leader->closed_ = true;
    return absl::Status(
        s.ok() ? absl::StatusCode::kUnavailable : static_cast<absl::StatusCode>(s.error_code()),
        s.ok() ? "the coordinator closed the stream while registering"
               : absl::StrCat("the coordinator refused the replica: ", s.error_message()));
  }
  leader->registered_ = reply.registered();
  leader->StartWriter(
      absl::Milliseconds(std::max(50, leader->registered_.heartbeat_interval_ms())));
  return leader;
}

void ClusterLeader::StartWriter(absl::Duration heartbeat) {
  writer_ = std::thread([this, heartbeat] {
    absl::Time next_heartbeat = absl::Now();
    while (true) {
      std::optional<cv1::LeaderMessage> m =
          outbox_->Pop(std::max(absl::ZeroDuration(), next_heartbeat - absl::Now()));
      if (!m.has_value() && outbox_->closed()) break;
      if (absl::Now() >= next_heartbeat) {
        // Until Serve, the ranks are loading: alive, not ready.
        Replica* replica = replica_.load();
        cv1::LeaderMessage beat;
        *beat.mutable_heartbeat()->mutable_load() =
            ToLoadProto(replica != nullptr ? replica->Load() : ReplicaLoad{});
        if (!stream_->Write(beat)) break;
        next_heartbeat = absl::Now() + heartbeat;
      }
      if (m.has_value() && !stream_->Write(*m)) break;
    }
  });
}

grpc::Status ClusterLeader::Close() {
  outbox_->Close();
  if (writer_.joinable()) writer_.join();  // before WritesDone: no write may run beside it
  if (closed_ || stream_ == nullptr) return grpc::Status::OK;  // never connected
  closed_ = true;
  stream_->WritesDone();
  return stream_->Finish();
}

ClusterLeader::~ClusterLeader() {
  if (!closed_) context_.TryCancel();
  Close();
}

absl::Status ClusterLeader::Serve(Replica* replica) {
  replica_ = replica;
  absl::Notification done;
  std::thread stopper([&] {
    if (options_.stop == nullptr) return;
    while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      if (options_.stop->HasBeenNotified()) {
        context_.TryCancel();
        return;
      }
    }
  });
  cv1::CoordinatorMessage in;
  while (stream_->Read(&in)) {
    if (in.has_run()) {
      absl::StatusOr<TokenRequest> request = FromRunRequest(in.run());
      auto send = [outbox = outbox_, id = in.run().request_id()](ReplicaEvent event) {
        cv1::LeaderMessage m;
        *m.mutable_event() = ToTokenEvent(id, event);
        outbox->Push(std::move(m));
      };
      if (!request.ok()) {
        ReplicaEvent refused;
        refused.status = request.status();
        send(std::move(refused));
        continue;
      }
      replica->Submit(*std::move(request), send);
    } else if (in.has_cancel()) {
      replica->Cancel(in.cancel().request_id());
    }
  }
  done.Notify();
  stopper.join();
  replica_ = nullptr;
  const grpc::Status s = Close();
  return absl::UnavailableError(
      absl::StrCat("the coordinator ended the stream: ", s.ok() ? "shut down" : s.error_message()));
}

absl::Status RunClusterLeader(const ClusterLeaderOptions& options, Replica* replica) {
  absl::StatusOr<std::unique_ptr<ClusterLeader>> leader = ClusterLeader::Register(options);
  if (!leader.ok()) return leader.status();
  return (*leader)->Serve(replica);
}

}  // namespace tessera
