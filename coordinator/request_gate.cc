#include "coordinator/request_gate.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace tessera {

absl::StatusOr<AdmittedRequest> RequestGate::Admit(const AdmissionInput& input) {
  if (draining_) {
    return absl::UnavailableError("the server is draining and admits no new requests");
  }
  const int64_t serial = next_request_++;
  AdmittedRequest a;
  ASSIGN_OR_RETURN(a.model, registry_->Find(input.model));
  if (input.client_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrFormat("field 'request_id' has %d bytes; at most %d",
                                                      input.client_id.size(), kMaxRequestIdBytes));
  }
  ASSIGN_OR_RETURN(
      a.request, BuildTokenRequest(*input.body, input.source, a.model->RequestContext(input.chat)));
  a.client_id = input.client_id.empty() ? absl::StrCat(std::string(input.id_prefix), serial)
                                        : std::string(input.client_id);
  // Replica ids are the server's own, so clients' ids never collide there.
  a.request.spec.request_id = absl::StrCat(serial, ":", a.client_id);
  a.request.spec.deadline = input.deadline;
  ASSIGN_OR_RETURN(a.replica, a.model->PickReplica(a.request.spec.prompt_token_ids));
  return a;
}

}  // namespace tessera
