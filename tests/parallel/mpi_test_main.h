// The main() of the GoogleTest binaries that mpirun starts (one process per rank): MPI is
// initialized before the tests and finalized after; every rank runs every test (they make
// the same collective calls), and only rank 0 prints results. mpirun's exit code is
// non-zero when any rank fails.
#pragma once

#include "parallel/mpi_communicator.h"

namespace tessera::testing {

// Every rank of the job (a duplicate of MPI_COMM_WORLD), alive for the whole test run.
MpiCommunicator& World();

}  // namespace tessera::testing
