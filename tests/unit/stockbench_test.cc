// stockbench's pure parts: the latency histogram, the open-loop schedule (coordinated-omission
// accounting depends on it) and the flag parsers.
#include <gtest/gtest.h>

#include <cmath>

#include "codecs.h"
#include "config.h"
#include "histogram.h"
#include "schedule.h"

namespace stockd::bench {
namespace {

TEST(HistogramTest, SmallValuesAreExactAndLargeOnesWithinOneSixtyFourth) {
  for (uint64_t v = 0; v < 64; ++v) EXPECT_EQ(bucket_upper(bucket_of(v)), v);
  for (uint64_t v : {64ull, 100ull, 1'000ull, 123'456ull, 9'876'543'210ull}) {
    uint64_t up = bucket_upper(bucket_of(v));
    EXPECT_GE(up, v);
    EXPECT_LE(static_cast<double>(up - v), static_cast<double>(v) / 64.0 + 1) << v;
  }
}

TEST(HistogramTest, PercentilesOfAKnownDistribution) {
  Histogram h;
  for (uint64_t i = 1; i <= 10'000; ++i) h.record(i * 1000);  // 1 us .. 10 ms, uniform
  EXPECT_EQ(h.count(), 10'000u);
  EXPECT_EQ(h.max(), 10'000'000u);
  auto near = [](uint64_t got, double want) {
    return std::fabs(static_cast<double>(got) - want) <= want / 64.0 + 1000;
  };
  EXPECT_TRUE(near(h.percentile(50), 5'000'000)) << h.percentile(50);
  EXPECT_TRUE(near(h.percentile(99), 9'900'000)) << h.percentile(99);
  EXPECT_LE(h.percentile(100), h.max());
  EXPECT_NEAR(h.mean(), 5'000'500, 1);
  Histogram empty;
  EXPECT_EQ(empty.percentile(99), 0u);
}

TEST(HistogramTest, MergeAndDrainLoseNothing) {
  Histogram a, b;
  a.record(10);
  b.record(1'000'000);
  a.merge(b);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_EQ(a.max(), 1'000'000u);
  AtomicHistogram at;
  for (int i = 0; i < 100; ++i) at.record(500);
  Histogram out;
  at.drain_into(out);
  at.drain_into(out);  // a second drain adds nothing
  EXPECT_EQ(out.count(), 100u);
}

TEST(ScheduleTest, ConstantRateSpacesRequestsEvenly) {
  Config c;
  c.rate = 1000;
  c.duration_s = 2;
  Schedule s(c, 1.0);
  EXPECT_EQ(s.due_ns(0), 0);
  EXPECT_NEAR(static_cast<double>(s.due_ns(1)), 1e6, 1e3);     // 1 ms apart
  EXPECT_NEAR(static_cast<double>(s.due_ns(1000)), 1e9, 1e3);  // 1,000th after 1 s
  EXPECT_EQ(s.due_ns(2001), -1);                               // past the end
  EXPECT_NEAR(s.expected_requests(), 2000, 1);
}

TEST(ScheduleTest, StagesRampLinearly) {
  Config c;
  Result<std::vector<Stage>> stages = parse_stages("2s:100,2s:100");
  ASSERT_TRUE(stages.ok()) << stages.status().message();
  c.stages = *stages;
  Schedule s(c, 1.0);
  // Ramp 0 -> 100/s over 2 s brings 100 arrivals; then 100/s for 2 s brings 200 more.
  EXPECT_NEAR(s.expected_requests(), 300, 1);
  EXPECT_NEAR(static_cast<double>(s.due_ns(100)) / 1e9, 2.0, 0.01);
  EXPECT_NEAR(static_cast<double>(s.due_ns(200)) / 1e9, 3.0, 0.01);
  // Half the share, half the arrivals: threads split the rate.
  Schedule half(c, 0.5);
  EXPECT_NEAR(half.expected_requests(), 150, 1);
}

TEST(ParseTest, DurationsStagesAndTargets) {
  double s = 0;
  EXPECT_TRUE(parse_duration("500ms", s));
  EXPECT_DOUBLE_EQ(s, 0.5);
  EXPECT_TRUE(parse_duration("2m", s));
  EXPECT_DOUBLE_EQ(s, 120);
  EXPECT_FALSE(parse_duration("ten", s));
  EXPECT_FALSE(parse_duration("", s));
  Result<std::vector<Stage>> st = parse_stages("5s:300,10s:1000");
  ASSERT_TRUE(st.ok()) << st.status().message();
  ASSERT_EQ(st->size(), 2u);
  EXPECT_DOUBLE_EQ((*st)[1].rate, 1000);
  EXPECT_EQ(parse_stages("5s").status().message(),
            "stage '5s' is not DURATION:RATE (like 10s:1000)");
  EXPECT_FALSE(parse_stages("5s:-3").ok());
  EXPECT_EQ(parse_mix("buy-now=70,query=30")->size(), 2u);
  EXPECT_FALSE(parse_mix("mixed=1").ok());
  Config c;
  EXPECT_TRUE(parse_target("redis://127.0.0.1:6379", c).ok());
  EXPECT_EQ(c.target, TargetKind::kRedis);
  EXPECT_EQ(parse_target("ftp://x:1", c).message(),
            "unknown target 'ftp://x:1' (use stockd://HOST:PORT or redis://HOST:PORT)");
  EXPECT_EQ(parse_target("stockd://nohost", c).code(), Status::Code::kInvalid);
  c = Config();
  c.skus = {"A"};
  EXPECT_TRUE(validate(c).ok());
  c.qty = 0;
  EXPECT_EQ(validate(c).message(), "--qty must be at least 1");
}

// The requests name SKUs by sku_text(), which builds a numbered SKU's name instead of reading
// Config::skus: the names must be the ones seeded and checked (Config::skus).
TEST(ParseTest, SkuNamesInRequestsAreTheListed) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"stockbench", "--skus", "12", "--sku-prefix", "drop-"},
        std::vector<std::string>{"stockbench", "--skus", "3"},
        std::vector<std::string>{"stockbench", "--sku", "the-one"}}) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    Config c;
    ASSERT_EQ(parse_args(static_cast<int>(argv.size()), argv.data(), c), -1) << args[1];
    ASSERT_FALSE(c.skus.empty());
    for (uint32_t i = 0; i < c.skus.size(); ++i) EXPECT_EQ(sku_text(c, i), c.skus[i]) << i;
  }
}

}  // namespace
}  // namespace stockd::bench
