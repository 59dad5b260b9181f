// stockctl input parsing: numbers, times, seed files (CSV and JSON) and code files.
#include <gtest/gtest.h>

#include <string>

#include "seed.h"

namespace stockd::ctl {
namespace {

constexpr int64_t kNow = 1'795'428'000'000;  // 2026-11-23T10:00:00Z

// The message of a failed parse; "" when it succeeded.
template <class T>
std::string error_of(const Result<T>& r) {
  return r.ok() ? "" : r.status().message();
}

// ---- Numbers ----

TEST(StockctlNumbers, Unsigned) {
  EXPECT_EQ(*parse_unsigned("0", 10), 0u);
  EXPECT_EQ(*parse_unsigned("18446744073709551615", UINT64_MAX), UINT64_MAX);
  EXPECT_FALSE(parse_unsigned("18446744073709551616", UINT64_MAX).ok());
  EXPECT_EQ(error_of(parse_unsigned("11", 10)), "is out of range (at most 10)");
  EXPECT_EQ(parse_unsigned("11", 10).status().code(), Status::Code::kInvalid);
  EXPECT_EQ(error_of(parse_unsigned("-1", 10)), "is not a non-negative integer");
  EXPECT_FALSE(parse_unsigned("+1", 10).ok());
  EXPECT_FALSE(parse_unsigned("", 10).ok());
  EXPECT_FALSE(parse_unsigned("1 ", 10).ok());
  EXPECT_FALSE(parse_unsigned("0x10", 100).ok());
}

TEST(StockctlNumbers, Signed) {
  EXPECT_EQ(*parse_signed("-5"), -5);
  EXPECT_EQ(*parse_signed("+5"), 5);
  EXPECT_EQ(*parse_signed("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(*parse_signed("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(error_of(parse_signed("9223372036854775808")), "is out of range");
  EXPECT_EQ(error_of(parse_signed("-")), "is not an integer");
  EXPECT_EQ(error_of(parse_signed("5x")), "is not an integer");
}

// ---- Times ----

TEST(StockctlTime, Forms) {
  EXPECT_EQ(*parse_time("0", kNow), 0);
  EXPECT_EQ(*parse_time("1795428000000", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-23T10:00:00Z", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-23T10:00Z", kNow), kNow);
  EXPECT_EQ(*parse_time("2026-11-23T10:00:00.25Z", kNow), kNow + 250);
  EXPECT_EQ(*parse_time("2026-11-23T10:00:00.123456Z", kNow), kNow + 123);
  EXPECT_EQ(*parse_time("2026-11-23T10:00:00+00:00", kNow), kNow);
  EXPECT_EQ(*parse_time("1970-01-01T00:00:00Z", kNow), 0);
  EXPECT_TRUE(parse_time("2028-02-29T00:00:00Z", kNow).ok());
  EXPECT_EQ(*parse_time("now", kNow), kNow);
  EXPECT_EQ(*parse_time("now+30s", kNow), kNow + 30'000);
  EXPECT_EQ(*parse_time("now+5m", kNow), kNow + 300'000);
  EXPECT_EQ(*parse_time("now-2h", kNow), kNow - 7'200'000);
  EXPECT_EQ(*parse_time("now+1d", kNow), kNow + 86'400'000);
  EXPECT_EQ(*parse_time("now+250ms", kNow), kNow + 250);
  EXPECT_EQ(*parse_time(" now+1s ", kNow), kNow + 1000);
}

TEST(StockctlTime, Rejects) {
  for (const char* bad : {"",
                          "tomorrow",
                          "-5",
                          "1.5",
                          "now+",
                          "now+5",
                          "now+5y",
                          "now*5s",
                          "nowx",
                          "2026-11-23",
                          "2026-11-23T10:00:00",
                          "2026-11-23T10:00:00+01:00",
                          "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z",
                          "2026-11-23T24:00:00Z",
                          "2026-11-23T10:60:00Z",
                          "2026-11-23T10:00:61Z",
                          "2026-11-23T10:00:00.Z",
                          "1969-12-31T23:59:59Z",
                          "99999999999999999999",
                          "now+99999999999999999999d",
                          "now+9999999999999999d"}) {
    EXPECT_FALSE(parse_time(bad, kNow).ok()) << bad;
  }
}

TEST(StockctlTime, FormatRoundTrips) {
  EXPECT_EQ(format_time(kNow), "2026-11-23T10:00:00Z");
  EXPECT_EQ(format_time(kNow + 5), "2026-11-23T10:00:00.005Z");
  EXPECT_EQ(format_time(0), "1970-01-01T00:00:00Z");
  for (int64_t ms : {kNow, kNow + 999, int64_t{951'782'400'000}}) {
    EXPECT_EQ(*parse_time(format_time(ms), 0), ms);
  }
}

TEST(StockctlText, SkuAndQuote) {
  EXPECT_TRUE(check_sku("A-1").ok());
  EXPECT_TRUE(check_sku(std::string(64, 'x')).ok());
  EXPECT_EQ(check_sku(std::string(65, 'x')).message(), "is 65 bytes, at most 64");
  EXPECT_EQ(check_sku("").message(), "is empty");
  EXPECT_EQ(check_sku("a\tb").message(), "contains a control character");
  EXPECT_EQ(quote("a\"b\x01"), "\"a\\\"b\\x01\"");
  EXPECT_EQ(quote(std::string(100, 'x')).size(), 48u + 5u);
}

// ---- Seed files: CSV ----

TEST(StockctlSeedCsv, Good) {
  auto p = parse_seed("s.csv",
                      "sku,total,per_user_limit,opens_at,closes_at\r\n"
                      "A,100,2,2026-11-23T10:00:00Z,now+1h\r\n"
                      "\r\n"
                      "  B , 5 ,,,\n"
                      "\"C,1\",0,,0,\n"
                      "D,,,,",
                      kNow);
  ASSERT_EQ(error_of(p), "");
  const std::vector<SeedRow>& rows = *p;
  ASSERT_EQ(rows.size(), 4u);
  const auto& a = rows[0];
  EXPECT_EQ(a.where, "s.csv:2");
  EXPECT_EQ(a.req.sku, "A");
  EXPECT_EQ(a.req.total, 100u);
  EXPECT_EQ(a.req.per_user_limit, 2u);
  EXPECT_EQ(a.req.opens_at_ms, kNow);
  EXPECT_EQ(a.req.closes_at_ms, kNow + 3'600'000);
  EXPECT_EQ(a.req.mask,
            proto::kSetTotal | proto::kSetPerUserLimit | proto::kSetOpensAt | proto::kSetClosesAt);
  EXPECT_EQ(rows[1].where, "s.csv:4");
  EXPECT_EQ(rows[1].req.sku, "B");
  EXPECT_EQ(rows[1].req.mask, proto::kSetTotal);
  EXPECT_EQ(rows[1].req.total, 5u);
  EXPECT_EQ(rows[2].req.sku, "C,1");
  EXPECT_EQ(rows[2].req.mask, proto::kSetTotal | proto::kSetOpensAt);
  EXPECT_EQ(rows[3].req.mask, 0);  // creates the SKU, sets nothing
}

TEST(StockctlSeedCsv, ColumnsInAnyOrderAndSubset) {
  auto p = parse_seed("s.csv", "\xEF\xBB\xBFtotal,sku\n7,X\n", kNow);
  ASSERT_EQ(error_of(p), "");
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].req.sku, "X");
  EXPECT_EQ((*p)[0].req.total, 7u);
  EXPECT_EQ((*p)[0].req.mask, proto::kSetTotal);
}

struct BadCase {
  const char* content;
  const char* error;  // the whole message
};

TEST(StockctlSeedCsv, BadLinesNameTheirLine) {
  const BadCase cases[] = {
      {"", "f.csv: the file is empty"},
      {"\n \n", "f.csv: the file is empty"},
      {"sku,total,per_user_limit,opens_at,closes_at\n", "f.csv: no rows after the header"},
      {"sku,price\nA,1\n",
       "f.csv:1: unknown column \"price\" (expected sku,total,per_user_limit,opens_at,closes_at)"},
      {"total\n1\n",
       "f.csv:1: the header has no sku column (expected sku,total,per_user_limit,opens_at,"
       "closes_at)"},
      {"sku,sku\nA,B\n", "f.csv:1: column \"sku\" appears twice"},
      {"A,1\n", nullptr},  // no header: "A" is not a column
      {"sku,total\nA\n", "f.csv:2: expected 2 fields, found 1"},
      {"sku,total\nA,1,2\n", "f.csv:2: expected 2 fields, found 3"},
      {"sku,total\nA,-5\n", "f.csv:2: total \"-5\" is not a non-negative integer"},
      {"sku,total\nA,1.5\n", "f.csv:2: total \"1.5\" is not a non-negative integer"},
      {"sku,total\nA,abc\n", "f.csv:2: total \"abc\" is not a non-negative integer"},
      {"sku,total\nA,9223372036854775808\n",
       "f.csv:2: total \"9223372036854775808\" is out of range (at most 9223372036854775807)"},
      {"sku,total\nA,99999999999999999999999\n",
       "f.csv:2: total \"99999999999999999999999\" is out of range (at most 9223372036854775807)"},
      {"sku,per_user_limit\nA,4294967296\n",
       "f.csv:2: per_user_limit \"4294967296\" is out of range (at most 4294967295)"},
      {"sku,opens_at\nA,tomorrow\n",
       "f.csv:2: opens_at: unknown time \"tomorrow\": use ms since the epoch, "
       "2026-11-23T10:00:00Z, now or now+30s"},
      {"sku,opens_at,closes_at\nA,now+1h,now\n",
       "f.csv:2: closes_at 2026-11-23T10:00:00Z is not after opens_at 2026-11-23T11:00:00Z"},
      {"sku,total\n,5\n", "f.csv:2: sku is missing"},
      {"sku,total\nA,1\n\nB,2\nA,3\n", "f.csv:5: duplicate sku \"A\" (first at f.csv:2)"},
      {"sku,total\n\"A,1\n", "f.csv:2: unterminated quoted field"},
      {"sku,total\nA\"B,1\n", "f.csv:2: quote inside an unquoted field"},
      {"sku,total\nB,1\nA\x01,2\n", "f.csv:3: sku \"A\\x01\" contains a control character"},
  };
  for (const BadCase& c : cases) {
    auto p = parse_seed("f.csv", c.content, kNow);
    ASSERT_FALSE(p.ok()) << c.content;
    EXPECT_EQ(p.status().code(), Status::Code::kInvalid) << c.content;
    if (c.error != nullptr) {
      EXPECT_EQ(error_of(p), c.error) << c.content;
    }
  }
  const std::string long_sku =
      error_of(parse_seed("f.csv", "sku,total\nB,1\n" + std::string(65, 'x') + ",1\n", kNow));
  EXPECT_EQ(long_sku.substr(0, 10), "f.csv:3: s");
  EXPECT_NE(long_sku.find("is 65 bytes, at most 64"), std::string::npos) << long_sku;
}

TEST(StockctlSeedCsv, GarbageAndBinary) {
  std::string binary(
      "sku,total\nA,1\n\x7f"
      "ELF\x02\x01\x00\x00",
      22);
  EXPECT_EQ(error_of(parse_seed("f.csv", binary, kNow)),
            "f.csv:3: binary data (NUL byte); expected CSV text");
  // not JSON: read as CSV
  EXPECT_EQ(error_of(parse_seed("f.dat", "\x89PNG\r\n\x1a\n", kNow)).substr(0, 8), "f.dat:1:");

  std::string noise;
  for (int i = 0; i < 4096; ++i) noise += static_cast<char>((i * 7919) % 251 + 1);
  EXPECT_FALSE(parse_seed("f.csv", noise, kNow).ok());
  EXPECT_FALSE(parse_seed("f.json", noise, kNow).ok());
}

// ---- Seed files: JSON ----

TEST(StockctlSeedJson, Good) {
  auto p = parse_seed("s.json",
                      R"([
  {"sku": "A", "total": 100, "per_user_limit": 2, "opens_at": "2026-11-23T10:00:00Z",
   "closes_at": 1795431600000},
  {"sku": "B", "total": null, "opens_at": "now+30s"},
  {"sku": "C"}
])",
                      kNow);
  ASSERT_EQ(error_of(p), "");
  const std::vector<SeedRow>& rows = *p;
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].where, "s.json: item 1");
  EXPECT_EQ(rows[0].req.total, 100u);
  EXPECT_EQ(rows[0].req.opens_at_ms, kNow);
  EXPECT_EQ(rows[0].req.closes_at_ms, kNow + 3'600'000);
  EXPECT_EQ(rows[0].req.mask,
            proto::kSetTotal | proto::kSetPerUserLimit | proto::kSetOpensAt | proto::kSetClosesAt);
  EXPECT_EQ(rows[1].req.mask, proto::kSetOpensAt);
  EXPECT_EQ(rows[1].req.opens_at_ms, kNow + 30'000);
  EXPECT_EQ(rows[2].req.mask, 0);
}

TEST(StockctlSeedJson, DetectedByContent) {
  EXPECT_EQ(detect_seed_format("seed.txt", "  \n [ ]"), SeedFormat::kJson);
  EXPECT_EQ(detect_seed_format("seed", "sku,total"), SeedFormat::kCsv);
  EXPECT_EQ(detect_seed_format("seed.JSON", "sku"), SeedFormat::kJson);
  EXPECT_EQ(detect_seed_format("seed.csv", "[1]"), SeedFormat::kCsv);
  auto p = parse_seed("seed", R"([{"sku": "A", "total": 1}])", kNow);
  ASSERT_EQ(error_of(p), "");
  EXPECT_EQ((*p)[0].where, "seed: item 1");
}

TEST(StockctlSeedJson, BadItemsNameTheirIndex) {
  const BadCase cases[] = {
      {"", nullptr},
      {"[]", "f.json: the array is empty"},
      {"{\"sku\": \"A\"}", "f.json: expected a JSON array of objects, found object"},
      {"[1]", "f.json: item 1: expected an object, found number"},
      {R"([{"sku": "A"}, {"total": 1}])", "f.json: item 2: sku is missing"},
      {R"([{"sku": 5}])", "f.json: item 1: sku must be a string"},
      {R"([{"sku": ""}])", "f.json: item 1: sku is empty"},
      {R"([{"sku": "A", "price": 1}])",
       "f.json: item 1: unknown key \"price\" (expected sku,total,per_user_limit,opens_at,"
       "closes_at)"},
      {R"([{"sku": "A", "total": -5}])",
       "f.json: item 1: total \"-5\" is not a non-negative integer"},
      {R"([{"sku": "A", "total": 1.5}])",
       "f.json: item 1: total \"1.5\" is not a non-negative integer"},
      {R"([{"sku": "A", "total": "5"}])", "f.json: item 1: total must be a number"},
      {R"([{"sku": "A", "total": 9223372036854775808}])",
       "f.json: item 1: total \"9223372036854775808\" is out of range (at most "
       "9223372036854775807)"},
      {R"([{"sku": "A", "total": 1e30}])", nullptr},
      {R"([{"sku": "A", "per_user_limit": true}])",
       "f.json: item 1: per_user_limit must be a number"},
      {R"([{"sku": "A", "opens_at": []}])",
       "f.json: item 1: opens_at must be a number or a time string"},
      {R"([{"sku": "A", "opens_at": "soon"}])", nullptr},
      {R"([{"sku": "A"}, {"sku": "B"}, {"sku": "A"}])",
       "f.json: item 3: duplicate sku \"A\" (first at f.json: item 1)"},
      {R"([{"sku": "A"},])", nullptr},
      {"[{\"sku\": \"A\xff\"}]", nullptr},  // not UTF-8
  };
  for (const BadCase& c : cases) {
    auto p = parse_seed("f.json", c.content, kNow);
    ASSERT_FALSE(p.ok()) << c.content;
    if (c.error != nullptr) {
      EXPECT_EQ(error_of(p), c.error) << c.content;
    } else {
      EXPECT_EQ(error_of(p).substr(0, 8), "f.json: ") << c.content << " -> " << error_of(p);
    }
  }
  EXPECT_EQ(error_of(parse_seed("f.json", "[{", kNow)).substr(0, 22), "f.json: invalid JSON: ");
}

// ---- Code files ----

TEST(StockctlCodes, Good) {
  auto p = parse_codes("c.txt",
                       "\xEF\xBB\xBF"
                       "AAA-1\r\n  BBB-2  \n\n\t\nCCC 3\nDDD-4");
  ASSERT_EQ(error_of(p), "");
  EXPECT_EQ(*p, (std::vector<std::string>{"AAA-1", "BBB-2", "CCC 3", "DDD-4"}));
  EXPECT_EQ(parse_codes("c.txt", std::string(128, 'x'))->size(), 1u);
}

TEST(StockctlCodes, Bad) {
  const BadCase cases[] = {
      {"", "c.txt: no codes (the file is empty)"},
      {"\n\r\n  \n", "c.txt: no codes (the file is empty)"},
      {"A\nB\nA\n", "c.txt:3: duplicate code \"A\" (first on line 1)"},
      {"A\r\n\r\n A \r\n", "c.txt:3: duplicate code \"A\" (first on line 1)"},
      {"A\nB\x01"
       "C\n",
       "c.txt:2: code \"B\\x01C\" contains a control character"},
  };
  for (const BadCase& c : cases) {
    EXPECT_EQ(error_of(parse_codes("c.txt", c.content)), c.error) << c.content;
  }
  EXPECT_EQ(error_of(parse_codes("c.txt", "A\n" + std::string(129, 'x') + "\n")),
            "c.txt:2: code is 129 bytes, at most 128");
  EXPECT_EQ(error_of(parse_codes("c.txt", std::string("A\nB\0C\n", 6))),
            "c.txt:2: binary data (NUL byte); expected one code per line");
}

TEST(StockctlCodes, ChunksFitTheFrame) {
  std::vector<std::string> codes;
  for (int i = 0; i < 50'000; ++i) codes.push_back("CODE-" + std::to_string(i));
  // 50,000 short codes fit in one 1 MiB frame: one request.
  EXPECT_EQ(chunk_codes("SKU", codes, 1 << 20), (std::vector<size_t>{codes.size()}));
  for (int i = 50'000; i < 200'000; ++i) codes.push_back("CODE-" + std::to_string(i));
  EXPECT_EQ(chunk_codes("SKU", codes, 1 << 20).size(), 3u);  // ~2.6 MB

  // A small frame: several chunks, in order, each within the limit, together covering all.
  const uint32_t limit = 64 * 1024;
  std::vector<size_t> ends = chunk_codes("SKU", codes, limit);
  ASSERT_GT(ends.size(), 1u);
  size_t start = 0;
  for (size_t end : ends) {
    ASSERT_GT(end, start);
    size_t bytes = proto::kHeaderBytes + 2 + 3 + 4;
    for (size_t i = start; i < end; ++i) bytes += 2 + codes[i].size();
    EXPECT_LE(bytes, limit);
    if (end < codes.size()) {
      EXPECT_GT(bytes + 2 + codes[end].size(), limit);
    }
    start = end;
  }
  EXPECT_EQ(start, codes.size());

  // Encoded with the real codec, each chunk fits as well.
  start = 0;
  for (size_t end : ends) {
    proto::CodesLoadReq req{"SKU",
                            {codes.begin() + static_cast<ptrdiff_t>(start),
                             codes.begin() + static_cast<ptrdiff_t>(end)}};
    std::string frame;
    proto::encode_request(proto::Opcode::kCodesLoad, 1, req, frame);
    EXPECT_LE(frame.size(), limit);
    start = end;
  }
  EXPECT_TRUE(chunk_codes("SKU", {}, limit).empty());
}

}  // namespace
}  // namespace stockd::ctl
