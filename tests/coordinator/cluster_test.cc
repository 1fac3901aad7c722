// tessera.cluster.v1 end to end in one process: a coordinator that serves the default
// model with no replica of its own, and replica leaders (worker/cluster_leader.h over an
// in-process engine) that dial in. Requests route to them and give what the engine gives
// alone; a leader that leaves mid-stream ends its requests with UNAVAILABLE while another
// keeps serving; registration and heartbeats are checked.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tessera/cluster/v1/cluster.grpc.pb.h"
#include "tessera/v1/admin.grpc.pb.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tests/coordinator/loaded_model.h"
#include "worker/cluster_leader.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;
namespace cv1 = ::tessera::cluster::v1;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

cv1::Register Registration(const std::string& model, int tp = 1) {
  cv1::Register r;
  r.set_model(model);
  r.set_tp(tp);
  r.set_pp(1);
  r.set_kv_blocks(256);
  r.set_block_size(16);
  for (int i = 0; i < tp; ++i) {
    cv1::RankInfo* rank = r.add_ranks();
    rank->set_rank(i);
    rank->set_device("cpu");
  }
  return r;
}

// A leader serving `engine` on its own thread until `stop` or the coordinator ends it.
class Leader {
 public:
  Leader(const std::string& target, std::shared_ptr<EngineLoop> engine,
         cv1::Register registration = Registration("default"), std::string token = "",
         std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr)
      : engine_(std::move(engine)) {
    options_.coordinator = target;
    options_.connect_timeout = absl::Seconds(5);
    options_.credentials = std::move(credentials);
    options_.registration = std::move(registration);
    options_.auth_token = std::move(token);
    options_.stop = &stop_;
    thread_ = std::thread([this] {
      absl::StatusOr<std::unique_ptr<ClusterLeader>> leader = ClusterLeader::Register(options_);
      if (!leader.ok()) {
        result_ = leader.status();
        return;
      }
      replica_id_ = (*leader)->registered().replica_id();
      registered_.Notify();
      result_ = (*leader)->Serve(engine_.get());
    });
  }
  ~Leader() { Leave(); }
  // Leaves the coordinator and stops the engine (a replica's job ends with its leader).
  void Leave() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
    engine_.reset();
  }
  bool WaitRegistered() { return registered_.WaitForNotificationWithTimeout(absl::Seconds(30)); }
  const absl::Status& result() const { return result_; }  // after Leave
  const std::string& replica_id() const { return replica_id_; }

 private:
  std::shared_ptr<EngineLoop> engine_;
  ClusterLeaderOptions options_;
  absl::Notification stop_;
  absl::Notification registered_;
  std::string replica_id_;
  absl::Status result_;
  std::thread thread_;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = testing::DefaultModel();
    ASSERT_NE(model_, nullptr);
    auto served = registry_.Add(model_->Spec());
    ASSERT_TRUE(served.ok());
    served_ = *served;
  }

  void Start(CoordinatorServerOptions options = {}) {
    options.host = "127.0.0.1";
    options.heartbeat_interval = absl::Milliseconds(100);
    auto server = CoordinatorServer::Start(&registry_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    target_ = absl::StrCat("127.0.0.1:", server_->port());
    auto channel = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel);
    health_ = grpc::health::v1::Health::NewStub(channel);
  }

  // Registered replicas are ready after their first heartbeat from the engine.
  void WaitServing() {
    for (int i = 0; i < 250 && Health() != HealthCheckResponse::SERVING; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  HealthCheckResponse::ServingStatus Health() {
    server_->UpdateHealth();
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service("default");
    HealthCheckResponse response;
    if (!health_->Check(&context, request, &response).ok()) return HealthCheckResponse::UNKNOWN;
    return response.status();
  }

  static v1::GenerateRequest Chat(const std::string& question, int max_new_tokens) {
    v1::GenerateRequest r;
    auto* m = r.mutable_messages()->add_messages();
    m->set_role("user");
    m->set_content(question);
    r.mutable_decoding()->set_max_new_tokens(max_new_tokens);
    return r;
  }

  grpc::Status Complete(const v1::GenerateRequest& request, v1::CompleteResponse* response) {
    grpc::ClientContext context;
    return stub_->Complete(&context, request, response);
  }

  const testing::LoadedModel* model_ = nullptr;
  ModelRegistry registry_;
  ServedModel* served_ = nullptr;
  std::unique_ptr<CoordinatorServer> server_;
  std::string target_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(ClusterTest, ARegisteredReplicaServesWhatTheEngineGivesAlone) {
  Start();
  EXPECT_EQ(Health(), HealthCheckResponse::NOT_SERVING);  // no replica yet
  v1::CompleteResponse refused;
  EXPECT_EQ(Complete(Chat("Hi", 4), &refused).error_code(), grpc::StatusCode::UNAVAILABLE);

  // The reference: the same requests on an embedded replica, one at a time.
  const std::vector<std::string> questions = {
      "What is the capital of France?", "Name three primary colors.",
      "Write a haiku about the sea.", "How many legs does a spider have?"};
  std::vector<std::string> alone;
  {
    auto local = model_->StartEngine();
    served_->AddReplica(local);
    for (const auto& q : questions) {
      v1::CompleteResponse r;
      ASSERT_TRUE(Complete(Chat(q, 12), &r).ok());
      alone.push_back(r.completions(0).text());
    }
    served_->RemoveReplica(local.get());
  }

  Leader leader(target_, model_->StartEngine());
  ASSERT_TRUE(leader.WaitRegistered());
  WaitServing();
  EXPECT_THAT(leader.replica_id(), HasSubstr("default/"));
  EXPECT_EQ(Health(), HealthCheckResponse::SERVING);
  {
    auto admin =
        v1::Admin::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::ClusterStatus status;
    ASSERT_TRUE(admin->GetClusterStatus(&context, {}, &status).ok());
    ASSERT_EQ(status.models(0).replicas_size(), 1);
    EXPECT_EQ(status.models(0).replicas(0).id(), leader.replica_id());
    EXPECT_TRUE(status.models(0).replicas(0).remote());
    EXPECT_EQ(status.models(0).replicas(0).kv_blocks_total(), 256);
    ASSERT_EQ(status.models(0).replicas(0).ranks_size(), 1);
    EXPECT_EQ(status.models(0).replicas(0).ranks(0).device(), "cpu");
  }
  std::vector<std::string> remote(questions.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < questions.size(); ++i) {
    clients.emplace_back([&, i] {
      grpc::ClientContext context;
      auto reader = stub_->Generate(&context, Chat(questions[i], 12));
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
        for (const auto& d : response.deltas()) remote[i] += d.text();
      }
      EXPECT_TRUE(reader->Finish().ok());
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(remote, alone);

  leader.Leave();
  EXPECT_EQ(leader.result().code(), absl::StatusCode::kUnavailable);
  for (int i = 0; i < 100 && Health() != HealthCheckResponse::NOT_SERVING; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Health(), HealthCheckResponse::NOT_SERVING);
}

TEST_F(ClusterTest, AReplicaLostMidStreamEndsItsRequestsAndAnotherKeepsServing) {
  Start();
  auto doomed = std::make_unique<Leader>(target_, model_->StartEngine());
  ASSERT_TRUE(doomed->WaitRegistered());
  WaitServing();
  grpc::ClientContext context;
  v1::GenerateRequest endless = Chat("Count to a thousand.", 1500);
  endless.mutable_decoding()->set_min_new_tokens(1400);
  auto reader = stub_->Generate(&context, endless);
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));  // running on the doomed replica

  Leader survivor(target_, model_->StartEngine());
  ASSERT_TRUE(survivor.WaitRegistered());
  for (int i = 0; i < 250 && served_->ReadyReplicas() < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  doomed->Leave();
  while (reader->Read(&response)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("was lost"));

  v1::CompleteResponse ok;
  ASSERT_TRUE(Complete(Chat("Hello!", 4), &ok).ok());
  EXPECT_EQ(Health(), HealthCheckResponse::SERVING);
}

TEST_F(ClusterTest, RegistrationIsCheckedByTheCoordinator) {
  CoordinatorServerOptions options;
  options.auth_token = "leader-secret";
  Start(options);
  {
    Leader stranger(target_, model_->StartEngine(), Registration("default"), "wrong");
    stranger.Leave();
    EXPECT_EQ(stranger.result().code(), absl::StatusCode::kUnauthenticated) << stranger.result();
  }
  {
    Leader unknown(target_, model_->StartEngine(), Registration("no-such-model"), "leader-secret");
    unknown.Leave();
    EXPECT_EQ(unknown.result().code(), absl::StatusCode::kNotFound) << unknown.result();
    EXPECT_THAT(unknown.result().message(), HasSubstr("no-such-model"));
  }
  {
    // SmolLM2 has 3 KV heads: 4 tensor ranks is neither a divisor nor a multiple.
    Leader bad_layout(target_, model_->StartEngine(), Registration("default", 4), "leader-secret");
    bad_layout.Leave();
    EXPECT_EQ(bad_layout.result().code(), absl::StatusCode::kInvalidArgument)
        << bad_layout.result();
  }
  EXPECT_EQ(served_->replicas().size(), 0u);
}

TEST_F(ClusterTest, ALeaderRegistersOverTlsWithAToken) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / absl::StrCat("tessera_cluster_tls_", getpid());
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  CoordinatorServerOptions options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  options.auth_token = "cluster-secret";
  options.host = "127.0.0.1";
  options.heartbeat_interval = absl::Milliseconds(100);
  auto server = CoordinatorServer::Start(&registry_, options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::ifstream in(cert);
  std::stringstream pem;
  pem << in.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  const std::string target = absl::StrCat("localhost:", (*server)->port());

  Leader leader(target, model_->StartEngine(), Registration("default"), "cluster-secret",
                grpc::SslCredentials(ssl));
  ASSERT_TRUE(leader.WaitRegistered());
  for (int i = 0; i < 250 && served_->ReadyReplicas() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  auto stub = v1::Inference::NewStub(grpc::CreateChannel(target, grpc::SslCredentials(ssl)));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer cluster-secret");
  v1::CompleteResponse response;
  grpc::Status s = stub->Complete(&context, Chat("What is the capital of France?", 8), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(response.completions(0).text().empty());

  // Plaintext leaders get nowhere.
  Leader plaintext(target, model_->StartEngine(), Registration("default"), "cluster-secret");
  plaintext.Leave();
  EXPECT_EQ(plaintext.result().code(), absl::StatusCode::kUnavailable) << plaintext.result();
  leader.Leave();
  (*server)->Shutdown(absl::Seconds(1));
  std::filesystem::remove_all(dir);
}

TEST_F(ClusterTest, ALeaderThatFallsSilentIsLost) {
  CoordinatorServerOptions options;
  options.heartbeat_timeout = absl::Milliseconds(500);
  Start(options);
  // A leader that registers and then says nothing (no heartbeat).
  auto stub =
      cv1::Cluster::NewStub(grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  auto stream = stub->Connect(&context);
  cv1::LeaderMessage hello;
  *hello.mutable_register_() = Registration("default");
  ASSERT_TRUE(stream->Write(hello));
  cv1::CoordinatorMessage reply;
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_TRUE(reply.has_registered());
  EXPECT_EQ(reply.registered().plan().stages_size(), 1);
  EXPECT_EQ(reply.registered().plan().stages(0).end_layer(), model_->model->config().num_layers);
  EXPECT_EQ(served_->replicas().size(), 1u);
  while (stream->Read(&reply)) {
  }
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("no heartbeat"));
  EXPECT_EQ(served_->replicas().size(), 0u);
}

}  // namespace
}  // namespace tessera
