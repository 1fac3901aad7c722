// tessera.v1.Inference, health and the server's options over real gRPC on a loopback port,
// with scripted replicas (fake_replica.h) so that every path (streaming text, stop strings,
// errors, auth, TLS, cancellation, deadlines, a lost replica) is exercised exactly. The
// tokenizer is the default model's.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/model_registry.h"
#include "coordinator/server.h"
#include "formats/gguf_reader.h"
#include "formats/model_locator.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tessera/v1/admin.grpc.pb.h"
#include "tessera/v1/inference.grpc.pb.h"
#include "tests/coordinator/fake_replica.h"
#include "tests/coordinator/model_text.h"
#include "tokenizer/chat_prompt.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using testing::FakeReplica;
using ::testing::HasSubstr;

const testing::ModelText& Text() { return testing::DefaultModelText(); }
std::vector<int32_t> Encode(const std::string& text) { return testing::EncodePlain(text); }

constexpr char kAnswer[] = " Hello, world! This is a streamed answer.";

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(Text().tokenizer, nullptr) << "the default model is needed (scripts/fetch_model.py)";
    script_ = Encode(kAnswer);
    script_.push_back(Text().tokenizer->eos_id());
  }

  ServedModel* AddModel(const std::string& name = "default") {
    ServedModelSpec spec;
    spec.name = name;
    spec.config = Text().config;
    spec.tokenizer = Text().tokenizer;
    spec.chat_template = Text().chat_template;
    spec.context_length = 2048;
    spec.default_max_new_tokens = 64;
    auto model = registry_.Add(std::move(spec));
    EXPECT_TRUE(model.ok()) << model.status();
    return *model;
  }

  void Start(CoordinatorServerOptions options = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    auto server = CoordinatorServer::Start(&registry_, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
    health_ = grpc::health::v1::Health::NewStub(channel_);
  }

  // One Generate call: every response, and the final status.
  struct Streamed {
    std::vector<v1::GenerateResponse> responses;
    grpc::Status status;
    std::string Text() const {
      std::string text;
      for (const auto& r : responses) {
        for (const auto& d : r.deltas()) text += d.text();
      }
      return text;
    }
  };
  Streamed Stream(const v1::GenerateRequest& request, grpc::ClientContext* context = nullptr) {
    grpc::ClientContext local;
    if (context == nullptr) context = &local;
    Streamed out;
    auto reader = stub_->Generate(context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) out.responses.push_back(response);
    out.status = reader->Finish();
    return out;
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status s = health_->Check(&context, request, &response);
    if (!s.ok()) return HealthCheckResponse::SERVICE_UNKNOWN;
    return response.status();
  }

  static v1::GenerateRequest Prompt(const std::string& prompt) {
    v1::GenerateRequest r;
    r.set_prompt(prompt);
    return r;
  }

  std::vector<int32_t> script_;
  ModelRegistry registry_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(ServiceTest, StreamedDeltasConcatenateToTheCompleteText) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  Start();
  const Streamed streamed = Stream(Prompt("Say hello"));
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_EQ(streamed.Text(), kAnswer);
  EXPECT_GT(streamed.responses.size(), 1u);  // streamed, not one message at the end
  const v1::GenerateResponse& last = streamed.responses.back();
  ASSERT_EQ(last.deltas_size(), 1);
  EXPECT_EQ(last.deltas(0).finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(last.deltas(0).stop_token_id(), Text().tokenizer->eos_id());
  EXPECT_EQ(last.usage().completion_tokens(), static_cast<int>(script_.size()));
  EXPECT_EQ(last.usage().prompt_tokens(), static_cast<int>(Encode("Say hello").size()) +
                                              (Text().tokenizer->add_bos_default() ? 1 : 0));
  for (const auto& r : streamed.responses) EXPECT_EQ(r.request_id(), "req-0");

  grpc::ClientContext context;
  v1::CompleteResponse complete;
  v1::GenerateRequest request = Prompt("Say hello");
  request.set_request_id("mine");
  ASSERT_TRUE(stub_->Complete(&context, request, &complete).ok());
  EXPECT_EQ(complete.request_id(), "mine");
  EXPECT_EQ(complete.model(), "default");
  ASSERT_EQ(complete.completions_size(), 1);
  EXPECT_EQ(complete.completions(0).text(), kAnswer);
  // The stop token is reported, not part of the tokens.
  EXPECT_EQ(complete.completions(0).tokens_size(), static_cast<int>(script_.size()) - 1);
}

TEST_F(ServiceTest, AStopStringIsNeverStreamedInPart) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  Start();
  v1::GenerateRequest request = Prompt("Say hello");
  request.mutable_decoding()->add_stop_strings("world!");
  const Streamed streamed = Stream(request);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_EQ(streamed.Text(), " Hello, ");
  for (const auto& r : streamed.responses) {
    for (const auto& d : r.deltas()) EXPECT_THAT(d.text(), ::testing::Not(HasSubstr("wor")));
  }
  EXPECT_EQ(streamed.responses.back().deltas(0).finish_reason(), v1::FINISH_REASON_STOP);
  // The replica was told, so that it stops generating too.
  EXPECT_THAT(
      dynamic_cast<FakeReplica&>(*registry_.models()[0]->replicas()[0]).submitted()[0].stop_strings,
      ::testing::ElementsAre("world!"));
}

TEST_F(ServiceTest, MaxNewTokensEndsWithLength) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  Start();
  v1::GenerateRequest request = Prompt("Say hello");
  request.mutable_decoding()->set_max_new_tokens(2);
  grpc::ClientContext context;
  v1::CompleteResponse complete;
  ASSERT_TRUE(stub_->Complete(&context, request, &complete).ok());
  EXPECT_EQ(complete.completions(0).finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(complete.completions(0).tokens_size(), 2);
}

struct BadInput {
  std::string name;
  v1::GenerateRequest request;
  grpc::StatusCode code;
  std::string field;  // the message names it
};

std::vector<BadInput> BadInputs() {
  std::vector<BadInput> cases;
  auto add = [&](std::string name, auto edit, grpc::StatusCode code, std::string field) {
    v1::GenerateRequest r;
    r.set_prompt("Hello");
    edit(r);
    cases.push_back({std::move(name), std::move(r), code, std::move(field)});
  };
  using C = grpc::StatusCode;
  add(
      "empty prompt", [](auto& r) { r.set_prompt(""); }, C::INVALID_ARGUMENT, "'prompt'");
  add(
      "no input", [](auto& r) { r.clear_input(); }, C::INVALID_ARGUMENT, "'prompt'");
  add(
      "empty messages", [](auto& r) { r.mutable_messages(); }, C::INVALID_ARGUMENT, "'messages'");
  add(
      "message without role",
      [](auto& r) { r.mutable_messages()->add_messages()->set_content("hi"); }, C::INVALID_ARGUMENT,
      "'messages[0].role'");
  add(
      "prompt over the context",
      [](auto& r) {
        std::string long_prompt;
        for (int i = 0; i < 2100; ++i) long_prompt += " word";
        r.set_prompt(long_prompt);
      },
      C::INVALID_ARGUMENT, "'prompt'");
  add(
      "unknown model", [](auto& r) { r.set_model("no-such-model"); }, C::NOT_FOUND, "'model'");
  add(
      "top_k < 0", [](auto& r) { r.mutable_decoding()->set_top_k(-1); }, C::INVALID_ARGUMENT,
      "'top_k'");
  add(
      "temperature < 0",
      [](auto& r) {
        r.mutable_decoding()->set_do_sample(true);
        r.mutable_decoding()->set_temperature(-1);
      },
      C::INVALID_ARGUMENT, "'temperature'");
  add(
      "max_new_tokens 0", [](auto& r) { r.mutable_decoding()->set_max_new_tokens(0); },
      C::INVALID_ARGUMENT, "'max_new_tokens'");
  add(
      "max_new_tokens < 0", [](auto& r) { r.mutable_decoding()->set_max_new_tokens(-5); },
      C::INVALID_ARGUMENT, "'max_new_tokens'");
  add(
      "max_new_tokens over the context",
      [](auto& r) { r.mutable_decoding()->set_max_new_tokens(5000); }, C::INVALID_ARGUMENT,
      "'max_new_tokens'");
  add(
      "too many stop strings",
      [](auto& r) {
        for (int i = 0; i < 17; ++i) r.mutable_decoding()->add_stop_strings(absl::StrCat("s", i));
      },
      C::INVALID_ARGUMENT, "'stop_strings'");
  add(
      "empty stop string", [](auto& r) { r.mutable_decoding()->add_stop_strings(""); },
      C::INVALID_ARGUMENT, "'stop_strings'");
  add(
      "early_stopping", [](auto& r) { r.mutable_decoding()->set_early_stopping("sometimes"); },
      C::INVALID_ARGUMENT, "'early_stopping'");
  add(
      "logprobs > 20", [](auto& r) { r.mutable_decoding()->set_logprobs(21); }, C::INVALID_ARGUMENT,
      "'logprobs'");
  add(
      "n without sampling", [](auto& r) { r.mutable_decoding()->set_num_return_sequences(2); },
      C::INVALID_ARGUMENT, "'num_return_sequences'");
  add(
      "priority", [](auto& r) { r.set_priority(2000000000); }, C::INVALID_ARGUMENT, "'priority'");
  add(
      "request_id", [](auto& r) { r.set_request_id(std::string(300, 'x')); }, C::INVALID_ARGUMENT,
      "'request_id'");
  add(
      "oversized message", [](auto& r) { r.set_prompt(std::string(17 << 20, 'a')); },
      C::RESOURCE_EXHAUSTED, "");
  return cases;
}

TEST_F(ServiceTest, BadInputGetsACodeAndAMessageNamingTheField) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  Start();
  for (const BadInput& c : BadInputs()) {
    grpc::ClientContext context;
    v1::CompleteResponse response;
    grpc::Status s = stub_->Complete(&context, c.request, &response);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.field)) << c.name;
    // The same through the stream, which sends nothing before the error.
    const Streamed streamed = Stream(c.request);
    EXPECT_EQ(streamed.status.error_code(), c.code) << c.name;
    EXPECT_TRUE(streamed.responses.empty()) << c.name;
  }
  // Nothing bad reached the replica.
  auto& replica = dynamic_cast<FakeReplica&>(*registry_.models()[0]->replicas()[0]);
  EXPECT_TRUE(replica.submitted().empty());
}

TEST_F(ServiceTest, InvalidUtf8IsRefused) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  Start();
  grpc::ClientContext context;
  v1::CompleteResponse response;
  grpc::Status s = stub_->Complete(&context, Prompt("bad \xff\xfe bytes"), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("prompt"));
}

TEST_F(ServiceTest, ABearerTokenIsRequiredWhenConfigured) {
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  CoordinatorServerOptions options;
  options.auth_token = "s3cret";
  Start(options);
  for (const char* header : {"", "Bearer wrong", "s3cret", "Bearer s3cret"}) {
    grpc::ClientContext context;
    if (*header != '\0') context.AddMetadata("authorization", header);
    v1::CompleteResponse response;
    grpc::Status s = stub_->Complete(&context, Prompt("Hello"), &response);
    if (std::string(header) == "Bearer s3cret") {
      EXPECT_TRUE(s.ok()) << s.error_message();
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
      EXPECT_THAT(s.error_message(), HasSubstr("authorization"));
    }
  }
  grpc::ClientContext context;
  v1::ListModelsResponse models;
  EXPECT_EQ(stub_->ListModels(&context, {}, &models).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServiceTest, HealthFollowsTheReplicas) {
  auto replica = std::make_shared<FakeReplica>(script_);
  replica->set_ready(false);
  ServedModel* model = AddModel();
  model->AddReplica(replica);
  Start();
  EXPECT_EQ(Health("default"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::NOT_SERVING);
  // The coordinator's own probe passes without replicas (leaders must reach it).
  EXPECT_EQ(Health("tessera.coordinator"), HealthCheckResponse::SERVING);
  // No ready replica: requests are UNAVAILABLE, naming the model.
  grpc::ClientContext context;
  v1::CompleteResponse response;
  grpc::Status s = stub_->Complete(&context, Prompt("Hello"), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("default"));

  replica->set_ready(true);
  server_->UpdateHealth();
  EXPECT_EQ(Health("default"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("tessera.v1.Inference"), HealthCheckResponse::SERVING);
  EXPECT_EQ(Health("other-model"), HealthCheckResponse::SERVICE_UNKNOWN);

  replica->set_ready(false);
  server_->UpdateHealth();
  EXPECT_EQ(Health("default"), HealthCheckResponse::NOT_SERVING);
}

TEST_F(ServiceTest, AReplicaLostMidStreamEndsItsRequestsAndOthersKeepServing) {
  auto doomed = std::make_shared<FakeReplica>(script_, /*hold=*/true);
  auto survivor = std::make_shared<FakeReplica>(script_);
  ServedModel* model = AddModel();
  model->AddReplica(doomed);
  Start();
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Prompt("Hello"));
  doomed->WaitSubmitted(1);
  model->AddReplica(survivor);
  doomed->Lose();
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("replica lost"));

  server_->UpdateHealth();
  EXPECT_EQ(Health("default"), HealthCheckResponse::SERVING);  // the survivor
  const Streamed streamed = Stream(Prompt("Hello"));
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_EQ(streamed.Text(), kAnswer);
  EXPECT_EQ(survivor->submitted().size(), 1u);

  model->RemoveReplica(survivor.get());
  server_->UpdateHealth();
  EXPECT_EQ(Health("default"), HealthCheckResponse::NOT_SERVING);
}

TEST_F(ServiceTest, AClientThatCancelsCancelsItsRequest) {
  auto replica = std::make_shared<FakeReplica>(script_, /*hold=*/true);
  AddModel()->AddReplica(replica);
  Start();
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, Prompt("Hello"));
  replica->WaitSubmitted(1);
  context.TryCancel();
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const std::string id = replica->submitted()[0].spec.request_id;
  for (int i = 0; i < 200 && replica->cancelled().empty(); ++i)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_THAT(replica->cancelled(), ::testing::Contains(id));
}

TEST_F(ServiceTest, TheCallDeadlineBecomesTheRequestDeadline) {
  auto replica = std::make_shared<FakeReplica>(script_, /*hold=*/true);
  AddModel()->AddReplica(replica);
  Start();
  grpc::ClientContext context;
  const absl::Time deadline = absl::Now() + absl::Milliseconds(300);
  context.set_deadline(absl::ToChronoTime(deadline));
  v1::CompleteResponse response;
  grpc::Status s = stub_->Complete(&context, Prompt("Hello"), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_EQ(replica->submitted().size(), 1u);
  EXPECT_LT(absl::AbsDuration(replica->submitted()[0].spec.deadline - deadline), absl::Seconds(1));
  const std::string id = replica->submitted()[0].spec.request_id;
  for (int i = 0; i < 200 && replica->cancelled().empty(); ++i)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_THAT(replica->cancelled(), ::testing::Contains(id));
}

TEST_F(ServiceTest, SeveralModelsByName) {
  AddModel("alpha")->AddReplica(std::make_shared<FakeReplica>(script_));
  AddModel("beta")->AddReplica(std::make_shared<FakeReplica>(Encode(" beta speaking")));
  Start();
  v1::GenerateRequest request = Prompt("Hello");
  request.set_model("beta");
  EXPECT_EQ(Stream(request).Text(), " beta speaking");
  request.set_model("alpha");
  EXPECT_EQ(Stream(request).Text(), kAnswer);
  // With two models, a request must name one.
  request.clear_model();
  const Streamed unnamed = Stream(request);
  EXPECT_EQ(unnamed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(unnamed.status.error_message(), HasSubstr("'model'"));

  grpc::ClientContext context;
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&context, {}, &models).ok());
  ASSERT_EQ(models.models_size(), 2);
  EXPECT_EQ(models.models(0).name(), "alpha");
  EXPECT_EQ(models.models(1).name(), "beta");
  EXPECT_EQ(models.models(1).ready_replicas(), 1);
}

TEST_F(ServiceTest, TokenizeDetokenizeAndModelInfo) {
  AddModel();
  Start();
  grpc::ClientContext c1;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("Hello world");
  v1::TokenizeResponse ids;
  ASSERT_TRUE(stub_->Tokenize(&c1, tokenize, &ids).ok());
  EXPECT_EQ(std::vector<int32_t>(ids.token_ids().begin(), ids.token_ids().end()),
            Encode("Hello world"));
  ASSERT_EQ(ids.tokens_size(), ids.token_ids_size());

  grpc::ClientContext c2;
  v1::DetokenizeRequest detokenize;
  *detokenize.mutable_token_ids() = ids.token_ids();
  v1::DetokenizeResponse text;
  ASSERT_TRUE(stub_->Detokenize(&c2, detokenize, &text).ok());
  EXPECT_EQ(text.text(), "Hello world");

  grpc::ClientContext c3;
  detokenize.add_token_ids(1 << 30);
  grpc::Status s = stub_->Detokenize(&c3, detokenize, &text);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("'token_ids[2]'"));

  grpc::ClientContext c4;
  v1::TokenizeRequest chat;
  auto* m = chat.mutable_messages()->add_messages();
  m->set_role("user");
  m->set_content("Hi");
  ASSERT_TRUE(stub_->Tokenize(&c4, chat, &ids).ok());
  EXPECT_GT(ids.token_ids_size(), 3);

  grpc::ClientContext c5;
  v1::GetModelInfoRequest info_request;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&c5, info_request, &info).ok());
  EXPECT_EQ(info.name(), "default");
  EXPECT_EQ(info.vocab_size(), Text().tokenizer->vocab_size());
  EXPECT_EQ(info.context_length(), 2048);
  EXPECT_TRUE(info.has_chat_template());
  EXPECT_EQ(info.ready_replicas(), 0);

  grpc::ClientContext c6;
  info_request.set_model("nope");
  EXPECT_EQ(stub_->GetModelInfo(&c6, info_request, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, TlsWithASelfSignedCertificate) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / absl::StrCat("tessera_tls_", getpid());
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      key, " -out ", cert, " 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0) << "openssl failed: " << command;
  AddModel()->AddReplica(std::make_shared<FakeReplica>(script_));
  CoordinatorServerOptions options;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  Start(options);

  std::ifstream in(cert);
  std::stringstream pem;
  pem << in.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  auto secure = v1::Inference::NewStub(
      grpc::CreateChannel(absl::StrCat("localhost:", server_->port()), grpc::SslCredentials(ssl)));
  grpc::ClientContext context;
  v1::CompleteResponse response;
  grpc::Status s = secure->Complete(&context, Prompt("Hello"), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.completions(0).text(), kAnswer);

  // Plaintext gets nowhere.
  grpc::ClientContext plain_context;
  plain_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_FALSE(stub_->Complete(&plain_context, Prompt("Hello"), &response).ok());
  std::filesystem::remove_all(dir);
}

TEST_F(ServiceTest, AdminReportsTheClusterAndDrains) {
  auto busy = std::make_shared<FakeReplica>(script_, /*hold=*/true);
  AddModel("alpha")->AddReplica(busy);
  AddModel("beta");
  Start();
  auto admin = v1::Admin::NewStub(channel_);

  grpc::ClientContext running_context;
  v1::GenerateRequest request = Prompt("Hello");
  request.set_model("alpha");
  auto running = stub_->Generate(&running_context, request);
  busy->WaitSubmitted(1);

  grpc::ClientContext c1;
  v1::ClusterStatus status;
  ASSERT_TRUE(admin->GetClusterStatus(&c1, {}, &status).ok());
  ASSERT_EQ(status.models_size(), 2);
  EXPECT_EQ(status.models(0).name(), "alpha");
  EXPECT_EQ(status.models(0).ready_replicas(), 1);
  ASSERT_EQ(status.models(0).replicas_size(), 1);
  EXPECT_EQ(status.models(0).replicas(0).id(), "alpha/fake");
  EXPECT_FALSE(status.models(0).replicas(0).remote());
  EXPECT_EQ(status.models(1).ready_replicas(), 0);
  EXPECT_EQ(status.calls_in_flight(), 1);
  EXPECT_FALSE(status.draining());

  grpc::ClientContext c2;
  v1::Capacity capacity;
  v1::GetCapacityRequest capacity_request;
  capacity_request.set_model("alpha");
  ASSERT_TRUE(admin->GetCapacity(&c2, capacity_request, &capacity).ok());
  ASSERT_EQ(capacity.models_size(), 1);
  EXPECT_EQ(capacity.models(0).context_length(), 2048);
  EXPECT_EQ(capacity.models(0).ready_replicas(), 1);

  // Drain: the call in flight keeps it from being drained; new calls are refused.
  grpc::ClientContext c3;
  v1::DrainRequest drain;
  v1::DrainResponse drained;
  ASSERT_TRUE(admin->Drain(&c3, drain, &drained).ok());
  EXPECT_FALSE(drained.drained());
  EXPECT_EQ(drained.calls_in_flight(), 1);
  EXPECT_EQ(Health("alpha"), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Health("tessera.coordinator"), HealthCheckResponse::NOT_SERVING);  // draining
  grpc::ClientContext c4;
  v1::CompleteResponse refused;
  grpc::Status s = stub_->Complete(&c4, request, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("draining"));

  // The call in flight finishes whole; then Drain reports drained.
  busy->Release();
  v1::GenerateResponse response;
  std::string text;
  while (running->Read(&response)) {
    for (const auto& d : response.deltas()) text += d.text();
  }
  EXPECT_TRUE(running->Finish().ok());
  EXPECT_EQ(text, kAnswer);
  grpc::ClientContext c5;
  drain.set_wait_seconds(10);
  ASSERT_TRUE(admin->Drain(&c5, drain, &drained).ok());
  EXPECT_TRUE(drained.drained());
  EXPECT_EQ(drained.calls_in_flight(), 0);

  grpc::ClientContext c6;
  drain.set_wait_seconds(-1);
  EXPECT_EQ(admin->Drain(&c6, drain, &drained).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, StartRefusesBadOptions) {
  CoordinatorServerOptions options;
  options.port = 70000;
  EXPECT_EQ(CoordinatorServer::Start(&registry_, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.port = 0;
  options.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(CoordinatorServer::Start(&registry_, options).status().code(),
            absl::StatusCode::kInvalidArgument);  // half a pair
  options.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(CoordinatorServer::Start(&registry_, options).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
