// SIGINT / SIGTERM for the long-running commands (tessera serve, tessera-coordinator):
// blocked in every thread from construction on (construct it before starting any thread),
// and taken synchronously by Wait, so shutdown runs on the main thread, not in a handler.
#pragma once

#include <csignal>

namespace tessera {

class StopSignals {
 public:
  StopSignals();
  // Blocks until SIGINT or SIGTERM arrives; returns which.
  int Wait();
  static const char* Name(int signal) { return signal == SIGINT ? "SIGINT" : "SIGTERM"; }

 private:
  sigset_t set_;
};

}  // namespace tessera
