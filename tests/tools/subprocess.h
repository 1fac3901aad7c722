// Test helper: runs a program with arguments and stdin text, capturing stdout, stderr and
// the exit code.
#pragma once

#include <string>
#include <vector>

namespace tessera::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when the process did not exit normally
  std::string out;
  std::string err;
};

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_text = "");

}  // namespace tessera::testing
