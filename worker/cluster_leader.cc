#include "worker/cluster_leader.h"

#include <deque>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/cluster_wire.h"
#include "coordinator/grpc_util.h"
#include "tessera/cluster/v1/cluster.grpc.pb.h"

namespace tessera {
namespace {

namespace cv1 = ::tessera::cluster::v1;
using Stream = grpc::ClientReaderWriter<cv1::LeaderMessage, cv1::CoordinatorMessage>;

// Messages to the coordinator come from the engine thread (events) and the heartbeat;
// one writer thread sends them, so that a slow network never stalls the engine.
class Outbox {
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
  // The next message; nullopt once closed and drained, or after `timeout` (heartbeat time).
  std::optional<cv1::LeaderMessage> Pop(absl::Duration timeout, bool* timed_out) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !queue_.empty(); };
    *timed_out = !mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
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

}  // namespace

absl::Status RunClusterLeader(const ClusterLeaderOptions& options, Replica* replica) {
  auto channel = grpc::CreateChannel(options.coordinator, options.credentials != nullptr
                                                              ? options.credentials
                                                              : grpc::InsecureChannelCredentials());
  auto stub = cv1::Cluster::NewStub(channel);
  grpc::ClientContext context;
  if (!options.auth_token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options.auth_token));
  }
  // Wait for the coordinator a while (it may still be starting), then give up.
  context.set_wait_for_ready(true);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(30)))) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the coordinator at ", options.coordinator, " within 30 s"));
  }
  std::unique_ptr<Stream> stream = stub->Connect(&context);
  cv1::LeaderMessage hello;
  *hello.mutable_register_() = options.registration;
  cv1::CoordinatorMessage reply;
  if (!stream->Write(hello) || !stream->Read(&reply) || !reply.has_registered()) {
    stream->WritesDone();
    const grpc::Status s = stream->Finish();
    return absl::Status(
        s.ok() ? absl::StatusCode::kUnavailable : static_cast<absl::StatusCode>(s.error_code()),
        s.ok() ? "the coordinator closed the stream while registering"
               : absl::StrCat("the coordinator refused the replica: ", s.error_message()));
  }
  if (options.on_registered) options.on_registered(reply.registered());
  const absl::Duration heartbeat =
      absl::Milliseconds(std::max(50, reply.registered().heartbeat_interval_ms()));

  // Shared with the engine's sinks, which may still fire after this function returns.
  auto shared_outbox = std::make_shared<Outbox>();
  Outbox& outbox = *shared_outbox;
  std::thread writer([&] {
    absl::Time next_heartbeat = absl::Now();
    while (true) {
      bool timed_out = false;
      std::optional<cv1::LeaderMessage> m =
          outbox.Pop(std::max(absl::ZeroDuration(), next_heartbeat - absl::Now()), &timed_out);
      if (!m.has_value() && outbox.closed()) break;
      if (absl::Now() >= next_heartbeat) {
        cv1::LeaderMessage beat;
        *beat.mutable_heartbeat()->mutable_load() = ToLoadProto(replica->Load());
        if (!stream->Write(beat)) break;
        next_heartbeat = absl::Now() + heartbeat;
      }
      if (m.has_value() && !stream->Write(*m)) break;
    }
  });

  absl::Notification done;
  std::thread stopper([&] {
    if (options.stop == nullptr) return;
    while (!done.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      if (options.stop->HasBeenNotified()) {
        context.TryCancel();
        return;
      }
    }
  });
  cv1::CoordinatorMessage in;
  while (stream->Read(&in)) {
    if (in.has_run()) {
      absl::StatusOr<TokenRequest> request = FromRunRequest(in.run());
      const std::string id = in.run().request_id();
      auto send = [shared_outbox, id](ReplicaEvent event) {
        cv1::LeaderMessage m;
        *m.mutable_event() = ToTokenEvent(id, event);
        shared_outbox->Push(std::move(m));
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
  outbox.Close();
  writer.join();  // before WritesDone: no write may run beside it
  stream->WritesDone();
  const grpc::Status s = stream->Finish();
  return absl::UnavailableError(
      absl::StrCat("the coordinator ended the stream: ", s.ok() ? "shut down" : s.error_message()));
}

}  // namespace tessera
