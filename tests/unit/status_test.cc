// The one error currency (util/include/stockd/status.h): what a caller relies on when it reads
// a failure's code and message, adds its own context, or takes a value out of a Result.
#include "stockd/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace stockd {
namespace {

TEST(Status, OkHasNoMessageAndEachFailureKeepsItsCode) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().message(), "");
  EXPECT_STREQ(Status::name(Status::Ok().code()), "ok");
  const Status failures[] = {Status::Invalid("a"), Status::Corruption("b"), Status::Io("c"),
                             Status::Refused("d")};
  const char* names[] = {"invalid", "corruption", "io", "refused"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_FALSE(failures[i].ok());
    EXPECT_STREQ(Status::name(failures[i].code()), names[i]);
    EXPECT_EQ(failures[i].message(), std::string(1, static_cast<char>('a' + i)));
  }
}

TEST(Status, AFailureWithoutAMessageStillSaysSomething) {
  // An empty message must never read as "no error" to whoever prints it.
  const Status s = Status::Io("");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "unknown error");
}

TEST(Status, ContextGoesInFrontAndAnOkStatusStaysOk) {
  const Status s = Status::Corruption("checksum mismatch");
  EXPECT_EQ(s.context("log group 17").message(), "log group 17: checksum mismatch");
  EXPECT_EQ(s.context("log group 17").context("data dir d").message(),
            "data dir d: log group 17: checksum mismatch");
  EXPECT_EQ(s.context("x").code(), Status::Code::kCorruption);
  EXPECT_EQ(s.message(), "checksum mismatch");  // the const& overload copies
  EXPECT_TRUE(Status::Ok().context("anything").ok());
  EXPECT_EQ(Status::Ok().context("anything").message(), "");
}

Result<int> half(int n) {
  if (n % 2 != 0) return Status::Invalid(std::to_string(n) + " is odd");
  return n / 2;
}

TEST(Result, HoldsAValueOrTheReasonThereIsNone) {
  Result<int> r = half(8);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(*r, 4);
  EXPECT_EQ(r.value(), 4);
  Result<int> bad = half(7);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalid);
  EXPECT_EQ(bad.status().message(), "7 is odd");
}

TEST(Result, MovesAValueOutWithoutACopy) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(**r, 5);
  std::unique_ptr<int> taken = std::move(r).value();
  EXPECT_EQ(*taken, 5);
}

TEST(ResultDeathTest, ReadingTheValueOfAFailureStopsTheProcess) {
  Result<int> bad = half(3);
  EXPECT_DEATH((void)bad.value(), "the value of a failed Result was read");
  EXPECT_DEATH(Result<int>(Status::Ok()), "a Result needs a value or a failed Status");
}

}  // namespace
}  // namespace stockd
