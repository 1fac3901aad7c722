// The models a coordinator serves, by name, each with what the coordinator needs to speak
// text for it (tokenizer, chat template, limits, default decoding settings) and its
// replicas, among which it routes.
//
// Thread-safety: Add before serving; Find, PickReplica and the replica lists from any
// thread (AddReplica / RemoveReplica may run while serving).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/replica.h"
#include "coordinator/token_request.h"
#include "decoding/generation_config.h"
#include "formats/model_config.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tessera {

struct ServedModelSpec {
  std::string name;    // what clients put in `model`
  ModelConfig config;  // architecture and shapes, for GetModelInfo
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const ChatTemplate> chat_template;  // null: the model has none
  std::string chat_template_error;                    // why it has none
  GenerationConfig defaults;                          // the model's generation_config
  int64_t context_length = 0;                         // prompt + generated tokens, at most
  int64_t default_max_new_tokens = 0;  // when a request sets none; 0: the rest of the context
  // For the shard planner that answers registering leaders: the weights' quantization
  // block (FFN splits fall on it) and their average bytes per element.
  int64_t ffn_alignment = 32;
  double bytes_per_weight = 4.0;
};

class ServedModel {
 public:
  explicit ServedModel(ServedModelSpec spec);

  const ServedModelSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  // For BuildTokenRequest: the server's rules (a max_new_tokens beyond the context is an
  // error, not cut).
  TokenRequestContext RequestContext(bool chat) const;

  void AddReplica(std::shared_ptr<Replica> replica);
  void RemoveReplica(const Replica* replica);
  // Routing (SGLang's cache-aware idea, kept simple): a prompt of at least kAffinityTokens
  // goes to the replica its first kAffinityTokens hash to (rendezvous hashing over the
  // ready replicas), so requests that share a system prompt meet that replica's prefix
  // cache, unless that replica has more than kAffinitySlackTokens more outstanding tokens
  // than the least loaded one; everything else goes to the ready replica with the fewest
  // outstanding tokens. UNAVAILABLE naming the model when none is ready.
  static constexpr size_t kAffinityTokens = 32;
  static constexpr int64_t kAffinitySlackTokens = 4096;
  [[nodiscard]] absl::StatusOr<std::shared_ptr<Replica>> PickReplica(
      std::span<const int32_t> prompt = {}) const;
  std::vector<std::shared_ptr<Replica>> replicas() const;
  int ReadyReplicas() const;

 private:
  ServedModelSpec spec_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Replica>> replicas_ ABSL_GUARDED_BY(mu_);
};

class ModelRegistry {
 public:
  // INVALID_ARGUMENT for an empty name or no tokenizer, ALREADY_EXISTS for a name in use.
  [[nodiscard]] absl::StatusOr<ServedModel*> Add(ServedModelSpec spec);
  // The model called `name`; an empty name means the only model served. NOT_FOUND naming
  // the field `model` and listing the names served; INVALID_ARGUMENT for an empty name
  // when several are served.
  [[nodiscard]] absl::StatusOr<ServedModel*> Find(std::string_view name) const;
  std::vector<ServedModel*> models() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<ServedModel>> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tessera
