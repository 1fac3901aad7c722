// Test helper: runs a program with arguments and stdin text, capturing stdout, stderr and
// the exit code; and the check every CLI test makes of a usage error.
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

// Newlines in `s`.
int CountLines(const std::string& s);

// Exit 2 with exactly one line on stderr, which contains `needle` (a gtest expectation).
void ExpectUsageError(const ProcessResult& r, const std::string& needle);

}  // namespace tessera::testing
