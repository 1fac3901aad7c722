// The GPU a tessera-worker rank drives: one per rank, chosen before CUDA starts by narrowing
// CUDA_VISIBLE_DEVICES to the rank's local index on its node, so that device 0 of the
// process (the one CudaBackend and NcclCommunicator use) is that GPU in every thread.
#pragma once

#include <optional>
#include <string>

namespace tessera {

// The value CUDA_VISIBLE_DEVICES should take for a rank with local index `local_rank` (null
// when unknown) given its current value `visible` (null when unset): the local rank when
// unset; entry local_rank % n of a list of n > 1 devices; nullopt to leave it as it is (one
// device given by the launcher, or no local rank).
std::optional<std::string> LocalGpuVisibility(const char* visible, const char* local_rank);

// The CUDA_VISIBLE_DEVICES of replica `replica` (from 0) of `tessera launch`, whose replicas
// run `ranks` ranks of one GPU each: the replica's consecutive share of the launcher's list
// `visible` (null: devices 0, 1, ...), e.g. "4,5" for replica 1 of 2 ranks. nullopt when
// `visible` lists too few devices for that replica.
std::optional<std::string> ReplicaGpus(const char* visible, int replica, int ranks);

// Applies LocalGpuVisibility to this process, reading the launcher's local rank from
// OMPI_COMM_WORLD_LOCAL_RANK, LOCAL_RANK or SLURM_LOCALID. Call before any CUDA call.
void SelectLocalGpu();

}  // namespace tessera
