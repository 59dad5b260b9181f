// Unit tests of the book: every operation and every refusal, one behaviour per test.
#include "stockd/book.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "stockd/wire.h"

namespace stockd::proto {
void PrintTo(Status s, std::ostream* os) { *os << status_name(s); }
void PrintTo(HoldState s, std::ostream* os) { *os << hold_state_name(s); }
}  // namespace stockd::proto

namespace stockd {
namespace {

using proto::HoldState;
using proto::Line;
using proto::OutboxKind;
using proto::Status;

constexpr int64_t kT0 = 1'700'000'000'000;  // a plausible "now" in ms

// What a store would hold: every row a Changes named, re-read after the operation.
struct RowMirror {
  std::map<std::string, rec::SkuRow> skus;
  std::map<uint64_t, rec::HoldRow> holds;
  std::map<std::pair<std::string, std::string>, rec::UserRow> users;
  std::map<std::pair<std::string, uint32_t>, rec::CodeRow> codes;
  rec::MetaRow meta;
  std::vector<proto::OutboxRecord> outbox;

  template <class Map, class Key, class Row>
  static void put(Map& m, const Key& k, const std::optional<Row>& row) {
    if (row) {
      m[k] = *row;
    } else {
      m.erase(k);
    }
  }
  void apply(const Book& b, const Changes& ch) {
    for (const auto& s : ch.skus) put(skus, s, b.sku_row(s));
    for (uint64_t h : ch.holds) put(holds, h, b.hold_row(h));
    for (const auto& u : ch.users) put(users, u, b.user_row(u.first, u.second));
    for (const auto& c : ch.codes) put(codes, c, b.code_row(c.first, c.second));
    if (ch.meta) meta = b.meta();
    for (const auto& r : ch.outbox) {
      EXPECT_EQ(r.seq, outbox.empty() ? 1u : outbox.back().seq + 1);
      outbox.push_back(r);
    }
  }
  // Restores every row, in a scrambled order, into `b`.
  std::string restore_into(Book& b) const {
    for (auto it = codes.rbegin(); it != codes.rend(); ++it) b.restore(it->second);
    for (auto it = holds.rbegin(); it != holds.rend(); ++it) b.restore(it->second);
    for (const auto& [k, r] : users) b.restore(r);
    b.restore(meta);
    for (auto it = skus.rbegin(); it != skus.rend(); ++it) b.restore(it->second);
    return b.finish_restore().message();
  }
};

std::vector<proto::Stat> durable_stats(const Book& b) {
  static const std::set<std::string> kNotPersisted = {"reserves_ok", "sold_out", "limit_exceeded",
                                                      "commits",     "releases", "expiries",
                                                      "claims_ok",   "idem_hits"};
  std::vector<proto::Stat> all, out;
  b.stats(all);
  for (auto& s : all) {
    if (!kNotPersisted.contains(s.name)) out.push_back(s);
  }
  return out;
}

// Everything observable about two books (except counters) must match.
void expect_same_book(const Book& a, const Book& b, const RowMirror& m) {
  proto::SkuListResp la, lb;
  a.sku_list({"", proto::kSkuListMax}, la);
  b.sku_list({"", proto::kSkuListMax}, lb);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a.meta(), b.meta());
  EXPECT_EQ(a.hold_id_key(), b.hold_id_key());
  for (uint64_t seq = 1; seq < a.meta().next_hold_id; ++seq) {
    const uint64_t id = hold_id_of(seq, a.hold_id_key());
    proto::HoldView va, vb;
    EXPECT_EQ(a.hold_get(id, va), b.hold_get(id, vb)) << "hold " << id;
    EXPECT_EQ(va, vb) << "hold " << id;
    EXPECT_EQ(a.hold_row(id), b.hold_row(id)) << "hold " << id;
  }
  for (const auto& [id, r] : m.holds) {
    if (r.hold.key.empty()) continue;
    EXPECT_EQ(a.idem_answer(r.hold.key), b.idem_answer(r.hold.key)) << r.hold.key;
  }
  for (const auto& [k, r] : m.users)
    EXPECT_EQ(a.user_row(k.first, k.second), b.user_row(k.first, k.second));
  for (const auto& v : la.skus) {
    EXPECT_EQ(a.sku_row(v.sku), b.sku_row(v.sku));
    for (uint32_t i = 0; i <= v.total; ++i) EXPECT_EQ(a.code_row(v.sku, i), b.code_row(v.sku, i));
  }
  EXPECT_EQ(a.next_deadline(), b.next_deadline());
  EXPECT_EQ(a.live_holds(), b.live_holds());
  EXPECT_EQ(durable_stats(a), durable_stats(b));
}

class BookTest : public ::testing::Test {
 protected:
  explicit BookTest(BookLimits limits = {}) : book(limits) {}
  void TearDown() override { EXPECT_EQ(book.check_invariants().message(), ""); }

  // Every call records its Changes into `ch` (cleared first) and the mirror.
  Changes& fresh() {
    ch.clear();
    return ch;
  }
  void mirror() { rows.apply(book, ch); }

  Verdict set(proto::SkuSetReq req) {
    proto::SkuView v;
    Verdict st = book.sku_set(req, now, v, fresh());
    mirror();
    return st;
  }
  void create(const std::string& id, uint64_t total, uint32_t limit = 0) {
    proto::SkuSetReq req{id, proto::kSetTotal | proto::kSetPerUserLimit, total, limit, 0, 0};
    ASSERT_EQ(set(req), Status::kOk);
  }
  void create_pool(const std::string& id, std::vector<std::string> codes, uint32_t limit = 0) {
    create(id, 0, limit);
    ASSERT_EQ(load(id, std::move(codes)), Status::kOk);
  }
  Verdict load(const std::string& id, std::vector<std::string> codes,
               proto::CodesLoadResp* out = nullptr) {
    proto::CodesLoadResp r;
    Verdict st = book.codes_load({id, std::move(codes)}, now, r, fresh());
    mirror();
    if (out) *out = r;
    return st;
  }
  Verdict reserve(const std::string& user, const std::string& key, uint32_t ttl,
                  std::vector<Line> lines, proto::ReserveResp* out = nullptr) {
    proto::ReserveResp r;
    Verdict st = book.reserve({user, key, ttl, std::move(lines)}, now, r, fresh());
    mirror();
    if (out) *out = r;
    return st;
  }
  uint64_t hold(const std::string& user, std::vector<Line> lines, uint32_t ttl = 60'000) {
    proto::ReserveResp r;
    EXPECT_EQ(reserve(user, "", ttl, std::move(lines), &r), Status::kOk);
    return r.hold_id;
  }
  Verdict claim(const std::string& sku, const std::string& user, const std::string& key,
                proto::ClaimResp* out = nullptr) {
    proto::ClaimResp r;
    Verdict st = book.claim({sku, user, key}, now, r, fresh());
    mirror();
    if (out) *out = r;
    return st;
  }
  Verdict commit(uint64_t id, proto::HoldView* out = nullptr) {
    proto::HoldView v;
    Verdict st = book.commit(id, now, v, fresh());
    mirror();
    if (out) *out = v;
    return st;
  }
  Verdict release(uint64_t id, proto::HoldView* out = nullptr) {
    proto::HoldView v;
    Verdict st = book.release(id, now, v, fresh());
    mirror();
    if (out) *out = v;
    return st;
  }
  Verdict restock(const std::string& id, int64_t delta) {
    proto::SkuView v;
    Verdict st = book.restock({id, delta}, now, v, fresh());
    mirror();
    return st;
  }
  size_t expire() {
    size_t n = book.expire(now, fresh());
    mirror();
    return n;
  }
  proto::SkuView sku(const std::string& id) {
    proto::SkuView v;
    EXPECT_EQ(book.sku_get(id, v), Status::kOk) << id;
    return v;
  }
  // (total, available, held, sold)
  std::vector<uint64_t> counts(const std::string& id) {
    proto::SkuView v = sku(id);
    return {v.total, v.available, v.held, v.sold};
  }
  HoldState state(uint64_t id) {
    proto::HoldView v;
    EXPECT_EQ(book.hold_get(id, v), Status::kOk);
    return v.state;
  }
  uint64_t units(const std::string& sku_id, const std::string& user) {
    auto r = book.user_row(sku_id, user);
    return r ? r->units : 0;
  }
  uint64_t stat(const std::string& name) {
    std::vector<proto::Stat> all;
    book.stats(all);
    for (auto& s : all) {
      if (s.name == name) return s.value;
    }
    ADD_FAILURE() << "no stat " << name;
    return 0;
  }

  Book book;
  Changes ch;
  RowMirror rows;
  int64_t now = kT0;
};

using U = std::vector<uint64_t>;

// ---- SKUs. ----

TEST_F(BookTest, SkuSetCreatesThenUpdatesOnlyMaskedFields) {
  create("tee", 10, 2);
  EXPECT_EQ(counts("tee"), (U{10, 10, 0, 0}));
  EXPECT_EQ(sku("tee").per_user_limit, 2u);
  ASSERT_EQ(set({"tee", proto::kSetOpensAt, 99, 0, kT0 - 5, 0}), Status::kOk);
  EXPECT_EQ(sku("tee").total, 10u);  // total not in the mask: unchanged
  EXPECT_EQ(sku("tee").per_user_limit, 2u);
  EXPECT_EQ(sku("tee").opens_at_ms, kT0 - 5);
  hold("ann", {{"tee", 2}});
  ASSERT_EQ(set({"tee", proto::kSetTotal, 4, 0, 0, 0}), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{4, 2, 2, 0}));
  EXPECT_EQ(ch.skus, std::vector<std::string>{"tee"});
}

// Per-user units are counted only while a SKU has a limit: a sale without one stores nothing
// per buyer. A limit set later counts the holds still in the book; removing it forgets them.
TEST_F(BookTest, PerUserCountsExistOnlyUnderALimit) {
  create("tee", 10);
  const uint64_t held = hold("ann", {{"tee", 2}});
  EXPECT_TRUE(ch.users.empty());
  ASSERT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kOk);
  ASSERT_EQ(reserve("bob", "", 0, {{"tee", 1}}), Status::kOk);
  const uint64_t gone = hold("cy", {{"tee", 4}});
  ASSERT_EQ(release(gone), Status::kOk);
  EXPECT_TRUE(ch.users.empty());
  EXPECT_FALSE(book.user_row("tee", "ann"));
  // ann holds 2 and bought 1: a limit of 2 would be broken.
  EXPECT_EQ(set({"tee", proto::kSetPerUserLimit, 0, 2, 0, 0}), Status::kBelowCommitted);
  EXPECT_FALSE(book.user_row("tee", "ann"));
  ASSERT_EQ(set({"tee", proto::kSetPerUserLimit, 0, 3, 0, 0}), Status::kOk);
  using UserKey = std::pair<std::string, std::string>;
  std::vector<UserKey> named = ch.users;
  std::sort(named.begin(), named.end());
  EXPECT_EQ(named, (std::vector<UserKey>{{"tee", "ann"}, {"tee", "bob"}}));
  EXPECT_EQ(units("tee", "ann"), 3u);
  EXPECT_EQ(units("tee", "bob"), 1u);
  EXPECT_EQ(units("tee", "cy"), 0u);  // released: nothing counts
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kLimitExceeded);
  ASSERT_EQ(release(held), Status::kOk);
  EXPECT_EQ(units("tee", "ann"), 1u);
  // No limit again: the counts and their rows go.
  ASSERT_EQ(set({"tee", proto::kSetPerUserLimit, 0, 0, 0, 0}), Status::kOk);
  named = ch.users;
  std::sort(named.begin(), named.end());
  EXPECT_EQ(named, (std::vector<UserKey>{{"tee", "ann"}, {"tee", "bob"}}));
  EXPECT_FALSE(book.user_row("tee", "ann"));
  EXPECT_FALSE(book.user_row("tee", "bob"));
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 5}}), Status::kOk);
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  expect_same_book(book, copy, rows);
}

// Fields outside the mask are ignored, whatever they hold: a negative opens_at_ms that the mask
// does not name was refused. In the mask, it still is.
TEST_F(BookTest, SkuSetIgnoresFieldsOutsideTheMask) {
  EXPECT_EQ(set({"tee", proto::kSetTotal, 10, 0, -5, -7}), Status::kOk);
  EXPECT_EQ(sku("tee").opens_at_ms, 0);
  EXPECT_EQ(sku("tee").closes_at_ms, 0);
  EXPECT_EQ(set({"tee", proto::kSetOpensAt, 0, 0, -5, 0}), Status::kBadRequest);
  EXPECT_EQ(set({"tee", proto::kSetClosesAt, 0, 0, 0, -7}), Status::kBadRequest);
}

TEST_F(BookTest, SkuSetWithoutTotalCreatesAnEmptySku) {
  ASSERT_EQ(set({"coupon", 0, 0, 0, 0, 0}), Status::kOk);
  EXPECT_EQ(counts("coupon"), (U{0, 0, 0, 0}));
}

TEST_F(BookTest, SkuSetRefusals) {
  create("tee", 10, 3);
  hold("ann", {{"tee", 3}});
  EXPECT_EQ(set({"", proto::kSetTotal, 1, 0, 0, 0}), Status::kBadRequest);
  EXPECT_EQ(set({std::string(65, 's'), proto::kSetTotal, 1, 0, 0, 0}), Status::kBadRequest);
  EXPECT_EQ(set({"tee", 0x10, 1, 0, 0, 0}), Status::kBadRequest);
  // NUL separates a SKU from a user or code index in stored keys: never part of an id.
  const Verdict nul = set({std::string("a\0b", 3), proto::kSetTotal, 1, 0, 0, 0});
  EXPECT_EQ(nul, Status::kBadRequest);
  EXPECT_NE(nul.why.find("NUL"), std::string::npos) << nul.why;
  EXPECT_EQ(reserve("ann", "", 0, {{std::string("t\0e", 3), 1}}), Status::kBadRequest);
  EXPECT_EQ(set({"tee", proto::kSetOpensAt | proto::kSetClosesAt, 0, 0, kT0, kT0}),
            Status::kBadRequest);
  EXPECT_EQ(set({"tee", proto::kSetOpensAt, 0, 0, -1, 0}), Status::kBadRequest);
  EXPECT_EQ(set({"tee", proto::kSetTotal, 2, 0, 0, 0}), Status::kBelowCommitted);
  // Lowering the limit under what ann already holds would break the limit promise.
  EXPECT_EQ(set({"tee", proto::kSetPerUserLimit, 0, 2, 0, 0}), Status::kBelowCommitted);
  EXPECT_TRUE(ch.skus.empty());
  EXPECT_EQ(counts("tee"), (U{10, 7, 3, 0}));
  EXPECT_EQ(set({"tee", proto::kSetPerUserLimit, 0, 5, 0, 0}), Status::kOk);
  EXPECT_EQ(set({"tee", proto::kSetTotal, 3, 0, 0, 0}), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{3, 0, 3, 0}));
  // A window closing before an existing opening is refused as a whole.
  ASSERT_EQ(set({"tee", proto::kSetOpensAt, 0, 0, kT0 + 100, 0}), Status::kOk);
  EXPECT_EQ(set({"tee", proto::kSetClosesAt, 0, 0, 0, kT0 + 50}), Status::kBadRequest);
}

TEST_F(BookTest, SaleWindow) {
  create("tee", 10);
  ASSERT_EQ(set({"tee", proto::kSetOpensAt | proto::kSetClosesAt, 0, 0, kT0 + 100, kT0 + 200}),
            Status::kOk);
  proto::ReserveResp r;
  now = kT0 + 99;
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}, &r), Status::kSaleNotOpen);
  EXPECT_EQ(r.failed_line, 0);
  now = kT0 + 100;
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kOk);
  now = kT0 + 199;
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kOk);
  now = kT0 + 200;
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kSaleClosed);
  // Clearing the window (0 = unset) opens it again: only sale_close is final.
  ASSERT_EQ(set({"tee", proto::kSetClosesAt, 0, 0, 0, 0}), Status::kOk);
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{10, 7, 0, 3}));
}

TEST_F(BookTest, SaleCloseIsFinalButHoldsFinish) {
  create("tee", 10);
  uint64_t a = hold("ann", {{"tee", 2}});
  uint64_t b = hold("bob", {{"tee", 3}});
  proto::SkuView v;
  ASSERT_EQ(book.sale_close("tee", now, v, fresh()), Status::kOk);
  EXPECT_EQ(v.flags & proto::kSkuFlagClosed, proto::kSkuFlagClosed);
  EXPECT_EQ(book.sale_close("nope", now, v, fresh()), Status::kNotFound);
  proto::ReserveResp r;
  EXPECT_EQ(reserve("cat", "", 0, {{"tee", 1}}, &r), Status::kSaleClosed);
  EXPECT_EQ(commit(a), Status::kOk);
  EXPECT_EQ(release(b), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{10, 8, 0, 2}));
  // A new window does not reopen a closed sale.
  ASSERT_EQ(set({"tee", proto::kSetOpensAt | proto::kSetClosesAt, 0, 0, 1, kT0 * 2}), Status::kOk);
  EXPECT_EQ(reserve("cat", "", 0, {{"tee", 1}}), Status::kSaleClosed);
}

TEST_F(BookTest, RestockUpDownAndBelowCommitted) {
  create("tee", 10);
  hold("ann", {{"tee", 4}}, 0);  // sold 4
  hold("bob", {{"tee", 3}});     // held 3
  EXPECT_EQ(restock("tee", 5), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{15, 8, 3, 4}));
  EXPECT_EQ(restock("tee", -8), Status::kOk);
  EXPECT_EQ(counts("tee"), (U{7, 0, 3, 4}));
  EXPECT_EQ(restock("tee", -1), Status::kBelowCommitted);
  EXPECT_EQ(restock("tee", INT64_MIN), Status::kBelowCommitted);
  EXPECT_EQ(restock("tee", INT64_MAX), Status::kBadRequest);  // would overflow
  EXPECT_TRUE(ch.skus.empty());
  EXPECT_EQ(counts("tee"), (U{7, 0, 3, 4}));
  EXPECT_EQ(restock("nope", 1), Status::kNotFound);
  EXPECT_EQ(restock("", 1), Status::kBadRequest);
}

TEST_F(BookTest, SkuListPagesInByteOrder) {
  for (std::string id : {"b", "a", "c", "ab", "B"}) create(id, 1);
  proto::SkuListResp page;
  book.sku_list({"", 2}, page);
  ASSERT_EQ(page.skus.size(), 2u);
  EXPECT_EQ(page.skus[0].sku, "B");
  EXPECT_EQ(page.skus[1].sku, "a");
  book.sku_list({"a", 2}, page);
  ASSERT_EQ(page.skus.size(), 2u);
  EXPECT_EQ(page.skus[0].sku, "ab");
  EXPECT_EQ(page.skus[1].sku, "b");
  book.sku_list({"b", 2}, page);
  ASSERT_EQ(page.skus.size(), 1u);
  EXPECT_EQ(page.skus[0].sku, "c");
  book.sku_list({"c", 2}, page);
  EXPECT_TRUE(page.skus.empty());
  book.sku_list({"", 0}, page);
  EXPECT_TRUE(page.skus.empty());
  book.sku_list({"", 1'000'000}, page);
  EXPECT_EQ(page.skus.size(), 5u);
  proto::SkuView v;
  EXPECT_EQ(book.sku_get("zz", v), Status::kNotFound);
}

// ---- Reserve. ----

TEST_F(BookTest, ReserveHoldsThenCommitSells) {
  create("tee", 10, 5);
  proto::ReserveResp r;
  ASSERT_EQ(reserve("ann", "k1", 30'000, {{"tee", 3}}, &r), Status::kOk);
  EXPECT_EQ(r.state, HoldState::kHeld);
  EXPECT_EQ(r.expires_at_ms, kT0 + 30'000);
  EXPECT_EQ(r.failed_line, 0xFFFF);
  EXPECT_EQ(r.available, 7u);
  EXPECT_EQ(counts("tee"), (U{10, 7, 3, 0}));
  EXPECT_EQ(units("tee", "ann"), 3u);
  EXPECT_EQ(book.next_deadline(), kT0 + 30'000);
  EXPECT_EQ(book.live_holds(), 1u);
  EXPECT_TRUE(ch.outbox.empty());

  now += 1000;
  proto::HoldView v;
  ASSERT_EQ(commit(r.hold_id, &v), Status::kOk);
  EXPECT_EQ(v.state, HoldState::kCommitted);
  EXPECT_EQ(v.user, "ann");
  EXPECT_EQ(v.key, "k1");
  EXPECT_EQ(v.lines, (std::vector<Line>{{"tee", 3}}));
  EXPECT_EQ(counts("tee"), (U{10, 7, 0, 3}));
  EXPECT_EQ(units("tee", "ann"), 3u);  // bought units still count against a limit
  EXPECT_EQ(book.next_deadline(), INT64_MAX);
  ASSERT_EQ(ch.outbox.size(), 1u);
  const proto::OutboxRecord& o = ch.outbox[0];
  EXPECT_EQ(o.kind, OutboxKind::kOrder);
  EXPECT_EQ(o.order_id, r.hold_id);
  EXPECT_EQ(o.created_at_ms, kT0);
  EXPECT_EQ(o.at_ms, kT0 + 1000);
  EXPECT_EQ(o.user, "ann");
  EXPECT_EQ(o.key, "k1");
  EXPECT_EQ(o.lines, v.lines);
  EXPECT_EQ(book.counters().reserves_ok, 1u);
  EXPECT_EQ(book.counters().commits, 1u);
}

TEST_F(BookTest, BuyNowCommitsAtOnce) {
  create("tee", 5);
  proto::ReserveResp r;
  ASSERT_EQ(reserve("ann", "", 0, {{"tee", 2}}, &r), Status::kOk);
  EXPECT_EQ(r.state, HoldState::kCommitted);
  EXPECT_EQ(r.expires_at_ms, 0);
  EXPECT_EQ(counts("tee"), (U{5, 3, 0, 2}));
  ASSERT_EQ(ch.outbox.size(), 1u);
  EXPECT_EQ(ch.outbox[0].kind, OutboxKind::kOrder);
  EXPECT_EQ(ch.outbox[0].created_at_ms, kT0);
  EXPECT_EQ(ch.outbox[0].at_ms, kT0);
  EXPECT_EQ(book.live_holds(), 0u);
  auto row = book.hold_row(r.hold_id);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->finished_at_ms, kT0);
}

TEST_F(BookTest, ReserveValidation) {
  create("tee", 10);
  std::vector<Line> many;
  for (int i = 0; i < 65; ++i) many.push_back({"s" + std::to_string(i), 1});
  const std::vector<proto::ReserveReq> bad = {
      {"", "", 0, {{"tee", 1}}},
      {std::string(129, 'u'), "", 0, {{"tee", 1}}},
      {"ann", std::string(129, 'k'), 0, {{"tee", 1}}},
      {"ann", "", proto::kHoldTtlMsMax + 1, {{"tee", 1}}},
      {"ann", "", 0, {}},
      {"ann", "", 0, many},
      {"ann", "", 0, {{"", 1}}},
      {"ann", "", 0, {{std::string(65, 's'), 1}}},
      {"ann", "", 0, {{"tee", 0}}},
      {"ann", "", 0, {{"tee", 1}, {"tee", 1}}},
  };
  for (const auto& req : bad) {
    proto::ReserveResp r;
    EXPECT_EQ(book.reserve(req, now, r, fresh()), Status::kBadRequest) << req.user.size();
    EXPECT_EQ(validate(req).code(), stockd::Status::Code::kInvalid);
    EXPECT_TRUE(ch.empty());
  }
  EXPECT_EQ(validate({std::string(128, 'u'),
                      std::string(128, 'k'),
                      proto::kHoldTtlMsMax,
                      {{std::string(64, 's'), 1}}})
                .message(),
            "");
  EXPECT_EQ(counts("tee"), (U{10, 10, 0, 0}));
}

TEST_F(BookTest, RefusedLineNamesItsIndex) {
  create("a", 5);
  create("b", 1);
  proto::ReserveResp r;
  EXPECT_EQ(reserve("ann", "", 0, {{"a", 1}, {"zz", 1}}, &r), Status::kNotFound);
  EXPECT_EQ(r.failed_line, 1);
  EXPECT_TRUE(ch.empty());
}

TEST_F(BookTest, MultiLineIsAllOrNothing) {
  create("a", 5);
  create("b", 1);
  proto::ReserveResp r;
  EXPECT_EQ(reserve("ann", "", 60'000, {{"a", 2}, {"b", 2}}, &r), Status::kSoldOut);
  EXPECT_EQ(r.failed_line, 1);
  EXPECT_EQ(r.available, 1u);
  EXPECT_EQ(r.hold_id, 0u);
  EXPECT_EQ(counts("a"), (U{5, 5, 0, 0}));
  EXPECT_EQ(units("a", "ann"), 0u);
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(book.counters().sold_out, 1u);
  ASSERT_EQ(reserve("ann", "", 60'000, {{"a", 2}, {"b", 1}}, &r), Status::kOk);
  EXPECT_EQ(r.available, 0u);  // the fewest units left among the lines
  EXPECT_EQ(counts("a"), (U{5, 3, 2, 0}));
  EXPECT_EQ(counts("b"), (U{1, 0, 1, 0}));
}

TEST_F(BookTest, IdempotentRetryReturnsTheFirstAnswer) {
  create_pool("cp", {"c0", "c1", "c2"});
  proto::ReserveResp first, again;
  ASSERT_EQ(reserve("ann", "key", 60'000, {{"cp", 2}}, &first), Status::kOk);
  EXPECT_TRUE(first.codes.empty()) << "a held hold's codes are shown once sold";
  EXPECT_EQ(book.code_row("cp", 1)->owner, first.hold_id);
  now += 10;
  ASSERT_EQ(reserve("ann", "key", 60'000, {{"cp", 2}}, &again), Status::kOk);
  EXPECT_EQ(again, first);
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(counts("cp"), (U{3, 1, 2, 0}));
  EXPECT_EQ(book.counters().idem_hits, 1u);
  EXPECT_EQ(book.counters().reserves_ok, 1u);
  // Still the first answer after the hold was committed; the commit's answer shows the codes.
  proto::HoldView sold;
  ASSERT_EQ(commit(first.hold_id, &sold), Status::kOk);
  EXPECT_EQ(sold.codes, (std::vector<proto::SkuCode>{{"cp", "c0"}, {"cp", "c1"}}));
  ASSERT_EQ(reserve("ann", "key", 60'000, {{"cp", 2}}, &again), Status::kOk);
  EXPECT_EQ(again, first);
}

TEST_F(BookTest, KeyConflict) {
  create("tee", 10);
  create_pool("cp", {"c0"});
  ASSERT_EQ(reserve("ann", "key", 60'000, {{"tee", 1}}), Status::kOk);
  proto::ReserveResp r;
  EXPECT_EQ(reserve("ann", "key", 60'000, {{"tee", 2}}, &r), Status::kKeyConflict);
  EXPECT_EQ(r, proto::ReserveResp{});
  EXPECT_EQ(reserve("ann", "key", 0, {{"tee", 1}}), Status::kKeyConflict);
  EXPECT_EQ(reserve("bob", "key", 60'000, {{"tee", 1}}), Status::kKeyConflict);
  EXPECT_TRUE(ch.empty());
  // A claim and a reserve never share a fingerprint, even for the same user and SKU.
  ASSERT_EQ(claim("cp", "ann", "ck"), Status::kOk);
  EXPECT_EQ(reserve("ann", "ck", 0, {{"cp", 1}}), Status::kKeyConflict);
  proto::ClaimResp c;
  EXPECT_EQ(claim("cp", "ann", "key", &c), Status::kKeyConflict);
  EXPECT_EQ(c, proto::ClaimResp{});
  EXPECT_EQ(counts("tee"), (U{10, 9, 1, 0}));
}

TEST_F(BookTest, RefusalIsNotRememberedUnderTheKey) {
  create("tee", 1);
  hold("bob", {{"tee", 1}});
  proto::ReserveResp r;
  EXPECT_EQ(reserve("ann", "key", 0, {{"tee", 1}}, &r), Status::kSoldOut);
  EXPECT_EQ(r.available, 0u);
  EXPECT_FALSE(book.idem_answer("key"));
  ASSERT_EQ(restock("tee", 1), Status::kOk);
  ASSERT_EQ(reserve("ann", "key", 0, {{"tee", 1}}, &r), Status::kOk);
  EXPECT_EQ(r.state, HoldState::kCommitted);
  EXPECT_EQ(book.idem_answer("key"), r);
  // The key, its request's fingerprint and the first answer's `available` are in the hold row.
  auto row = book.hold_row(r.hold_id);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->hold.key, "key");
  EXPECT_NE(row->fingerprint, 0u);
  EXPECT_EQ(row->first_available, r.available);
}

TEST_F(BookTest, PerUserLimitCountsHeldAndSold) {
  create("tee", 100, 3);
  uint64_t h1 = hold("ann", {{"tee", 1}});
  hold("ann", {{"tee", 1}}, 0);  // bought
  proto::ReserveResp r;
  EXPECT_EQ(reserve("ann", "", 60'000, {{"tee", 2}}, &r), Status::kLimitExceeded);
  EXPECT_EQ(r.available, 1u);  // allowance left
  EXPECT_EQ(r.failed_line, 0);
  EXPECT_EQ(book.counters().limit_exceeded, 1u);
  EXPECT_EQ(reserve("bob", "", 60'000, {{"tee", 3}}), Status::kOk);  // per user
  ASSERT_EQ(commit(h1), Status::kOk);
  EXPECT_EQ(reserve("ann", "", 60'000, {{"tee", 2}}), Status::kLimitExceeded);
  EXPECT_EQ(units("tee", "ann"), 2u);
  uint64_t h3 = hold("ann", {{"tee", 1}});
  EXPECT_EQ(reserve("ann", "", 60'000, {{"tee", 1}}, &r), Status::kLimitExceeded);
  EXPECT_EQ(r.available, 0u);
  ASSERT_EQ(release(h3), Status::kOk);  // a released hold gives the allowance back
  EXPECT_EQ(units("tee", "ann"), 2u);
  EXPECT_EQ(reserve("ann", "", 60'000, {{"tee", 1}}), Status::kOk);
}

// ---- Commit, release, expiry. ----

TEST_F(BookTest, ExpiresExactlyAtTheDeadline) {
  create("tee", 5, 2);
  uint64_t id = hold("ann", {{"tee", 2}}, 1000);
  now = kT0 + 999;
  EXPECT_EQ(expire(), 0u);
  EXPECT_EQ(state(id), HoldState::kHeld);
  EXPECT_EQ(counts("tee"), (U{5, 3, 2, 0}));
  now = kT0 + 1000;
  EXPECT_EQ(expire(), 1u);
  EXPECT_EQ(state(id), HoldState::kExpired);
  EXPECT_EQ(counts("tee"), (U{5, 5, 0, 0}));
  EXPECT_EQ(units("tee", "ann"), 0u);
  EXPECT_FALSE(book.user_row("tee", "ann"));
  EXPECT_EQ(book.next_deadline(), INT64_MAX);
  ASSERT_EQ(ch.outbox.size(), 1u);
  EXPECT_EQ(ch.outbox[0].kind, OutboxKind::kExpired);
  EXPECT_EQ(ch.outbox[0].at_ms, kT0 + 1000);
  EXPECT_EQ(book.hold_row(id)->finished_at_ms, kT0 + 1000);
  EXPECT_EQ(book.counters().expiries, 1u);
  // Expired units come back, and the user's allowance too.
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 2}}), Status::kOk);
}

TEST_F(BookTest, BuyerOperationsSweepFirst) {
  create("tee", 1);
  hold("ann", {{"tee", 1}}, 500);
  now = kT0 + 10'000;  // expired long ago: the record says it expired at its deadline
  proto::ReserveResp r;
  ASSERT_EQ(reserve("bob", "", 0, {{"tee", 1}}, &r), Status::kOk);
  ASSERT_EQ(ch.outbox.size(), 2u);
  EXPECT_EQ(ch.outbox[0].kind, OutboxKind::kExpired);
  EXPECT_EQ(ch.outbox[0].at_ms, kT0 + 500);
  EXPECT_EQ(ch.outbox[1].kind, OutboxKind::kOrder);
  EXPECT_LT(ch.outbox[0].seq, ch.outbox[1].seq);
}

class BookNoSweepTest : public BookTest {
 protected:
  BookNoSweepTest() : BookTest(BookLimits{.expire_per_call_max = 0}) {}
};

TEST_F(BookNoSweepTest, CommitOrReleasePastTheDeadlineExpires) {
  create("tee", 5);
  uint64_t a = hold("ann", {{"tee", 1}}, 1000);
  uint64_t b = hold("bob", {{"tee", 1}}, 1000);
  now = kT0 + 1000;
  proto::HoldView v;
  EXPECT_EQ(commit(a, &v), Status::kHoldExpired);
  EXPECT_EQ(v.state, HoldState::kExpired);
  ASSERT_EQ(ch.outbox.size(), 1u);
  EXPECT_EQ(ch.outbox[0].kind, OutboxKind::kExpired);
  EXPECT_EQ(release(b, &v), Status::kHoldExpired);
  EXPECT_EQ(v.state, HoldState::kExpired);
  EXPECT_EQ(counts("tee"), (U{5, 5, 0, 0}));
}

TEST_F(BookTest, CommitAfterDeadlineIsHoldExpired) {
  create("tee", 5);
  uint64_t a = hold("ann", {{"tee", 1}}, 1000);
  now = kT0 + 1000;
  proto::HoldView v;
  EXPECT_EQ(commit(a, &v), Status::kHoldExpired);
  EXPECT_EQ(v.state, HoldState::kExpired);
  EXPECT_EQ(counts("tee"), (U{5, 5, 0, 0}));
}

TEST_F(BookTest, FinishedHoldPaths) {
  create("tee", 10);
  uint64_t c = hold("ann", {{"tee", 1}});
  uint64_t r = hold("bob", {{"tee", 2}});
  uint64_t e = hold("cat", {{"tee", 3}}, 100);
  proto::HoldView v;
  ASSERT_EQ(commit(c), Status::kOk);
  ASSERT_EQ(release(r, &v), Status::kOk);
  EXPECT_EQ(v.state, HoldState::kReleased);
  ASSERT_EQ(ch.outbox.size(), 1u);
  EXPECT_EQ(ch.outbox[0].kind, OutboxKind::kReleased);
  EXPECT_EQ(ch.outbox[0].at_ms, now);
  now += 100;
  expire();
  ASSERT_EQ(state(e), HoldState::kExpired);

  EXPECT_EQ(commit(c, &v), Status::kAlreadyDone);
  EXPECT_EQ(v.state, HoldState::kCommitted);
  EXPECT_EQ(release(c, &v), Status::kAlreadyDone);  // a sale is never returned by release
  EXPECT_EQ(v.state, HoldState::kCommitted);
  EXPECT_EQ(release(r, &v), Status::kAlreadyDone);
  EXPECT_EQ(v.state, HoldState::kReleased);
  EXPECT_EQ(commit(r, &v), Status::kAlreadyDone);  // released by its buyer: done, as the spec says
  EXPECT_EQ(v.state, HoldState::kReleased);
  EXPECT_EQ(commit(e, &v), Status::kHoldExpired);
  EXPECT_EQ(release(e, &v), Status::kHoldExpired);
  EXPECT_EQ(v.state, HoldState::kExpired);
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(commit(999), Status::kNotFound);
  EXPECT_EQ(release(999), Status::kNotFound);
  EXPECT_EQ(book.hold_get(999, v), Status::kNotFound);
  EXPECT_EQ(counts("tee"), (U{10, 9, 0, 1}));
}

class BookSmallSweepTest : public BookTest {
 protected:
  BookSmallSweepTest() : BookTest(BookLimits{.expire_per_call_max = 2}) {}
};

TEST_F(BookSmallSweepTest, ExpireIsBounded) {
  create("tee", 10);
  for (int i = 0; i < 5; ++i) hold("u" + std::to_string(i), {{"tee", 1}}, 100 + i);
  now = kT0 + 1000;
  EXPECT_EQ(book.next_deadline(), kT0 + 100);
  EXPECT_EQ(expire(), 2u);
  EXPECT_EQ(book.next_deadline(), kT0 + 102);
  EXPECT_EQ(expire(), 2u);
  EXPECT_EQ(expire(), 1u);
  EXPECT_EQ(expire(), 0u);
  EXPECT_EQ(counts("tee"), (U{10, 10, 0, 0}));
  EXPECT_EQ(rows.outbox.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(rows.outbox[i].at_ms, kT0 + 100 + int64_t(i));
}

// Past --finished-holds-max the book forgets finished holds, and their keys, to stay bounded.
// A buyer who holds and releases over and over (up to --user-holds-max live at a time, each
// release a finished hold) must not push out the keys of orders sold a moment ago: a retry of
// such an order (its answer lost) would then be a new request and sell a second unit. Unsold
// holds (released, expired) go first; sold ones only when no unsold one is left.
class BookCappedTest : public BookTest {
 protected:
  BookCappedTest() : BookTest(BookLimits{.finished_holds_max = 4}) {}
  void churn(int times) {
    for (int i = 0; i < times; ++i) {
      const uint64_t id = hold("mallory", {{"tee", 1}});
      ASSERT_EQ(release(id), Status::kOk);
      now += 1;
    }
  }
};

TEST_F(BookCappedTest, ReleasedHoldsDoNotPushOutTheKeysOfOrders) {
  create("tee", 100);
  std::vector<proto::ReserveResp> sold(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(reserve("ann", "order-" + std::to_string(i), 0, {{"tee", 1}}, &sold[i]), Status::kOk);
    now += 1;
  }
  churn(20);
  expire();
  for (int i = 0; i < 3; ++i) {
    proto::ReserveResp again;
    ASSERT_EQ(reserve("ann", "order-" + std::to_string(i), 0, {{"tee", 1}}, &again), Status::kOk);
    EXPECT_EQ(again, sold[i]) << "the retry of order " << i << " is its first answer";
    EXPECT_EQ(state(sold[i].hold_id), HoldState::kCommitted);
  }
  EXPECT_EQ(counts("tee"), (U{100, 97, 0, 3}));
  EXPECT_EQ(book.counters().idem_hits, 3u);

  // The same after a restart (a restored book keeps the two kinds apart).
  Book copy(BookLimits{.finished_holds_max = 4});
  ASSERT_EQ(rows.restore_into(copy), "");
  Changes c;
  for (int i = 0; i < 20; ++i) {
    proto::ReserveResp r;
    ASSERT_EQ(copy.reserve({"mallory", "", 60'000, {{"tee", 1}}}, now, r, c), Status::kOk);
    proto::HoldView v;
    ASSERT_EQ(copy.release(r.hold_id, now, v, c), Status::kOk);
    now += 1;
  }
  (void)copy.expire(now, c);
  for (int i = 0; i < 3; ++i) {
    proto::ReserveResp again;
    ASSERT_EQ(copy.reserve({"ann", "order-" + std::to_string(i), 0, {{"tee", 1}}}, now, again, c),
              Status::kOk);
    EXPECT_EQ(again, sold[i]) << "restored: the retry of order " << i << " is its first answer";
  }
  EXPECT_EQ(copy.check_invariants().message(), "");

  // With only orders kept, the cap forgets the oldest order first.
  for (int i = 3; i < 8; ++i) {
    ASSERT_EQ(reserve("bob", "order-" + std::to_string(i), 0, {{"tee", 1}}), Status::kOk);
    now += 1;
  }
  expire();
  proto::HoldView v;
  EXPECT_EQ(book.hold_get(sold[0].hold_id, v), Status::kNotFound);
  EXPECT_EQ(book.hold_get(sold[2].hold_id, v), Status::kNotFound);
}

TEST_F(BookTest, DeadlineIndexSurvivesRandomRemovals) {
  create("tee", 1000);
  std::vector<uint64_t> ids;
  uint64_t x = 12345;
  auto rnd = [&x](uint64_t n) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return (x >> 33) % n;
  };
  for (int i = 0; i < 300; ++i) {
    ids.push_back(hold("u" + std::to_string(i % 10), {{"tee", 1}}, 1000 + uint32_t(rnd(5000))));
  }
  std::set<uint64_t> left(ids.begin(), ids.end());
  uint64_t sold = 0;
  for (int i = 0; i < 150; ++i) {
    const uint64_t id = ids[rnd(ids.size())];
    if (!left.erase(id)) continue;
    const bool buy = rnd(2) == 0;
    sold += buy ? 1 : 0;
    ASSERT_EQ(buy ? commit(id) : release(id), Status::kOk);
    ASSERT_EQ(book.check_invariants().message(), "") << "after finishing hold " << id;
  }
  now += 10'000;
  EXPECT_EQ(expire(), left.size());
  int64_t last_at = 0;
  uint64_t last_id = 0;
  for (const auto& r : ch.outbox) {
    EXPECT_TRUE(left.contains(r.order_id));
    EXPECT_TRUE(r.at_ms > last_at || (r.at_ms == last_at && r.order_id > last_id));
    last_at = r.at_ms;
    last_id = r.order_id;
  }
  EXPECT_EQ(counts("tee"), (U{1000, 1000 - sold, 0, sold}));
}

// ---- Codes. ----

TEST_F(BookTest, CodesLoadMakesAPool) {
  create("cp", 0);
  proto::CodesLoadResp r;
  ASSERT_EQ(load("cp", {"x1", "x2"}, &r), Status::kOk);
  EXPECT_EQ(r.sku.flags & proto::kSkuFlagCodePool, proto::kSkuFlagCodePool);
  EXPECT_EQ(counts("cp"), (U{2, 2, 0, 0}));
  using CodeKey = std::pair<std::string, uint32_t>;
  EXPECT_EQ(ch.codes, (std::vector<CodeKey>{{"cp", 0}, {"cp", 1}}));
  ASSERT_EQ(load("cp", {"x3"}), Status::kOk);
  EXPECT_EQ(ch.codes, (std::vector<CodeKey>{{"cp", 2}}));
  EXPECT_EQ(counts("cp"), (U{3, 3, 0, 0}));
  EXPECT_EQ(book.code_row("cp", 2), (rec::CodeRow{"cp", 2, "x3", 0}));
  EXPECT_FALSE(book.code_row("cp", 3));
}

// A SKU that sold counted units, emptied (its holds released or expired, its total 0), becomes
// a code pool. Its finished holds stay in the book (keys, HOLD_GET) with a line of the SKU and
// no codes: they never held any. The book's own check, which a start runs on the restored
// state, took them for damage: the data dir no longer started, past every snapshot.
TEST_F(BookTest, ACountedSkuEmptiedThenMadeAPoolKeepsItsFinishedHolds) {
  create("x", 5);
  const uint64_t released = hold("ann", {{"x", 2}});
  const uint64_t expired = hold("bob", {{"x", 1}}, 1'000);
  ASSERT_EQ(release(released), Status::kOk);
  now += 2'000;
  ASSERT_EQ(expire(), 1u);
  ASSERT_EQ(restock("x", -5), Status::kOk);
  ASSERT_EQ(load("x", {"c1", "c2"}), Status::kOk);
  EXPECT_EQ(book.check_invariants().message(), "");
  proto::HoldView v;
  ASSERT_EQ(book.hold_get(expired, v, "bob"), Status::kOk);
  EXPECT_EQ(v.state, proto::HoldState::kExpired);
  EXPECT_TRUE(v.codes.empty());
  proto::ReserveResp r;
  ASSERT_EQ(reserve("cy", "", 0, {{"x", 1}}, &r), Status::kOk);
  ASSERT_EQ(r.codes.size(), 1u);
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  expect_same_book(book, copy, rows);
}

TEST_F(BookTest, CodesLoadRefusals) {
  create("cp", 0);
  create("tee", 5);
  create("other", 0);
  ASSERT_EQ(load("cp", {"x1", "x2"}), Status::kOk);
  proto::CodesLoadResp r;
  EXPECT_EQ(load("nope", {"y"}), Status::kNotFound);
  EXPECT_EQ(load("tee", {"y"}), Status::kBadRequest);  // counted stock is not a pool
  EXPECT_EQ(load("cp", {}), Status::kBadRequest);
  EXPECT_EQ(load("cp", {"ok", ""}), Status::kBadRequest);
  EXPECT_EQ(load("cp", {std::string(129, 'c')}), Status::kBadRequest);
  EXPECT_EQ(load("cp", {"y1", "y2", "y1", "y2"}, &r), Status::kDuplicateCode);
  EXPECT_EQ(r.duplicate, "y1");
  EXPECT_EQ(load("other", {"z", "x2", "x1"}, &r), Status::kDuplicateCode);  // across SKUs
  EXPECT_EQ(r.duplicate, "x2");
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(counts("cp"), (U{2, 2, 0, 0}));
  EXPECT_EQ(counts("other"), (U{0, 0, 0, 0}));
  EXPECT_FALSE(book.code_row("other", 0));
  EXPECT_EQ(load("cp", {std::string(128, 'c')}), Status::kOk);
  EXPECT_EQ(load("other", {"z", std::string(128, 'c')}, &r), Status::kDuplicateCode);
  EXPECT_EQ(r.duplicate, std::string(128, 'c'));  // a code of another SKU, sold or not
  // A pool's total is its codes: no total, no restock.
  EXPECT_EQ(set({"cp", proto::kSetTotal, 10, 0, 0, 0}), Status::kBadRequest);
  EXPECT_EQ(restock("cp", 1), Status::kBadRequest);
}

// A load cut short is finished by running it again: codes already in the pool are skipped, the
// rest are loaded (and logged: only those, so that replay loads exactly them).
TEST_F(BookTest, CodesLoadSkipsCodesAlreadyInThePool) {
  create("cp", 0);
  ASSERT_EQ(load("cp", {"a", "b"}), Status::kOk);
  ch.clear();
  proto::CodesLoadResp r;
  ASSERT_EQ(load("cp", {"a", "b", "c", "d"}, &r), Status::kOk);
  EXPECT_EQ(r.sku.total, 4u);
  EXPECT_EQ(counts("cp"), (U{4, 4, 0, 0}));
  EXPECT_EQ(ch.entry_count, 1u);
  EXPECT_EQ(ch.codes.size(), 2u) << "rows of the new codes only";
  ch.clear();
  ASSERT_EQ(load("cp", {"d", "a"}, &r), Status::kOk);  // nothing new: nothing changes
  EXPECT_EQ(r.sku.total, 4u);
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(load("cp", {"e", "e"}, &r), Status::kDuplicateCode);  // repeated in the request
  EXPECT_EQ(counts("cp"), (U{4, 4, 0, 0}));
}

TEST_F(BookTest, CodesPerSkuMax) {
  Book small(BookLimits{.codes_per_sku_max = 2});
  proto::SkuView v;
  proto::CodesLoadResp r;
  ASSERT_EQ(small.sku_set({"cp", proto::kSetTotal, 0, 0, 0, 0}, now, v, fresh()), Status::kOk);
  EXPECT_EQ(small.codes_load({"cp", {"a", "b", "c"}}, 0, r, fresh()), Status::kBadRequest);
  EXPECT_EQ(small.codes_load({"cp", {"a", "b"}}, 0, r, fresh()), Status::kOk);
  EXPECT_EQ(small.codes_load({"cp", {"c"}}, 0, r, fresh()), Status::kBadRequest);
}

TEST_F(BookTest, ClaimHandsOutDistinctCodes) {
  create_pool("cp", {"c0", "c1", "c2"});
  std::set<std::string> got;
  for (int i = 0; i < 3; ++i) {
    proto::ClaimResp c;
    ASSERT_EQ(claim("cp", "u" + std::to_string(i), "", &c), Status::kOk);
    EXPECT_EQ(c.available, 2u - i);
    EXPECT_TRUE(got.insert(c.code).second) << c.code;
    auto h = book.hold_row(c.order_id);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->hold.state, HoldState::kCommitted);
    EXPECT_EQ(h->hold.codes, (std::vector<proto::SkuCode>{{"cp", c.code}}));
    ASSERT_EQ(ch.outbox.size(), 1u);
    EXPECT_EQ(ch.outbox[0].codes, h->hold.codes);
    EXPECT_EQ(book.code_row("cp", static_cast<uint32_t>(i))->owner, c.order_id);
  }
  proto::ClaimResp c;
  EXPECT_EQ(claim("cp", "late", "", &c), Status::kSoldOut);
  EXPECT_EQ(c.available, 0u);
  EXPECT_EQ(book.counters().claims_ok, 3u);
  EXPECT_EQ(book.counters().reserves_ok, 0u);
}

TEST_F(BookTest, ClaimRefusals) {
  create("tee", 5);
  create_pool("cp", {"c0", "c1"}, 1);
  proto::ClaimResp c;
  EXPECT_EQ(claim("tee", "ann", "", &c), Status::kBadRequest);  // not a pool
  EXPECT_EQ(c.available, 5u);
  EXPECT_EQ(claim("nope", "ann", ""), Status::kNotFound);
  EXPECT_EQ(claim("", "ann", ""), Status::kBadRequest);
  EXPECT_EQ(claim("cp", "", ""), Status::kBadRequest);
  EXPECT_EQ(claim("cp", "ann", std::string(129, 'k')), Status::kBadRequest);
  ASSERT_EQ(claim("cp", "ann", ""), Status::kOk);
  EXPECT_EQ(claim("cp", "ann", "", &c), Status::kLimitExceeded);
  EXPECT_EQ(c.available, 0u);  // the allowance left, as in RESERVE
  proto::SkuView v;
  ASSERT_EQ(book.sale_close("cp", now, v, fresh()), Status::kOk);
  EXPECT_EQ(claim("cp", "bob", "", &c), Status::kSaleClosed);
  EXPECT_EQ(counts("cp"), (U{2, 1, 0, 1}));
}

TEST_F(BookTest, ClaimRetryReturnsTheSameCode) {
  create_pool("cp", {"c0", "c1", "c2"});
  proto::ClaimResp first, again;
  ASSERT_EQ(claim("cp", "ann", "k", &first), Status::kOk);
  ASSERT_EQ(claim("cp", "bob", "", nullptr), Status::kOk);
  ASSERT_EQ(claim("cp", "ann", "k", &again), Status::kOk);
  EXPECT_EQ(again, first);
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(claim("cp", "bob", "k"), Status::kKeyConflict);
  EXPECT_EQ(counts("cp"), (U{3, 1, 0, 2}));
}

// A code a buyer saw is the buyer's: a held hold's codes are not shown (not in its answer, its
// retries' answers, nor HOLD_GET) until it is committed, so a hold released or run out gives
// back codes nobody knows. They were shown at once: ann held a gift card, read its code,
// released it, and the same code was then sold to bob (and ann's retry showed it again).
TEST_F(BookTest, NoBuyerSeesACodeAnotherBuyerIsSold) {
  create_pool("gc", {"GC-1"});
  proto::ReserveResp held, again;
  ASSERT_EQ(reserve("ann", "k", 60'000, {{"gc", 1}}, &held), Status::kOk);
  EXPECT_TRUE(held.codes.empty());
  proto::HoldView v;
  ASSERT_EQ(book.hold_get(held.hold_id, v, "ann"), Status::kOk);
  EXPECT_TRUE(v.codes.empty());
  ASSERT_EQ(release(held.hold_id, &v), Status::kOk);
  EXPECT_TRUE(v.codes.empty());
  proto::ClaimResp sold;
  ASSERT_EQ(claim("gc", "bob", "", &sold), Status::kOk);
  EXPECT_EQ(sold.code, "GC-1");
  ASSERT_EQ(reserve("ann", "k", 60'000, {{"gc", 1}}, &again), Status::kOk);
  EXPECT_TRUE(again.codes.empty());
  ASSERT_EQ(book.hold_get(held.hold_id, v, "ann"), Status::kOk);
  EXPECT_TRUE(v.codes.empty());
}

TEST_F(BookTest, ReleasedAndExpiredCodesAreReused) {
  create_pool("cp", {"c0", "c1", "c2"});
  proto::ReserveResp r;
  ASSERT_EQ(reserve("ann", "", 60'000, {{"cp", 2}}, &r), Status::kOk);
  EXPECT_TRUE(r.codes.empty());
  EXPECT_EQ(book.code_row("cp", 0)->owner, r.hold_id);
  const std::vector<proto::SkuCode> held = {{"cp", "c0"}, {"cp", "c1"}};
  proto::HoldView v;
  ASSERT_EQ(release(r.hold_id, &v), Status::kOk);
  EXPECT_TRUE(v.codes.empty()) << "a released hold shows codes now back in the pool";
  EXPECT_EQ(book.code_row("cp", 0)->owner, 0u);
  ASSERT_EQ(ch.outbox.size(), 1u);
  EXPECT_EQ(ch.outbox[0].codes, held);  // the record for SQL names what was held
  proto::ClaimResp c;
  ASSERT_EQ(claim("cp", "bob", "", &c), Status::kOk);
  EXPECT_EQ(c.code, "c0");
  ASSERT_EQ(reserve("cat", "", 100, {{"cp", 2}}, &r), Status::kOk);
  EXPECT_EQ(book.code_row("cp", 1)->owner, r.hold_id);
  EXPECT_EQ(book.code_row("cp", 2)->owner, r.hold_id);
  EXPECT_EQ(claim("cp", "dan", ""), Status::kSoldOut);
  now += 100;
  ASSERT_EQ(claim("cp", "dan", "", &c), Status::kOk);  // the sweep freed cat's codes
  EXPECT_EQ(c.code, "c1");
  EXPECT_EQ(counts("cp"), (U{3, 1, 0, 2}));
}

// The checkpointer keeps one Changes over millions of decisions: it must name each SKU and hold
// once however often it changed (a hold made, sold and forgotten; a hot SKU per order), in the
// order of their first change, until clear(); a copy names rows again rather than missing one.
TEST(BookChangesTest, NamesEachRowOnceUntilCleared) {
  Book book(BookLimits{.finished_holds_max = 2});
  Changes ch;
  ch.log = false;
  proto::SkuView v;
  for (const char* id : {"hot", "cold"}) {
    ASSERT_EQ(book.sku_set({id, proto::kSetTotal, 100, 0, 0, 0}, kT0, v, ch), Status::kOk);
  }
  std::vector<uint64_t> ids;
  for (int i = 0; i < 6; ++i) {
    proto::ReserveResp r;
    const std::string sku = i == 3 ? "cold" : "hot";
    ASSERT_EQ(book.reserve({"ann", "", i % 2 == 0 ? 0u : 60'000u, {{sku, 1}}}, kT0 + i, r, ch),
              Status::kOk);
    ids.push_back(r.hold_id);
  }
  proto::HoldView view;
  ASSERT_EQ(book.commit(ids[1], kT0 + 10, view, ch), Status::kOk);
  ASSERT_EQ(book.release(ids[3], kT0 + 11, view, ch), Status::kOk);
  book.expire(kT0 + 12, ch);  // forgets the oldest finished holds past 2
  EXPECT_EQ(ch.skus, (std::vector<std::string>{"hot", "cold"}));
  EXPECT_EQ(ch.holds, ids);  // each once, in the order made, though most changed again
  std::vector<uint64_t> seqs = ch.hold_seqs;
  EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
  EXPECT_EQ(std::set<uint64_t>(seqs.begin(), seqs.end()).size(), seqs.size());

  Changes copy = ch;
  ASSERT_EQ(book.commit(ids[5], kT0 + 13, view, copy), Status::kOk);
  EXPECT_EQ(copy.holds.back(), ids[5]);
  EXPECT_EQ(copy.skus.back(), "hot");

  ch.clear();
  proto::ReserveResp r;
  ASSERT_EQ(book.reserve({"bob", "", 0, {{"hot", 1}}}, kT0 + 15, r, ch), Status::kOk);
  EXPECT_EQ(ch.skus, std::vector<std::string>{"hot"});
  EXPECT_EQ(std::count(ch.holds.begin(), ch.holds.end(), r.hold_id), 1);
}

// A checkpoint writes the SKUs a Changes named in key order, each once, with their current
// rows: by walking the book's SKUs when most were named, by name when few were, and by name
// when another Changes marked some of them since (so none is missed).
TEST(BookChangesTest, NamedSkuRowsComeOnceEachInKeyOrder) {
  Book book;
  Changes setup;
  proto::SkuView v;
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back("s" + std::to_string((i * 17) % 40));
  for (const std::string& id : ids) {
    ASSERT_EQ(book.sku_set({id, proto::kSetTotal, 50, 0, 0, 0}, kT0, v, setup), Status::kOk);
  }
  const auto listed = [&book](const Changes& ch) {
    std::vector<std::pair<std::string, uint64_t>> out;
    rec::SkuRow row;
    book.named_sku_rows(ch, row, [&](std::string_view id, const rec::SkuRow* r) {
      EXPECT_NE(r, nullptr) << id;
      EXPECT_EQ(r->sku, id);
      out.emplace_back(std::string(id), r->sold);
    });
    return out;
  };
  Changes ch;
  std::vector<std::pair<std::string, uint64_t>> want;
  for (int i = 0; i < 30; ++i) {  // 30 of 40 SKUs, some twice: the walk
    proto::ReserveResp r;
    ASSERT_EQ(book.reserve({"ann", "", 0, {{ids[i % 25], 1}}}, kT0 + i, r, ch), Status::kOk);
  }
  for (int i = 0; i < 25; ++i) want.emplace_back(ids[i], i < 5 ? 2 : 1);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(listed(ch), want);
  EXPECT_EQ(ch.skus.size(), 25u);

  Changes other;  // marks one of them for itself: `ch` must still list it
  proto::ReserveResp r;
  ASSERT_EQ(book.reserve({"bob", "", 0, {{ids[7], 1}}}, kT0 + 40, r, other), Status::kOk);
  for (auto& [id, sold] : want) sold += id == ids[7] ? 1 : 0;
  EXPECT_EQ(listed(ch), want);
  EXPECT_EQ(listed(other), (std::vector<std::pair<std::string, uint64_t>>{{ids[7], 2}}));

  Changes copy = ch;  // a copy names rows again: still each once
  ASSERT_EQ(book.reserve({"cy", "", 0, {{ids[0], 1}}}, kT0 + 41, r, copy), Status::kOk);
  for (auto& [id, sold] : want) sold += id == ids[0] ? 1 : 0;
  EXPECT_EQ(copy.skus.size(), 26u);
  EXPECT_EQ(listed(copy), want);
}

// A start restores the SKU rows in key order (a table's), and the book lists its SKUs in name
// order as they are made, for the first checkpoint's walk. Rows restored in another order, or
// SKUs made after the restore, leave that list to be sorted by the walk: the rows come in key
// order, each once, every way.
TEST(BookChangesTest, RestoredSkusComeInKeyOrderWhateverTheRestoreOrder) {
  RowMirror rows;
  {
    Book book;
    Changes ch;
    proto::SkuView v;
    for (int i = 0; i < 40; ++i) {
      const std::string id = "s" + std::to_string((i * 17) % 40);
      ASSERT_EQ(book.sku_set({id, proto::kSetTotal, 50, 0, 0, 0}, kT0, v, ch), Status::kOk);
    }
    rows.apply(book, ch);
  }
  enum class How { kKeyOrder, kReversed, kKeyOrderThenANewSku };
  for (const How how : {How::kKeyOrder, How::kReversed, How::kKeyOrderThenANewSku}) {
    Book copy;
    if (how == How::kReversed) {
      for (auto it = rows.skus.rbegin(); it != rows.skus.rend(); ++it) copy.restore(it->second);
    } else {
      for (const auto& [id, row] : rows.skus) copy.restore(row);
    }
    copy.restore(rows.meta);
    ASSERT_EQ(copy.finish_restore().message(), "");
    Changes ch;
    std::vector<std::string> want;
    for (const auto& [id, row] : rows.skus) want.push_back(id);
    if (how == How::kKeyOrderThenANewSku) {
      proto::SkuView v;
      ASSERT_EQ(copy.sku_set({"s395", proto::kSetTotal, 50, 0, 0, 0}, kT0, v, ch), Status::kOk);
      want.push_back("s395");
      std::sort(want.begin(), want.end());
    }
    for (const std::string& id : want) {
      proto::ReserveResp r;
      ASSERT_EQ(copy.reserve({"ann", "", 0, {{id, 1}}}, kT0 + 1, r, ch), Status::kOk) << id;
    }
    std::vector<std::string> listed;
    rec::SkuRow row;
    copy.named_sku_rows(ch, row, [&](std::string_view id, const rec::SkuRow* r) {
      ASSERT_NE(r, nullptr) << id;
      EXPECT_EQ(r->sku, id);
      EXPECT_EQ(r->sold, 1u) << id;
      listed.emplace_back(id);
    });
    EXPECT_EQ(listed, want) << "restored " << static_cast<int>(how);
  }
}

// A book of 100,000 holds or more (a start from a big checkpoint) has its indexes checked on
// two more threads; a valid one passes there as it does on one thread, before and after its
// rows are restored into another book.
TEST(BookCheckTest, ABigBookIsCheckedOnThreads) {
  Book book;
  Changes ch;
  ch.log = false;
  ch.records = false;
  RowMirror rows;
  proto::SkuView v;
  ASSERT_EQ(book.sku_set({"hot", proto::kSetTotal, 1'000'000, 0, 0, 0}, kT0, v, ch), Status::kOk);
  for (int i = 0; i < 120'000; ++i) {
    proto::ReserveResp r;
    const std::string key = i % 3 == 0 ? "" : "key-" + std::to_string(i) + "-0123456789abcdef";
    ASSERT_EQ(
        book.reserve({"u" + std::to_string(i % 5000), key, i % 5 == 0 ? 60'000u : 0u, {{"hot", 1}}},
                     kT0 + i / 100, r, ch),
        Status::kOk);
  }
  rows.apply(book, ch);
  EXPECT_EQ(book.check_invariants().message(), "");
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  EXPECT_EQ(copy.check_invariants().message(), "");
  EXPECT_EQ(copy.idem_answer("key-1-0123456789abcdef"), book.idem_answer("key-1-0123456789abcdef"));
}

// ---- Retention. ----

class BookRetentionTest : public BookTest {
 protected:
  BookRetentionTest() : BookTest(BookLimits{.finished_hold_retention_ms = 2000}) {}
};

TEST_F(BookRetentionTest, ForgetsFinishedHoldsWithTheirKeys) {
  create("tee", 10, 5);
  proto::ReserveResp r1, r2;
  ASSERT_EQ(reserve("ann", "k1", 0, {{"tee", 1}}, &r1), Status::kOk);
  ASSERT_EQ(reserve("ann", "k2", 5000, {{"tee", 1}}, &r2), Status::kOk);
  now = kT0 + 1999;
  expire();
  EXPECT_EQ(book.idem_answer("k1"), r1);
  now = kT0 + 2000;
  expire();  // r1 was sold at kT0: kept until kT0 + 2000, its key with it
  EXPECT_EQ(ch.holds, std::vector<uint64_t>{r1.hold_id});
  EXPECT_FALSE(book.hold_row(r1.hold_id));
  EXPECT_FALSE(book.idem_answer("k1"));
  EXPECT_EQ(book.idem_answer("k2"), r2);  // its hold is live: never forgotten
  EXPECT_EQ(stat("idem_keys"), 1u);
  proto::HoldView v;
  EXPECT_EQ(book.hold_get(r1.hold_id, v), Status::kNotFound);
  EXPECT_EQ(commit(r1.hold_id), Status::kNotFound);
  // The sold units stay sold and count against the user.
  EXPECT_EQ(counts("tee"), (U{10, 8, 1, 1}));
  EXPECT_EQ(units("tee", "ann"), 2u);
  // A forgotten key is a new request.
  proto::ReserveResp r3;
  ASSERT_EQ(reserve("ann", "k1", 0, {{"tee", 1}}, &r3), Status::kOk);
  EXPECT_NE(r3.hold_id, r1.hold_id);
  now = kT0 + 5000;
  expire();  // r2 expires at its deadline, and is kept 2 s after that
  EXPECT_EQ(state(r2.hold_id), HoldState::kExpired);
  EXPECT_EQ(book.idem_answer("k2"), r2);  // still the first answer: HELD, with its deadline
  now = kT0 + 6999;
  expire();
  EXPECT_TRUE(book.hold_row(r2.hold_id));
  now = kT0 + 7000;
  expire();
  EXPECT_FALSE(book.hold_row(r2.hold_id));
  EXPECT_FALSE(book.idem_answer("k2"));
  EXPECT_EQ(stat("finished_holds"), 0u);
  EXPECT_EQ(stat("idem_keys"), 0u);
}

// With a key, hold ids are a permutation of the sequence: unguessable, never twice, and a
// restored book (key from the meta row) knows which were issued, codes of forgotten orders too.
TEST_F(BookRetentionTest, KeyedHoldIdsSurviveRestoreAndForgetting) {
  ASSERT_TRUE(book.set_hold_id_key({0x0123456789abcdefULL, 0xfedcba9876543210ULL}, now, fresh()));
  create("tee", 1000, 0);
  create_pool("cp", {"c0", "c1", "c2"});
  std::set<uint64_t> ids;
  for (int i = 0; i < 50; ++i) {
    proto::ReserveResp r;
    ASSERT_EQ(reserve("u" + std::to_string(i), "", i % 2 == 0 ? 0 : 60'000, {{"tee", 1}}, &r),
              Status::kOk);
    EXPECT_TRUE(ids.insert(r.hold_id).second);
    EXPECT_NE(r.hold_id, static_cast<uint64_t>(i + 1)) << "a sequential id under a key";
  }
  EXPECT_FALSE(book.set_hold_id_key({1, 2}, now, fresh()))
      << "the key changed after holds were made";
  proto::ClaimResp c;
  ASSERT_EQ(claim("cp", "ann", "", &c), Status::kOk);
  now += 5000;
  expire();  // the claim's order is forgotten; its code stays owned by its (issued) id
  EXPECT_FALSE(book.hold_row(c.order_id));
  EXPECT_EQ(book.code_row("cp", 0)->owner, c.order_id);
  EXPECT_EQ(book.check_invariants().message(), "");
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  expect_same_book(book, copy, rows);
  // A hold row with an id the key never made is refused on restore.
  RowMirror forged = rows;
  rec::HoldRow row = forged.holds.begin()->second;
  row.hold.hold_id = 7;
  forged.holds[7] = row;
  Book bad;
  EXPECT_NE(forged.restore_into(bad), "");
}

// The fingerprint of a RESERVE as book.cc makes it: FNV-1a 64 over kind 1, the user, ttl_ms and
// the lines (u32 little-endian integers, u32-length-prefixed strings).
uint64_t reserve_fingerprint(const std::string& user, uint32_t ttl,
                             const std::vector<Line>& lines) {
  uint64_t h = wire::fnv1a64("");
  const auto u32 = [&](uint32_t v) {
    const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 24)};
    h = wire::fnv1a64(std::string_view(b, 4), h);
  };
  const auto str = [&](std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    h = wire::fnv1a64(s, h);
  };
  u32(1);
  str(user);
  u32(ttl);
  u32(static_cast<uint32_t>(lines.size()));
  for (const Line& l : lines) {
    str(l.sku);
    u32(l.qty);
  }
  return h;
}

// A 64-bit FNV-1a can be made to collide on purpose. A hold row whose fingerprint is that of
// another user's request stands for such a collision: that user, sending the victim's key, must
// get KEY_CONFLICT, never the victim's answer (its hold id, its codes). It got the answer.
TEST_F(BookTest, AForgedFingerprintUnderAnotherUsersKeyIsAConflict) {
  create("tee", 10);
  proto::ReserveResp ann;
  ASSERT_EQ(reserve("ann", "k-ann", 60'000, {{"tee", 1}}, &ann), Status::kOk);
  RowMirror forged = rows;
  ASSERT_EQ(forged.holds.count(ann.hold_id), 1u);
  forged.holds[ann.hold_id].fingerprint = reserve_fingerprint("mallory", 60'000, {{"tee", 1}});
  Book copy;
  ASSERT_EQ(forged.restore_into(copy), "");
  proto::ReserveResp r;
  Changes c;
  EXPECT_EQ(copy.reserve({"mallory", "k-ann", 60'000, {{"tee", 1}}}, now, r, c),
            Status::kKeyConflict);
  EXPECT_NE(r.hold_id, ann.hold_id) << "mallory got ann's hold";
}

TEST_F(BookRetentionTest, ForgottenOrderKeepsItsCodesSold) {
  create_pool("cp", {"c0", "c1"});
  proto::ClaimResp c;
  ASSERT_EQ(claim("cp", "ann", "", &c), Status::kOk);
  now += 5000;
  expire();
  EXPECT_FALSE(book.hold_row(c.order_id));
  EXPECT_EQ(book.code_row("cp", 0)->owner, c.order_id);
  ASSERT_EQ(claim("cp", "bob", "", &c), Status::kOk);
  EXPECT_EQ(c.code, "c1");
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  expect_same_book(book, copy, rows);
}

// ---- Changes, outbox, stats. ----

TEST_F(BookTest, ChangesNameEverythingTouched) {
  create("tee", 10, 5);
  create_pool("cp", {"c0", "c1"}, 1);
  proto::ReserveResp r;
  ASSERT_EQ(reserve("ann", "k", 60'000, {{"tee", 2}, {"cp", 1}}, &r), Status::kOk);
  EXPECT_EQ(ch.skus, (std::vector<std::string>{"tee", "cp"}));
  EXPECT_EQ(ch.holds, std::vector<uint64_t>{r.hold_id});
  EXPECT_EQ(book.hold_row(r.hold_id)->hold.key, "k");  // the key is part of the hold row
  using UserKey = std::pair<std::string, std::string>;
  EXPECT_EQ(ch.users, (std::vector<UserKey>{{"tee", "ann"}, {"cp", "ann"}}));
  using CodeKey = std::pair<std::string, uint32_t>;
  EXPECT_EQ(ch.codes, (std::vector<CodeKey>{{"cp", 0}}));
  EXPECT_TRUE(ch.outbox.empty());
  EXPECT_TRUE(ch.meta);
  ASSERT_EQ(commit(r.hold_id), Status::kOk);
  EXPECT_EQ(ch.holds, std::vector<uint64_t>{r.hold_id});
  EXPECT_EQ(ch.outbox.size(), 1u);
  EXPECT_TRUE(ch.meta);
  proto::HoldView v;
  ASSERT_EQ(book.hold_get(r.hold_id, v), Status::kOk);
  EXPECT_EQ(v.codes, (std::vector<proto::SkuCode>{{"cp", "c0"}}));
  EXPECT_EQ(book.meta().next_hold_id, r.hold_id + 1);
  EXPECT_EQ(book.meta().next_outbox_seq, 2u);
  EXPECT_EQ(book.meta().lsn, 0u);
}

TEST_F(BookTest, OutboxSequenceKindsAndTimes) {
  create("tee", 10);
  uint64_t a = hold("ann", {{"tee", 1}});
  uint64_t b = hold("bob", {{"tee", 1}});
  uint64_t c = hold("cat", {{"tee", 1}}, 50);
  now += 10;
  ASSERT_EQ(commit(a), Status::kOk);
  ASSERT_EQ(release(b), Status::kOk);
  now += 100;
  expire();
  hold("dan", {{"tee", 1}}, 0);
  ASSERT_EQ(rows.outbox.size(), 4u);
  const std::vector<OutboxKind> kinds = {OutboxKind::kOrder, OutboxKind::kReleased,
                                         OutboxKind::kExpired, OutboxKind::kOrder};
  const std::vector<uint64_t> ids = {a, b, c, c + 1};
  const std::vector<int64_t> at = {kT0 + 10, kT0 + 10, kT0 + 50, kT0 + 110};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rows.outbox[i].seq, i + 1);
    EXPECT_EQ(rows.outbox[i].kind, kinds[i]);
    EXPECT_EQ(rows.outbox[i].order_id, ids[i]);
    EXPECT_EQ(rows.outbox[i].at_ms, at[i]);
    EXPECT_EQ(rows.outbox[i].lines, (std::vector<Line>{{"tee", 1}}));
  }
  EXPECT_EQ(rows.outbox[3].created_at_ms, kT0 + 110);
  EXPECT_EQ(rows.outbox[0].created_at_ms, kT0);
  EXPECT_EQ(stat("outbox_next_seq"), 5u);
}

TEST_F(BookTest, StatsNameTheBook) {
  create("tee", 10);
  hold("ann", {{"tee", 2}});
  hold("bob", {{"tee", 3}}, 0);
  EXPECT_EQ(reserve("cat", "", 0, {{"tee", 99}}), Status::kSoldOut);
  std::vector<proto::Stat> all;
  book.stats(all);
  std::map<std::string, uint64_t> s;
  for (auto& st : all) s[st.name] = st.value;
  for (const char* name :
       {"skus", "live_holds", "finished_holds", "idem_keys", "reserves_ok", "sold_out",
        "limit_exceeded", "commits", "releases", "expiries", "claims_ok", "idem_hits",
        "units_total", "units_available", "units_held", "units_sold", "outbox_next_seq"}) {
    EXPECT_TRUE(s.contains(name)) << name;
  }
  EXPECT_EQ(s["skus"], 1u);
  EXPECT_EQ(s["live_holds"], 1u);
  EXPECT_EQ(s["finished_holds"], 1u);
  EXPECT_EQ(s["reserves_ok"], 2u);
  EXPECT_EQ(s["sold_out"], 1u);
  EXPECT_EQ(s["units_total"], 10u);
  EXPECT_EQ(s["units_available"], 5u);
  EXPECT_EQ(s["units_held"], 2u);
  EXPECT_EQ(s["units_sold"], 3u);
  EXPECT_EQ(book.sku_count(), 1u);
}

// ---- Recovery. ----

TEST_F(BookTest, RestoreRoundTripOfABusyBook) {
  create("tee", 50, 5);
  create("mug", 20);
  create_pool("cp", {"c0", "c1", "c2", "c3", "c4", "c5"}, 2);
  ASSERT_EQ(set({"mug", proto::kSetOpensAt | proto::kSetClosesAt, 0, 0, kT0 - 1, kT0 * 2}),
            Status::kOk);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 12; ++i) {
    const std::string user = "u" + std::to_string(i % 4);
    proto::ReserveResp r;
    const uint32_t ttl = i % 3 == 0 ? 0 : 1000u * static_cast<uint32_t>(i);
    Status st = reserve(user, i % 2 ? "key" + std::to_string(i) : "", ttl,
                        {{"tee", 1}, {"mug", 2}, {"cp", 1}}, &r);
    if (st == Status::kOk) ids.push_back(r.hold_id);
    now += 100;
  }
  ASSERT_GE(ids.size(), 6u);
  // Whatever these answer (some holds have expired by now), the restored book must match.
  (void)commit(ids[1]);
  (void)release(ids[2]);
  (void)claim("cp", "u9", "ck");
  now += 3000;
  expire();
  proto::SkuView v;
  ASSERT_EQ(book.sale_close("mug", now, v, fresh()), Status::kOk);
  mirror();
  ASSERT_GT(book.live_holds(), 0u);

  EXPECT_GE(rows.holds.size(), 6u);
  EXPECT_TRUE(std::any_of(rows.holds.begin(), rows.holds.end(),
                          [](const auto& kv) { return !kv.second.hold.key.empty(); }));
  EXPECT_FALSE(rows.users.empty());
  EXPECT_EQ(rows.codes.size(), 6u);
  Book copy;
  ASSERT_EQ(rows.restore_into(copy), "");
  EXPECT_EQ(copy.check_invariants().message(), "");
  expect_same_book(book, copy, rows);

  // Both books go on the same way: same answers, same codes, same expiries.
  for (int i = 0; i < 8; ++i) {
    now += 700;
    Changes c1, c2;
    proto::ReserveResp r1, r2;
    const proto::ReserveReq req{"u" + std::to_string(i), "", 900, {{"cp", 1}, {"tee", 1}}};
    EXPECT_EQ(book.reserve(req, now, r1, c1), copy.reserve(req, now, r2, c2));
    EXPECT_EQ(r1, r2);
    EXPECT_EQ(c1.outbox, c2.outbox);
  }
  expect_same_book(book, copy, rows);
}

TEST_F(BookTest, RestoreRefusesInconsistentRows) {
  {
    Book b;
    b.restore(rec::SkuRow{"tee", 10, 5, 2, 2, 0, 0, 0, false, false});
    EXPECT_NE(b.finish_restore().message(), "");  // 5 + 2 + 2 != 10
  }
  {
    Book b;
    b.restore(rec::SkuRow{"tee", 10, 8, 2, 0, 0, 0, 0, false, false});
    EXPECT_NE(b.finish_restore().message(), "");  // held 2 but no live hold
  }
  {
    Book b;
    b.restore(rec::MetaRow{0, 5, 1, 0, 1});
    b.restore(rec::SkuRow{"cp", 1, 0, 0, 1, 0, 0, 0, false, true});
    b.restore(rec::CodeRow{"cp", 0, "c0", 9});
    EXPECT_NE(b.finish_restore().message(), "");  // owner past next_hold_id
  }
  {
    Book b;
    b.restore(rec::MetaRow{0, 5, 1, 0, 1});
    b.restore(
        rec::HoldRow{{3, HoldState::kHeld, "ann", "", kT0, kT0 + 1, {{"zz", 1}}, {}}, 0, 0, 0});
    EXPECT_NE(b.finish_restore().message(), "");  // unknown SKU
  }
  {
    Book b;  // one idempotency key in two holds
    b.restore(rec::MetaRow{0, 5, 1, 0, 1});
    b.restore(rec::SkuRow{"tee", 2, 0, 2, 0, 0, 0, 0, false, false});
    for (uint64_t id : {1, 2}) {
      b.restore(rec::HoldRow{
          {id, HoldState::kHeld, "ann", "k", kT0, kT0 + 1, {{"tee", 1}}, {}}, 7, 0, 0});
    }
    EXPECT_NE(b.finish_restore().message().find("idempotency key k is also another hold's"),
              std::string::npos);
  }
  {
    Book b;  // the same, staged as recovery does: the hold rows are applied as they come
    b.restore(rec::MetaRow{0, 5, 1, 0, 1});
    b.restore(rec::SkuRow{"tee", 2, 0, 2, 0, 0, 0, 0, false, false});
    b.stage_restore();
    for (uint64_t id : {1, 2}) {
      b.restore(rec::HoldRow{
          {id, HoldState::kHeld, "ann", "k", kT0, kT0 + 1, {{"tee", 1}}, {}}, 7, 0, 0});
    }
    b.restore(
        rec::HoldRow{{3, HoldState::kHeld, "ann", "", kT0, kT0 + 1, {{"zz", 1}}, {}}, 0, 0, 0});
    // The first problem is the one reported.
    EXPECT_NE(b.finish_restore().message().find("idempotency key k is also another hold's"),
              std::string::npos);
  }
  {
    Book b;  // a SKU row after staging would be lost: refused, not dropped
    b.stage_restore();
    b.restore(rec::SkuRow{"tee", 1, 1, 0, 0, 0, 0, 0, false, false});
    EXPECT_EQ(b.finish_restore().message(), "a SKU row was restored after stage_restore()");
  }
  {
    Book b;
    b.restore(rec::MetaRow{0, 5, 1, 0, 1});
    b.restore(rec::SkuRow{"cp", 2, 0, 1, 1, 0, 0, 0, false, true});
    b.restore(rec::CodeRow{"cp", 0, "c0", 3});
    b.restore(rec::CodeRow{"cp", 1, "c1", 3});
    b.restore(rec::HoldRow{
        {3, HoldState::kHeld, "ann", "", kT0, kT0 + 1, {{"cp", 1}}, {{"cp", "c0"}}}, 0, 0, 0});
    // c1 is owned by hold 3, which exists but does not list it.
    EXPECT_NE(b.finish_restore().message(), "");
  }
  {
    Book b;
    b.restore(rec::SkuRow{"tee", 10, 10, 0, 0, 2, 0, 0, false, false});
    b.restore(rec::UserRow{"tee", "ann", 3});
    EXPECT_NE(b.finish_restore().message(), "");  // over the limit
  }
  {
    Book b;
    EXPECT_EQ(b.finish_restore().message(), "");  // an empty store is an empty book
  }
}

// A restored book of 100,000 holds or more is checked on two threads (recovery of a big
// checkpoint): it is accepted whole when consistent, its finished holds queued in finishing
// order though their rows come in sequence order, and refused when a count does not add up.
TEST_F(BookTest, ABigRestoreIsCheckedWholeOnTwoThreads) {
  constexpr uint64_t kHolds = 120'000;
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "a SKU count off by one" : "consistent");
    Book b(BookLimits{.finished_holds_max = kHolds - 1});
    b.restore(rec::MetaRow{0, kHolds + 1, 1, 0, 1});
    b.restore(rec::SkuRow{"tee", kHolds + 5, broken ? 4u : 5u, 0, kHolds, 0, 0, 0, false, false});
    b.stage_restore();
    for (uint64_t id = 1; id <= kHolds; ++id) {  // the later the hold, the earlier it finished
      const int64_t at = kT0 + static_cast<int64_t>(kHolds - id);
      b.restore(rec::HoldRow{
          {id, HoldState::kCommitted, "ann", "k" + std::to_string(id), at, 0, {{"tee", 1}}, {}},
          7,
          5,
          at});
    }
    const std::string why = b.finish_restore().message();
    if (broken) {
      EXPECT_NE(why, "");
      continue;
    }
    ASSERT_EQ(why, "");
    // One over the retention: the hold that finished first is forgotten, not the first row.
    Changes ch;
    b.expire(kT0 + static_cast<int64_t>(kHolds), ch);
    proto::HoldView v;
    EXPECT_EQ(b.hold_get(kHolds, v), Status::kNotFound);
    EXPECT_EQ(b.hold_get(1, v), Status::kOk);
    EXPECT_EQ(b.check_invariants().message(), "");
  }
}

// ---- What buyers can make the book keep (issue: no client can grow the server). ----

class BookCapsTest : public BookTest {
 protected:
  BookCapsTest()
      : BookTest(
            BookLimits{.user_live_holds_max = 3, .live_holds_max = 5, .finished_holds_max = 4}) {}
};

// The user's cap is the buyer's doing (TOO_MANY_HOLDS, an HTTP front end's 429), the server's an
// overload (BUSY, a 503): a client must tell them apart without reading the message.
TEST_F(BookCapsTest, LiveHoldsPerUserAndInAllAreRefusedAndChangeNothing) {
  create("tee", 100);
  const uint64_t first = hold("ann", {{"tee", 1}});
  hold("ann", {{"tee", 1}});
  hold("ann", {{"tee", 1}});
  const Verdict user_cap = reserve("ann", "", 60'000, {{"tee", 1}});
  EXPECT_EQ(user_cap, Status::kTooManyHolds);
  EXPECT_NE(user_cap.why.find("--user-holds-max"), std::string::npos) << user_cap.why;
  EXPECT_TRUE(ch.empty());
  EXPECT_EQ(counts("tee"), (U{100, 97, 3, 0}));
  EXPECT_EQ(reserve("ann", "", 0, {{"tee", 1}}), Status::kOk);  // buy-now keeps nothing live
  ASSERT_EQ(release(first), Status::kOk);
  hold("ann", {{"tee", 1}});  // room again after a release
  hold("bob", {{"tee", 1}});
  hold("cy", {{"tee", 1}});
  const Verdict all_cap = reserve("dee", "", 60'000, {{"tee", 1}});  // 5 live in all
  EXPECT_EQ(all_cap, Status::kBusy);
  EXPECT_NE(all_cap.why.find("--live-holds-max"), std::string::npos) << all_cap.why;
  now += 60'000;
  expire();  // expiry frees the slots too
  EXPECT_EQ(reserve("dee", "", 60'000, {{"tee", 1}}), Status::kOk);
}

TEST_F(BookCapsTest, FinishedHoldsPastTheCapAreForgottenOldestFirst) {
  create("tee", 100);
  std::vector<proto::ReserveResp> r(8);
  for (size_t i = 0; i < r.size(); ++i) {
    ASSERT_EQ(reserve("u" + std::to_string(i), "k" + std::to_string(i), 0, {{"tee", 1}}, &r[i]),
              Status::kOk);
  }
  EXPECT_LE(stat("finished_holds"), 5u);             // the cap, plus the one the last call made
  EXPECT_FALSE(book.idem_answer("k0").has_value());  // the oldest went first
  EXPECT_EQ(book.idem_answer("k7"), r[7]);
  EXPECT_EQ(counts("tee"), (U{100, 92, 0, 8}));  // forgetting never returns a sold unit
}

TEST_F(BookTest, AHoldTakesAtMostHoldCodesMaxCodes) {
  std::vector<std::string> codes;
  for (size_t i = 0; i <= proto::kHoldCodesMax + 1; ++i) codes.push_back("c" + std::to_string(i));
  create_pool("cp", codes);
  create("tee", 1000);
  const uint32_t over = static_cast<uint32_t>(proto::kHoldCodesMax) + 1;
  const Verdict big = reserve("ann", "", 60'000, {{"cp", over}});
  EXPECT_EQ(big, Status::kBadRequest);
  EXPECT_NE(big.why.find(std::to_string(proto::kHoldCodesMax)), std::string::npos) << big.why;
  EXPECT_EQ(reserve("ann", "", 0, {{"cp", 200}, {"tee", 900}}), Status::kOk);  // counted: free
  EXPECT_EQ(reserve("bob", "", 0, {{"cp", 59}}), Status::kSoldOut);            // 58 left
  proto::ReserveResp r;
  EXPECT_EQ(reserve("bob", "", 0, {{"cp", 58}}, &r), Status::kOk);
  EXPECT_EQ(r.codes.size(), 58u);
}

TEST_F(BookTest, StatsUnitSumsFollowEveryMoveWithoutAWalk) {
  create("a", 10);
  create_pool("cp", {"x", "y"});
  const uint64_t h = hold("ann", {{"a", 3}, {"cp", 1}});
  ASSERT_EQ(restock("a", 5), Status::kOk);
  ASSERT_EQ(commit(h), Status::kOk);
  hold("bob", {{"a", 2}}, 1000);
  now += 1000;
  expire();
  ASSERT_EQ(restock("a", -4), Status::kOk);
  ASSERT_EQ(set({"a", proto::kSetTotal, 20, 0, 0, 0}), Status::kOk);
  EXPECT_EQ(stat("units_total"), 22u);
  EXPECT_EQ(stat("units_sold"), 4u);
  EXPECT_EQ(stat("units_held"), 0u);
  EXPECT_EQ(stat("units_available"), 18u);
  EXPECT_EQ(book.check_invariants().message(), "");  // compares the kept sums with a walk
}

}  // namespace
}  // namespace stockd
