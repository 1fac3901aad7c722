#include "coordinator/inference_service.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "coordinator/completion_stream.h"
#include "coordinator/grpc_util.h"
#include "coordinator/proto_convert.h"
#include "coordinator/proto_wire.h"
#include "tokenizer/chat_prompt.h"

namespace tessera {
namespace {

namespace v1 = ::tessera::v1;

// Appends `next` to `into` (both of one request): each completion's text and tokens grow,
// its verdict fields and the usage take `next`'s values when set.
void Merge(v1::GenerateResponse& into, v1::GenerateResponse next) {
  for (v1::CompletionDelta& d : *next.mutable_deltas()) {
    v1::CompletionDelta* target = nullptr;
    for (v1::CompletionDelta& existing : *into.mutable_deltas()) {
      if (existing.index() == d.index()) target = &existing;
    }
    if (target == nullptr) {
      *into.add_deltas() = std::move(d);
      continue;
    }
    target->mutable_text()->append(d.text());
    for (v1::TokenInfo& t : *d.mutable_tokens()) *target->add_tokens() = std::move(t);
    if (d.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      target->set_finish_reason(d.finish_reason());
    }
    if (d.has_stop_token_id()) target->set_stop_token_id(d.stop_token_id());
    if (d.has_score()) target->set_score(d.score());
  }
  if (next.has_usage()) *into.mutable_usage() = next.usage();
}

// A Generate call. Its mutable state lives in `State`, shared with the replica's sink, so
// that an event arriving after the call is done finds it still there. The reactor itself
// stays alive until Finish has been called (gRPC calls OnDone only after that), and
// exactly one thread calls Finish, the one that sets `finished`; a write is started only
// while not finished and never two at once. So the calls into the reactor, made outside
// the lock, always reach a live reactor.
class GenerateCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateCall(const AdmittedRequest& admitted, RequestGate* gate, ServingMetrics* metrics)
      : ticket_(gate),
        metrics_(metrics),
        model_(admitted.model->name()),
        replica_(admitted.replica),
        replica_id_(admitted.request.spec.request_id),
        state_(std::make_shared<State>(
            this, CompletionStream(admitted.model->spec().tokenizer.get(), admitted.client_id,
                                   static_cast<int>(admitted.request.spec.prompt_token_ids.size()),
                                   admitted.request.stop_ids, admitted.request.stop_strings))) {}

  void Begin(TokenRequest request) {
    // The sink holds the replica weakly: it runs on the replica's thread, which must
    // never drop the replica's last reference (its destructor joins that thread).
    auto replica_now = replica_.lock();  // alive: the handler's Admitted holds it
    ReplicaEventSink sink = [state = state_, replica = replica_,
                             id = replica_id_](ReplicaEvent event) {
      Act(*state, [&](State& s) { s.OnEvent(std::move(event), replica, id); });
    };
    const auto prompt_tokens = static_cast<int64_t>(request.spec.prompt_token_ids.size());
    if (metrics_ != nullptr) sink = metrics_->Observe(model_, prompt_tokens, std::move(sink));
    replica_now->Submit(std::move(request), std::move(sink));
  }
  void OnWriteDone(bool ok) override {
    Act(*state_, [&](State& s) {
      s.writing = false;
      if (!ok) s.cancelled = true;  // the client is gone
    });
  }
  void OnCancel() override {
    if (auto replica = replica_.lock()) replica->Cancel(replica_id_);
    Act(*state_, [](State& s) { s.cancelled = true; });
  }
  void OnDone() override { delete this; }

  // Counts the outcome and finishes the call (once).
  void Conclude(grpc::Status status) {
    if (metrics_ != nullptr) {
      metrics_->CountRequest("grpc", model_, static_cast<absl::StatusCode>(status.error_code()));
    }
    Finish(std::move(status));
  }

 private:
  struct State {
    State(GenerateCall* c, CompletionStream s) : call(c), stream(std::move(s)) {}
    void OnEvent(ReplicaEvent event, const std::weak_ptr<Replica>& replica, const std::string& id)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || events_done) return;
      if (!event.status.ok()) {
        final_status = ToGrpcStatus(event.status);
        events_done = true;
        return;
      }
      absl::StatusOr<v1::GenerateResponse> response = stream.Next(event);
      if (!response.ok()) {
        final_status = ToGrpcStatus(response.status());
        events_done = true;
        if (auto r = replica.lock()) r->Cancel(id);
        return;
      }
      if (pending.has_value()) {
        Merge(*pending, *std::move(response));
      } else {
        pending = *std::move(response);
      }
      events_done = event.last();
    }

    absl::Mutex mu;
    GenerateCall* const call;  // alive until `finished`
    CompletionStream stream ABSL_GUARDED_BY(mu);
    std::optional<v1::GenerateResponse> pending ABSL_GUARDED_BY(mu);  // waits for the reader
    grpc::ByteBuffer current;  // the message being written (no one else touches it)
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    bool events_done ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    grpc::Status final_status ABSL_GUARDED_BY(mu);
  };

  // Applies `change` under the lock, then starts the next write or the finish, if any.
  template <typename Change>
  static void Act(State& s, Change change) {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&s.mu);
      change(s);
      if (s.finished || s.writing) return;
      if (s.cancelled) {
        status = grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
        action = kFinish;
      } else if (s.pending.has_value()) {
        absl::Status serialized = SerializeMessage(*s.pending, &s.current);
        s.pending.reset();
        if (serialized.ok()) {
          s.writing = true;
          action = kWrite;
        } else {
          status = ToGrpcStatus(serialized);
          action = kFinish;
        }
      } else if (s.events_done) {
        status = s.final_status;
        action = kFinish;
      }
      if (action == kFinish) s.finished = true;
    }
    if (action == kWrite) s.call->StartWrite(&s.current);
    if (action == kFinish) s.call->Conclude(std::move(status));
  }

  RequestGate::CallTicket ticket_;  // counts the call until OnDone
  ServingMetrics* metrics_;         // may be null
  std::string model_;
  // Weak: a call must never hold a replica alive (the last reference could then drop on
  // the replica's own thread); the registry and the handler's Admitted hold it.
  std::weak_ptr<Replica> replica_;
  std::string replica_id_;
  std::shared_ptr<State> state_;
};

// Complete: the same events, gathered into one response; the same lifetime rules.
class CompleteCall final : public grpc::ServerUnaryReactor {
 public:
  CompleteCall(const AdmittedRequest& admitted, grpc::ByteBuffer* response, RequestGate* gate,
               ServingMetrics* metrics)
      : ticket_(gate),
        metrics_(metrics),
        model_(admitted.model->name()),
        replica_(admitted.replica),
        replica_id_(admitted.request.spec.request_id),
        state_(std::make_shared<State>(
            this, response, admitted.model->name(),
            CompletionStream(admitted.model->spec().tokenizer.get(), admitted.client_id,
                             static_cast<int>(admitted.request.spec.prompt_token_ids.size()),
                             admitted.request.stop_ids, admitted.request.stop_strings))) {}

  void Begin(TokenRequest request) {
    auto replica_now = replica_.lock();  // alive: the handler's Admitted holds it
    const auto prompt_tokens = static_cast<int64_t>(request.spec.prompt_token_ids.size());
    ReplicaEventSink sink = [state = state_, replica = replica_,
                             id = replica_id_](ReplicaEvent event) {
      std::optional<grpc::Status> done;
      {
        absl::MutexLock lock(&state->mu);
        if (state->finished) return;
        if (!event.status.ok()) {
          done = ToGrpcStatus(event.status);
        } else if (absl::Status s = state->stream.Next(event).status(); !s.ok()) {
          if (auto r = replica.lock()) r->Cancel(id);
          done = ToGrpcStatus(s);
        } else if (event.last()) {
          done = ToGrpcStatus(SerializeMessage(state->stream.Whole(state->model), state->response));
        }
        if (done.has_value()) state->finished = true;
      }
      if (done.has_value()) state->call->Conclude(*done);
    };
    if (metrics_ != nullptr) sink = metrics_->Observe(model_, prompt_tokens, std::move(sink));
    replica_now->Submit(std::move(request), std::move(sink));
  }
  void OnCancel() override {
    if (auto replica = replica_.lock()) replica->Cancel(replica_id_);
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->finished) return;
      state_->finished = true;
    }
    Conclude(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call"));
  }
  void OnDone() override { delete this; }

  // Counts the outcome and finishes the call (once).
  void Conclude(grpc::Status status) {
    if (metrics_ != nullptr) {
      metrics_->CountRequest("grpc", model_, static_cast<absl::StatusCode>(status.error_code()));
    }
    Finish(std::move(status));
  }

 private:
  struct State {
    State(CompleteCall* c, grpc::ByteBuffer* r, std::string m, CompletionStream s)
        : call(c), response(r), model(std::move(m)), stream(std::move(s)) {}
    absl::Mutex mu;
    CompleteCall* const call;          // alive until `finished`
    grpc::ByteBuffer* const response;  // gRPC's, alive until OnDone
    const std::string model;
    CompletionStream stream ABSL_GUARDED_BY(mu);
    bool finished ABSL_GUARDED_BY(mu) = false;
  };

  RequestGate::CallTicket ticket_;  // counts the call until OnDone
  ServingMetrics* metrics_;         // may be null
  std::string model_;
  // Weak: a call must never hold a replica alive (the last reference could then drop on
  // the replica's own thread); the registry and the handler's Admitted hold it.
  std::weak_ptr<Replica> replica_;
  std::string replica_id_;
  std::shared_ptr<State> state_;
};

void FillModelInfo(const ServedModel& model, v1::ModelInfo* info) {
  const ServedModelSpec& s = model.spec();
  info->set_name(s.name);
  info->set_architecture(s.config.architecture);
  info->set_context_length(s.context_length);
  info->set_vocab_size(static_cast<int32_t>(s.config.vocab_size));
  info->set_num_layers(static_cast<int32_t>(s.config.num_layers));
  info->set_hidden_size(static_cast<int32_t>(s.config.hidden_size));
  info->set_num_attention_heads(static_cast<int32_t>(s.config.num_heads));
  info->set_num_kv_heads(static_cast<int32_t>(s.config.num_kv_heads));
  info->set_has_chat_template(s.chat_template != nullptr);
  info->set_ready_replicas(model.ReadyReplicas());
  info->set_max_new_tokens_limit(static_cast<int32_t>(s.context_length - 1));
}

}  // namespace

InferenceService::InferenceService(RequestGate* gate, InferenceServiceOptions options)
    : gate_(gate), registry_(&gate->registry()), options_(std::move(options)) {}

absl::StatusOr<AdmittedRequest> InferenceService::AdmitCall(
    const grpc::CallbackServerContext& context, const grpc::ByteBuffer& raw) {
  v1::GenerateRequest request;
  absl::StatusOr<AdmittedRequest> admitted = absl::UnknownError("");
  if (grpc::Status auth = CheckBearerToken(context, options_.auth_token); !auth.ok()) {
    admitted = absl::Status(static_cast<absl::StatusCode>(auth.error_code()), auth.error_message());
  } else if (absl::Status parsed = ParseMessage(raw, &request); !parsed.ok()) {
    admitted = parsed;
  } else {
    const nlohmann::json body = GenerateRequestToJson(request);
    admitted = gate_->Admit({.model = request.model(),
                             .body = &body,
                             .source = "request",
                             .client_id = request.request_id(),
                             .deadline = CallDeadline(context)});
  }
  if (!admitted.ok() && options_.metrics != nullptr) {
    absl::StatusOr<ServedModel*> served = registry_->Find(request.model());
    options_.metrics->CountRequest("grpc", served.ok() ? (*served)->name() : "",
                                   admitted.status().code());
  }
  return admitted;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  absl::StatusOr<AdmittedRequest> admitted = AdmitCall(*context, *raw);
  if (const grpc::Status status = ToGrpcStatus(admitted.status()); !status.ok()) {
    // A reactor that only finishes.
    class Refusal final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
     public:
      explicit Refusal(grpc::Status s) { Finish(std::move(s)); }
      void OnDone() override { delete this; }
    };
    return new Refusal(status);
  }
  TokenRequest token_request = admitted->request;
  auto* call = new GenerateCall(*admitted, gate_, options_.metrics);
  call->Begin(std::move(token_request));
  return call;
}

grpc::ServerUnaryReactor* InferenceService::Complete(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* raw,
                                                     grpc::ByteBuffer* response) {
  absl::StatusOr<AdmittedRequest> admitted = AdmitCall(*context, *raw);
  if (!admitted.ok()) return Respond(context, ToGrpcStatus(admitted.status()));
  TokenRequest token_request = admitted->request;
  auto* call = new CompleteCall(*admitted, response, gate_, options_.metrics);
  call->Begin(std::move(token_request));
  return call;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* raw,
                                                     grpc::ByteBuffer* raw_response) {
  if (grpc::Status s = CheckBearerToken(*context, options_.auth_token); !s.ok()) {
    return Respond(context, s);
  }
  v1::TokenizeRequest parsed;
  if (absl::Status s = ParseMessage(*raw, &parsed); !s.ok()) {
    return Respond(context, ToGrpcStatus(s));
  }
  const v1::TokenizeRequest* request = &parsed;
  v1::TokenizeResponse tokenized;
  v1::TokenizeResponse* response = &tokenized;
  absl::StatusOr<ServedModel*> model = registry_->Find(request->model());
  if (!model.ok()) return Respond(context, ToGrpcStatus(model.status()));
  const ServedModelSpec& spec = (*model)->spec();
  absl::StatusOr<std::vector<int32_t>> ids;
  if (request->input_case() == v1::TokenizeRequest::kText) {
    EncodeOptions options;
    options.add_bos = request->add_special_tokens();
    options.add_eos = false;
    ids = spec.tokenizer->Encode(request->text(), options);
  } else if (request->input_case() == v1::TokenizeRequest::kMessages) {
    if (spec.chat_template == nullptr) {
      return Respond(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                           "field 'messages' needs a chat template: " +
                                               spec.chat_template_error));
    }
    std::vector<ChatMessage> messages;
    for (const auto& m : request->messages().messages()) {
      messages.push_back({m.role(), m.content()});
    }
    if (messages.empty()) {
      return Respond(context,
                     grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "field 'messages' is empty"));
    }
    ids = EncodeChat(*spec.tokenizer, *spec.chat_template, messages,
                     /*add_generation_prompt=*/true);
  } else {
    return Respond(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                         "missing field 'text' or 'messages'"));
  }
  if (!ids.ok()) return Respond(context, ToGrpcStatus(ids.status()));
  for (int32_t id : *ids) {
    response->add_token_ids(id);
    absl::StatusOr<std::string> piece = spec.tokenizer->TokenBytes(id);
    response->add_tokens(piece.ok() ? *piece : "");
  }
  return Respond(context, ToGrpcStatus(SerializeMessage(tokenized, raw_response)));
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* context,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  if (grpc::Status s = CheckBearerToken(*context, options_.auth_token); !s.ok()) {
    return Respond(context, s);
  }
  absl::StatusOr<ServedModel*> model = registry_->Find(request->model());
  if (!model.ok()) return Respond(context, ToGrpcStatus(model.status()));
  const Tokenizer& tokenizer = *(*model)->spec().tokenizer;
  std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= tokenizer.vocab_size()) {
      return Respond(context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                           absl::StrFormat("field 'token_ids[%d]' is %d; the "
                                                           "vocabulary has %d tokens",
                                                           i, ids[i], tokenizer.vocab_size())));
    }
  }
  absl::StatusOr<std::string> text = tokenizer.Decode(ids, request->skip_special_tokens());
  if (!text.ok()) return Respond(context, ToGrpcStatus(text.status()));
  response->set_text(*std::move(text));
  return Respond(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const v1::ListModelsRequest* request,
                                                       v1::ListModelsResponse* response) {
  if (grpc::Status s = CheckBearerToken(*context, options_.auth_token); !s.ok()) {
    return Respond(context, s);
  }
  for (const ServedModel* model : registry_->models())
    FillModelInfo(*model, response->add_models());
  return Respond(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* context,
                                                         const v1::GetModelInfoRequest* request,
                                                         v1::ModelInfo* response) {
  if (grpc::Status s = CheckBearerToken(*context, options_.auth_token); !s.ok()) {
    return Respond(context, s);
  }
  absl::StatusOr<ServedModel*> model = registry_->Find(request->model());
  if (!model.ok()) return Respond(context, ToGrpcStatus(model.status()));
  FillModelInfo(**model, response);
  return Respond(context, grpc::Status::OK);
}

}  // namespace tessera
