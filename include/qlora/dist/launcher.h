// `qlora-train --nproc-per-node N`: starts N ranks of this program on this machine with the launch contract
// of torchrun --standalone (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free
// MASTER_PORT unless set), so no Python is needed. Like torchrun it sets OMP_NUM_THREADS when unset (here to
// cores / N, at least 1: N processes each using every core oversubscribe the machine), forwards SIGINT and
// SIGTERM to the ranks, and when one rank fails it stops the others (SIGTERM, then SIGKILL after
// `grace_seconds`) instead of leaving them waiting on a dead peer.
#pragma once
#include <string>
#include <vector>

namespace qlora::dist {

// Runs `args` (argv[1..] of the child, without --nproc-per-node) as N ranks of the running executable;
// returns 0 when every rank exited 0, else the first failed rank's exit code (128 + signal when killed).
int launch_local_ranks(int nproc, const std::vector<std::string>& args, int grace_seconds = 30);

}  // namespace qlora::dist
