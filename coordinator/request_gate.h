// What every front end (tessera.v1 over gRPC, the OpenAI-compatible HTTP API) shares on the
// way in: the drain switch, the calls in flight, and admission itself. Admit validates and
// tokenizes a request (coordinator/token_request.h), gives it a server-unique replica id
// and picks its replica (coordinator/model_registry.h), so both front ends refuse the same
// requests with the same messages.
//
// Thread-safety: every method from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/model_registry.h"
#include "coordinator/token_request.h"
#include "nlohmann/json.hpp"

namespace tessera {

// A request validated, tokenized and bound to a replica, ready to submit.
struct AdmittedRequest {
  ServedModel* model = nullptr;
  std::shared_ptr<Replica> replica;
  TokenRequest request;   // request.spec.request_id is the replica's id for it
  std::string client_id;  // the caller's id (or one made up), echoed in responses
};

struct AdmissionInput {
  std::string_view model;      // empty: the only model served
  const nlohmann::json* body;  // the token_request.h object
  std::string_view source;     // prefix of error messages ("request")
  std::string_view client_id;  // empty: "<id_prefix><serial>"
  std::string_view id_prefix = "req-";
  bool chat = false;  // a "prompt" is wrapped as one user message
  absl::Time deadline = absl::InfiniteFuture();
};

class RequestGate {
 public:
  explicit RequestGate(ModelRegistry* registry) : registry_(registry) {}

  // UNAVAILABLE while draining; NOT_FOUND / INVALID_ARGUMENT naming the field for a bad
  // model or request; UNAVAILABLE when the model has no ready replica.
  [[nodiscard]] absl::StatusOr<AdmittedRequest> Admit(const AdmissionInput& input);

  // Counts a call from admission until its last response is sent.
  class CallTicket {
   public:
    explicit CallTicket(RequestGate* gate) : gate_(gate) { ++gate_->calls_in_flight_; }
    ~CallTicket() { --gate_->calls_in_flight_; }
    CallTicket(const CallTicket&) = delete;
    CallTicket& operator=(const CallTicket&) = delete;

   private:
    RequestGate* gate_;
  };

  int calls_in_flight() const { return calls_in_flight_.load(); }
  // From now on Admit is UNAVAILABLE (the admin API's Drain, SIGTERM).
  void StartDraining() { draining_ = true; }
  bool draining() const { return draining_.load(); }
  ModelRegistry& registry() const { return *registry_; }

  static constexpr size_t kMaxRequestIdBytes = 256;

 private:
  ModelRegistry* registry_;
  std::atomic<int64_t> next_request_ = 0;
  std::atomic<int> calls_in_flight_ = 0;
  std::atomic<bool> draining_ = false;
};

}  // namespace tessera
