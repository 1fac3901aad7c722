// ModelRegistry lookups and ServedModel routing: least outstanding tokens, prefix affinity
// with a bound on imbalance, readiness.
#include "coordinator/model_registry.h"

#include <memory>
#include <numeric>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/coordinator/fake_replica.h"

namespace tessera {
namespace {

using testing::FakeReplica;
using ::testing::HasSubstr;

std::shared_ptr<FakeReplica> MakeReplica(const std::string& id, int64_t outstanding) {
  auto r = std::make_shared<FakeReplica>(std::vector<int32_t>{1});
  r->set_id(id);
  r->set_outstanding_tokens(outstanding);
  return r;
}

std::vector<int32_t> Prompt(int first, size_t length) {
  std::vector<int32_t> ids(length);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

class RoutingTest : public ::testing::Test {
 protected:
  static ServedModelSpec Spec(std::string name) {
    ServedModelSpec spec;
    spec.name = std::move(name);
    return spec;
  }
  RoutingTest() : model_(Spec("m")) {}
  ServedModel model_;
};

TEST_F(RoutingTest, ShortPromptsGoToTheLeastLoadedReadyReplica) {
  auto busy = MakeReplica("a", 500);
  auto idle = MakeReplica("b", 10);
  auto not_ready = MakeReplica("c", 0);
  not_ready->set_ready(false);
  model_.AddReplica(busy);
  model_.AddReplica(idle);
  model_.AddReplica(not_ready);
  EXPECT_EQ(*model_.PickReplica(Prompt(0, 8)), idle);
  idle->set_outstanding_tokens(900);
  EXPECT_EQ(*model_.PickReplica(Prompt(0, 8)), busy);
  EXPECT_EQ(model_.ReadyReplicas(), 2);
}

TEST_F(RoutingTest, ASharedPrefixKeepsToOneReplicaUntilItIsOverloaded) {
  std::vector<std::shared_ptr<FakeReplica>> replicas;
  for (const char* id : {"a", "b", "c", "d"}) {
    replicas.push_back(MakeReplica(id, 0));
    model_.AddReplica(replicas.back());
  }
  // The same first 32 tokens (a system prompt) with different questions after it.
  std::vector<int32_t> first = Prompt(100, 40);
  std::vector<int32_t> second = Prompt(100, 40);
  second.back() = 7;
  const auto chosen = *model_.PickReplica(first);
  EXPECT_EQ(*model_.PickReplica(second), chosen);
  // Different prefixes spread over the replicas.
  std::set<tessera::Replica*> used;
  for (int i = 0; i < 64; ++i) used.insert(model_.PickReplica(Prompt(1000 * i, 40))->get());
  EXPECT_GE(used.size(), 3u);
  // Past the slack, load wins.
  for (auto& r : replicas) {
    r->set_outstanding_tokens(r.get() == chosen.get() ? ServedModel::kAffinitySlackTokens + 1 : 0);
  }
  EXPECT_NE(*model_.PickReplica(first), chosen);
  for (auto& r : replicas) {
    r->set_outstanding_tokens(r.get() == chosen.get() ? ServedModel::kAffinitySlackTokens : 0);
  }
  EXPECT_EQ(*model_.PickReplica(first), chosen);
}

TEST_F(RoutingTest, NoReadyReplicaIsUnavailable) {
  auto r = MakeReplica("a", 0);
  r->set_ready(false);
  model_.AddReplica(r);
  auto picked = model_.PickReplica(Prompt(0, 40));
  EXPECT_EQ(picked.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(picked.status().message(), HasSubstr("'m'"));
  model_.RemoveReplica(r.get());
  EXPECT_TRUE(model_.replicas().empty());
}

TEST(ModelRegistryTest, FindsModelsByName) {
  ModelRegistry registry;
  ServedModelSpec spec;
  spec.name = "x";
  EXPECT_EQ(registry.Add(spec).status().code(),
            absl::StatusCode::kInvalidArgument);  // no tokenizer
  EXPECT_EQ(registry.Find("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
