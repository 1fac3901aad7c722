#include "tests/parallel/mpi_test_main.h"

#include <cstdio>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace tessera::testing {
namespace {
MpiCommunicator* world = nullptr;
}  // namespace

MpiCommunicator& World() { return *world; }

}  // namespace tessera::testing

int main(int argc, char** argv) {
  auto runtime = tessera::MpiRuntime::Init(&argc, &argv);
  if (!runtime.ok()) {
    std::fprintf(stderr, "%s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  auto world = tessera::MpiCommunicator::World();
  if (!world.ok()) {
    std::fprintf(stderr, "%s\n", std::string(world.status().message()).c_str());
    return 1;
  }
  tessera::testing::world = world->get();
  ::testing::InitGoogleTest(&argc, argv);
  if ((*world)->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
