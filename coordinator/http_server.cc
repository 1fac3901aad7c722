#include "coordinator/http_server.h"

#include <csignal>
#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/bearer_token.h"
#include "coordinator/completion_stream.h"
#include "coordinator/openai_request.h"
#include "coordinator/openai_response.h"
#include "httplib.h"

namespace tessera {

namespace v1 = ::tessera::v1;
using nlohmann::json;

// One generation request: the replica's thread pushes its events, the connection's thread
// takes them.
struct HttpServer::Call {
  Call(std::weak_ptr<Replica> r, std::string id)
      : replica(std::move(r)), replica_id(std::move(id)) {}

  void Push(ReplicaEvent event) {
    absl::MutexLock lock(&mu);
    events.push_back(std::move(event));
  }
  // The next event, or nullopt after `timeout`.
  std::optional<ReplicaEvent> Pop(absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return !events.empty(); };
    if (!mu.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
    ReplicaEvent event = std::move(events.front());
    events.pop_front();
    return event;
  }
  void Cancel() {
    if (auto r = replica.lock()) r->Cancel(replica_id);
  }

  // Weak: a call must never hold a replica alive (its last reference could then drop on the
  // replica's own thread, which its destructor joins).
  const std::weak_ptr<Replica> replica;
  const std::string replica_id;
  absl::Mutex mu;
  std::deque<ReplicaEvent> events ABSL_GUARDED_BY(mu);
};

namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(500);
constexpr absl::Duration kKeepAliveInterval = absl::Seconds(15);

void SendError(httplib::Response& res, const absl::Status& status) {
  res.status = HttpStatusFor(status.code());
  res.set_content(DumpJson(OpenAiErrorBody(status)), "application/json");
}

void SendJson(httplib::Response& res, const json& body) {
  res.status = 200;
  res.set_content(DumpJson(body), "application/json");
}

std::string SseData(const json& body) { return absl::StrCat("data: ", DumpJson(body), "\n\n"); }

absl::Status CheckAuth(const httplib::Request& req, const std::string& token) {
  if (token.empty()) return absl::OkStatus();
  if (!req.has_header("Authorization")) {
    return absl::UnauthenticatedError("missing 'Authorization' header (expected 'Bearer <token>')");
  }
  if (!BearerTokenMatches(req.get_header_value("Authorization"), token)) {
    return absl::UnauthenticatedError("'Authorization' header does not carry a valid bearer token");
  }
  return absl::OkStatus();
}

json ModelObject(const ServedModel& model, int64_t created) {
  return {{"id", model.name()},
          {"object", "model"},
          {"created", created},
          {"owned_by", "tessera"},
          {"max_model_len", model.spec().context_length},
          {"ready_replicas", model.ReadyReplicas()}};
}

}  // namespace

HttpServer::HttpServer(RequestGate* gate, ServingMetrics* metrics, HttpServerOptions options)
    : gate_(gate), metrics_(metrics), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(RequestGate* gate,
                                                              ServingMetrics* metrics,
                                                              HttpServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("HTTP port must be in [0, 65535] (is %d)", options.port));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("HTTP threads must be at least 1 (is %d)", options.threads));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and a key file");
  }
  // cpp-httplib writes with plain send(): a client that went away must fail the write, not
  // kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<HttpServer> server(new HttpServer(gate, metrics, options));
  if (options.tls_cert_file.empty()) {
    server->server_ = std::make_unique<httplib::Server>();
  } else {
    auto tls = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                    options.tls_key_file.c_str());
    if (!tls->is_valid()) {
      return absl::UnavailableError(absl::StrCat("cannot load the TLS certificate ",
                                                 options.tls_cert_file, " and key ",
                                                 options.tls_key_file));
    }
    server->server_ = std::move(tls);
  }
  const int threads = options.threads;
  server->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server->server_->set_payload_max_length(options.max_body_bytes);
  server->Routes();
  if (options.port == 0) {
    server->port_ = server->server_->bind_to_any_port(options.host);
  } else if (server->server_->bind_to_port(options.host, options.port)) {
    server->port_ = options.port;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", options.host, ":", options.port));
  }
  server->listener_ = std::thread([raw = server->server_.get()] { raw->listen_after_bind(); });
  return server;
}

HttpServer::~HttpServer() { Shutdown(); }

void HttpServer::Shutdown() {
  std::vector<std::shared_ptr<Call>> calls;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (const auto& [id, weak] : calls_) {
      if (auto call = weak.lock()) calls.push_back(std::move(call));
    }
  }
  // Cancelled requests end within a step; their streams then finish on their own.
  for (const auto& call : calls) call->Cancel();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&mu_);
      if (calls_.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

void HttpServer::Track(const std::string& replica_id, std::shared_ptr<Call> call) {
  absl::MutexLock lock(&mu_);
  calls_[replica_id] = call;
}

void HttpServer::Untrack(const std::string& replica_id) {
  absl::MutexLock lock(&mu_);
  calls_.erase(replica_id);
}

void HttpServer::Routes() {
  httplib::Server& s = *server_;
  const int64_t started = absl::ToUnixSeconds(absl::Now());

  s.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    int ready = 0;
    for (const ServedModel* m : gate_->registry().models()) ready += m->ReadyReplicas();
    const bool serving = !gate_->draining() && ready > 0;
    res.status = serving ? 200 : 503;
    res.set_content(serving ? "ready\n" : (gate_->draining() ? "draining\n" : "no ready replica\n"),
                    "text/plain");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/v1/models", [this, started](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status a = CheckAuth(req, options_.auth_token); !a.ok()) return SendError(res, a);
    json data = json::array();
    for (const ServedModel* m : gate_->registry().models())
      data.push_back(ModelObject(*m, started));
    SendJson(res, {{"object", "list"}, {"data", std::move(data)}});
  });
  s.Get(R"(/v1/models/(.+))", [this, started](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status a = CheckAuth(req, options_.auth_token); !a.ok()) return SendError(res, a);
    absl::StatusOr<ServedModel*> model = gate_->registry().Find(req.matches[1].str());
    if (!model.ok()) return SendError(res, model.status());
    SendJson(res, ModelObject(**model, started));
  });
  for (const auto& [path, endpoint] :
       {std::pair{"/v1/completions", OpenAiEndpoint::kCompletions},
        std::pair{"/v1/chat/completions", OpenAiEndpoint::kChatCompletions}}) {
    s.Post(path, [this, endpoint = endpoint](const httplib::Request& req, httplib::Response& res) {
      Generate(req, res, endpoint);
    });
  }
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const absl::Status status =
        res.status == 404
            ? absl::NotFoundError(absl::StrCat("no route for ", req.method, " ", req.path))
        : res.status == 413 ? absl::InvalidArgumentError("the request body is too large")
                            : absl::InvalidArgumentError(
                                  absl::StrCat("the request was refused with HTTP ", res.status));
    const int code = res.status;
    res.set_content(DumpJson(OpenAiErrorBody(status)), "application/json");
    res.status = code;
  });
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          what = ex.what();
        } catch (...) {
        }
        SendError(res, absl::InternalError(absl::StrCat("internal error: ", what)));
      });
}

void HttpServer::Generate(const httplib::Request& req, httplib::Response& res,
                          OpenAiEndpoint endpoint) {
  std::string model_label;
  auto refuse = [&](const absl::Status& status) {
    metrics_->CountRequest("http", model_label, status.code());
    SendError(res, status);
  };
  if (absl::Status a = CheckAuth(req, options_.auth_token); !a.ok()) return refuse(a);
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded())
    return refuse(absl::InvalidArgumentError("the request body is not valid JSON"));
  absl::StatusOr<OpenAiRequest> request = ParseOpenAiRequest(body, endpoint);
  if (!request.ok()) return refuse(request.status());
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return refuse(absl::UnavailableError("the server is shutting down"));
  }
  if (absl::StatusOr<ServedModel*> m = gate_->registry().Find(request->model); m.ok()) {
    model_label = (*m)->name();
  }
  auto ticket = std::make_shared<RequestGate::CallTicket>(gate_);
  absl::StatusOr<AdmittedRequest> admitted =
      gate_->Admit({.model = request->model,
                    .body = &request->body,
                    .source = "request",
                    .client_id = request->request_id,
                    .id_prefix = chat ? "chatcmpl-" : "cmpl-",
                    .chat = chat});
  if (!admitted.ok()) return refuse(admitted.status());

  const std::string replica_id = admitted->request.spec.request_id;
  auto call = std::make_shared<Call>(admitted->replica, replica_id);
  Track(replica_id, call);
  const int prompt_tokens = static_cast<int>(admitted->request.spec.prompt_token_ids.size());
  const Tokenizer* tokenizer = admitted->model->spec().tokenizer.get();
  auto stream = std::make_shared<CompletionStream>(tokenizer, admitted->client_id, prompt_tokens,
                                                   admitted->request.stop_ids,
                                                   admitted->request.stop_strings);
  auto responder = std::make_shared<OpenAiResponder>(*request, admitted->client_id, model_label,
                                                     absl::ToUnixSeconds(absl::Now()), tokenizer);
  admitted->replica->Submit(
      std::move(admitted->request),
      metrics_->Observe(model_label, prompt_tokens,
                        [call](ReplicaEvent event) { call->Push(std::move(event)); }));
  admitted->replica.reset();  // the call holds it weakly from here

  if (!request->stream) {
    absl::Status failed;
    while (true) {
      std::optional<ReplicaEvent> event = call->Pop(kPollInterval);
      if (!event.has_value()) continue;
      if (!event->status.ok()) {
        if (failed.ok()) failed = event->status;
        break;
      }
      if (failed.ok()) {
        // After a failure the replica's last event still comes; it is awaited so that no
        // event outlives the call.
        if (absl::Status s = stream->Next(*event).status(); !s.ok()) {
          call->Cancel();
          failed = s;
        }
      }
      if (event->last()) break;
    }
    Untrack(replica_id);
    if (!failed.ok()) return refuse(failed);
    metrics_->CountRequest("http", model_label, absl::StatusCode::kOk);
    return SendJson(res, responder->Whole(stream->Whole(model_label)));
  }

  // Server-sent events: one event per replica event, written as the client reads them.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  struct StreamState {
    bool done = false;
    bool cancelled = false;  // the request was cancelled on the replica
    absl::StatusCode outcome = absl::StatusCode::kCancelled;  // until it ends otherwise
    absl::Time last_write = absl::Now();
  };
  auto state = std::make_shared<StreamState>();
  const bool include_usage = request->include_usage;
  res.set_chunked_content_provider(
      "text/event-stream",
      [call, stream, responder, state, include_usage](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& text) {
          state->last_write = absl::Now();
          return sink.write(text.data(), text.size());
        };
        auto finish = [&](const std::string& last, absl::StatusCode outcome) {
          state->done = true;
          state->outcome = outcome;
          // (An empty write would be the chunked encoding's end marker.)
          const bool ok = (last.empty() || write(last)) && write("data: [DONE]\n\n");
          sink.done();
          return ok;
        };
        std::optional<ReplicaEvent> event = call->Pop(kPollInterval);
        if (!event.has_value()) {
          // An SSE comment now and then keeps proxies from closing an idle stream and finds
          // a client that went away.
          if (!sink.is_writable() || (absl::Now() - state->last_write > kKeepAliveInterval &&
                                      !write(": keep-alive\n\n"))) {
            call->Cancel();
            state->cancelled = true;
            return false;
          }
          return true;
        }
        absl::Status failed = event->status;
        absl::StatusOr<v1::GenerateResponse> response =
            failed.ok() ? stream->Next(*event) : absl::StatusOr<v1::GenerateResponse>(failed);
        if (!response.ok()) {
          if (failed.ok()) call->Cancel();  // (a failed replica has ended it already)
          return finish(SseData(OpenAiErrorBody(response.status())), response.status().code());
        }
        for (const json& chunk : responder->Chunks(*response)) {
          if (!write(SseData(chunk))) {
            call->Cancel();
            state->cancelled = true;
            return false;
          }
        }
        if (event->last()) {
          return finish(include_usage ? SseData(responder->UsageChunk(response->usage())) : "",
                        absl::StatusCode::kOk);
        }
        return true;
      },
      [this, call, state, ticket, replica_id, model_label](bool) {
        if (!state->done && !state->cancelled) call->Cancel();
        metrics_->CountRequest("http", model_label, state->outcome);
        Untrack(replica_id);
      });
}

}  // namespace tessera
