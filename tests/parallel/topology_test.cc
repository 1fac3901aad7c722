#include "parallel/topology.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TopologyTest, RanksAreStageMajor) {
  // tp 3 x pp 2: stage 0 is ranks 0-2, stage 1 ranks 3-5.
  auto t = Topology::Create(6, 4, 3, 2);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->stage(), 1);
  EXPECT_EQ(t->tp_rank(), 1);
  EXPECT_FALSE(t->is_leader());
  EXPECT_TRUE(t->is_last_stage());
  EXPECT_THAT(t->TensorGroup(), ElementsAre(3, 4, 5));
  EXPECT_THAT(t->PipelineGroup(), ElementsAre(1, 4));
  EXPECT_EQ(t->RankAt(0, 2), 2);
  EXPECT_THAT(t->ToString(), HasSubstr("stage 1 of 2"));
  auto leader = Topology::Create(6, 0, 3, 2);
  ASSERT_TRUE(leader.ok());
  EXPECT_TRUE(leader->is_leader() && leader->is_first_stage());
}

TEST(TopologyTest, RejectsLayoutsThatDoNotMatchTheWorld) {
  EXPECT_THAT(std::string(Topology::Create(4, 0, 3, 1).status().message()),
              HasSubstr("world size 4"));
  EXPECT_THAT(std::string(Topology::Create(2, 0, 0, 2).status().message()), HasSubstr("tp"));
  EXPECT_THAT(std::string(Topology::Create(2, 0, 2, 0).status().message()), HasSubstr("pp"));
  EXPECT_EQ(Topology::Create(2, 2, 2, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera
