#include "coordinator/model_registry.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tessera {

ServedModel::ServedModel(ServedModelSpec spec) : spec_(std::move(spec)) {}

TokenRequestContext ServedModel::RequestContext(bool chat) const {
  TokenRequestContext c;
  c.tokenizer = spec_.tokenizer.get();
  c.chat_template = spec_.chat_template.get();
  c.chat_template_error = spec_.chat_template_error;
  c.chat = chat;
  c.defaults = &spec_.defaults;
  if (spec_.default_max_new_tokens > 0) {
    c.default_max_new_tokens = [limit = spec_.default_max_new_tokens](int64_t) { return limit; };
  }
  c.context_length = spec_.context_length;
  c.cap_to_context = false;
  return c;
}

void ServedModel::AddReplica(std::shared_ptr<Replica> replica) {
  absl::MutexLock lock(&mu_);
  replicas_.push_back(std::move(replica));
}

void ServedModel::RemoveReplica(const Replica* replica) {
  absl::MutexLock lock(&mu_);
  std::erase_if(replicas_, [&](const auto& r) { return r.get() == replica; });
}

absl::StatusOr<std::shared_ptr<Replica>> ServedModel::PickReplica(
    std::span<const int32_t> prompt) const {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Replica> least;
  int64_t least_tokens = 0;
  std::shared_ptr<Replica> preferred;
  int64_t preferred_tokens = 0;
  uint64_t preferred_score = 0;
  const bool affinity = prompt.size() >= kAffinityTokens;
  const uint64_t key =
      affinity
          ? absl::HashOf(std::vector<int32_t>(prompt.begin(), prompt.begin() + kAffinityTokens))
          : 0;
  for (const auto& r : replicas_) {
    const ReplicaLoad load = r->Load();
    if (!load.ready) continue;
    if (least == nullptr || load.outstanding_tokens < least_tokens) {
      least = r;
      least_tokens = load.outstanding_tokens;
    }
    if (affinity) {
      const uint64_t score = absl::HashOf(key, r->Info().id);
      if (preferred == nullptr || score > preferred_score) {
        preferred = r;
        preferred_score = score;
        preferred_tokens = load.outstanding_tokens;
      }
    }
  }
  if (least == nullptr) {
    return absl::UnavailableError(absl::StrFormat("model '%s' has no ready replica (%d registered)",
                                                  spec_.name, replicas_.size()));
  }
  if (preferred != nullptr && preferred_tokens <= least_tokens + kAffinitySlackTokens) {
    return preferred;
  }
  return least;
}

std::vector<std::shared_ptr<Replica>> ServedModel::replicas() const {
  absl::MutexLock lock(&mu_);
  return replicas_;
}

int ServedModel::ReadyReplicas() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(std::count_if(replicas_.begin(), replicas_.end(),
                                        [](const auto& r) { return r->Load().ready; }));
}

absl::StatusOr<ServedModel*> ModelRegistry::Add(ServedModelSpec spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("a served model needs a name");
  if (spec.tokenizer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "' has no tokenizer"));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& m : models_) {
    if (m->name() == spec.name) {
      return absl::AlreadyExistsError(absl::StrCat("model '", spec.name, "' is served already"));
    }
  }
  models_.push_back(std::make_unique<ServedModel>(std::move(spec)));
  return models_.back().get();
}

absl::StatusOr<ServedModel*> ModelRegistry::Find(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  if (name.empty()) {
    if (models_.size() == 1) return models_.front().get();
    return absl::InvalidArgumentError(absl::StrFormat(
        "field 'model' is empty and this server serves %d models; name one", models_.size()));
  }
  for (const auto& m : models_) {
    if (m->name() == name) return m.get();
  }
  std::vector<std::string> names;
  for (const auto& m : models_) names.push_back(m->name());
  return absl::NotFoundError(absl::StrFormat("field 'model': unknown model '%s' (served: %s)", name,
                                             absl::StrJoin(names, ", ")));
}

std::vector<ServedModel*> ModelRegistry::models() const {
  absl::MutexLock lock(&mu_);
  std::vector<ServedModel*> out;
  for (const auto& m : models_) out.push_back(m.get());
  return out;
}

}  // namespace tessera
