#include "decoding/stop_strings.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tessera {
namespace {

// Feeds `pieces` one by one and returns everything emitted, checking that no emitted text
// ever contains the start of a stop string that later completes.
std::string FeedAll(StopStringMatcher& m, const std::vector<std::string>& pieces, bool* stopped) {
  std::string out;
  for (const std::string& p : pieces) {
    const StopStringMatcher::Result r = m.Feed(p);
    out += r.text;
    if (r.stopped) {
      *stopped = true;
      return out;
    }
  }
  *stopped = false;
  return out + m.Flush();
}

TEST(StopStringMatcherTest, StopsBeforeTheStopStringAcrossPieces) {
  StopStringMatcher m({"\n\nUser:", "###"});
  bool stopped = false;
  EXPECT_EQ(FeedAll(m, {"Hello", " world", "\n", "\nUs", "er:", " more"}, &stopped), "Hello world");
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(m.Feed("anything").text.empty()) << "nothing after a stop";
}

TEST(StopStringMatcherTest, HoldsBackOnlyWhatCouldStartAStop) {
  StopStringMatcher m({"abc"});
  EXPECT_EQ(m.Feed("xxa").text, "xx");   // "a" may start "abc"
  EXPECT_EQ(m.Feed("b").text, "");       // "ab" too
  EXPECT_EQ(m.Feed("x").text, "abx");    // no longer
  EXPECT_EQ(m.Feed("ab").text, "");
  EXPECT_EQ(m.Flush(), "ab") << "held text comes out when generation ends";
}

TEST(StopStringMatcherTest, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"world", "lo w"});
  bool stopped = false;
  EXPECT_EQ(FeedAll(m, {"hello world"}, &stopped), "hel");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(StopStringMatcher::FindFirst("a--b==c", {"==", "--"}), 1u);
  EXPECT_FALSE(StopStringMatcher::FindFirst("abc", {"x"}).has_value());
}

TEST(StopStringMatcherTest, OverlappingPrefixes) {
  // "aab" after "aaab": the held-back tail must be the longest proper prefix.
  StopStringMatcher m({"aab"});
  bool stopped = false;
  EXPECT_EQ(FeedAll(m, {"a", "a", "a", "b"}, &stopped), "a");
  EXPECT_TRUE(stopped);
}

TEST(StopStringMatcherTest, MultibyteTextIsNeverSplit) {
  StopStringMatcher m({"é!"});
  bool stopped = false;
  EXPECT_EQ(FeedAll(m, {"caf", "é", "!"}, &stopped), "caf");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace tessera
