// Progress reporting: counting, rate, summary, callbacks and duration formatting.
#include "wfm/core/progress.h"

#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace wfm {
namespace {

TEST(ProgressTest, CountsFromManyThreadsAndSummarises) {
  ProgressOptions opt;
  opt.quiet = true;
  Progress p("decode", 400, "frames", opt);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) p.Add(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(p.done(), 400);
  std::string s = p.Finish();
  EXPECT_EQ(s.rfind("decode: 400 frames in ", 0), 0u) << s;
  EXPECT_NE(s.find("frames/s"), std::string::npos) << s;
  EXPECT_EQ(p.Finish(), s);  // idempotent: the summary is frozen at the first Finish
}

TEST(ProgressTest, CallbackSeesFinalCount) {
  ProgressOptions opt;
  opt.quiet = true;
  int64_t last_done = -1, last_total = -1;
  Progress p("x", 10, "items", opt);
  p.SetCallback([&](int64_t d, int64_t t) {
    last_done = d;
    last_total = t;
  });
  p.Add(10);
  p.Finish();
  EXPECT_EQ(last_done, 10);
  EXPECT_EQ(last_total, 10);
}

TEST(ProgressTest, ScopedSinkSeesEveryUpdateOfProgressesMadeOnThisThreadAndCanCancel) {
  ProgressOptions opt;
  opt.quiet = true;
  std::vector<std::pair<int64_t, bool>> seen;
  {
    ScopedProgressSink sink([&](const ProgressUpdate& u) {
      EXPECT_EQ(u.label, "job");
      EXPECT_EQ(u.total, 5);
      seen.emplace_back(u.done, u.finished);
      return u.done < 3;  // ask to stop once 3 are done
    });
    Progress p("job", 5, "items", opt);
    for (int i = 0; i < 4 && !p.cancelled(); ++i) {
      EXPECT_FALSE(p.cancelled());
      std::thread([&] { p.Add(1); }).join();  // reports from worker threads reach the sink too
    }
    EXPECT_TRUE(p.cancelled());
    p.Finish();
    p.Finish();  // reported once
  }
  const std::vector<std::pair<int64_t, bool>> want = {{1, false}, {2, false}, {3, false}, {3, true}};
  EXPECT_EQ(seen, want);
  Progress after("job", 5, "items", opt);  // the guard is gone: no sink
  after.Add(1);
  after.Finish();
  EXPECT_EQ(seen.size(), want.size());
  EXPECT_FALSE(after.cancelled());
}

TEST(ProgressTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(4.24), "4.2 s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3725), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
}

}  // namespace
}  // namespace wfm
