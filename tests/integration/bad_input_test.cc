// Bad input on raw sockets: whatever a peer sends, it gets a clear error (and a close when the
// stream can no longer be framed or the peer is not authenticated), the book does not change,
// and every other connection keeps being served.
#include <chrono>
#include <memory>
#include <optional>
#include <ostream>
#include <thread>

#include "harness.h"

namespace stockd::test {
namespace {

using proto::Opcode;
using proto::Role;
using proto::Status;

constexpr int kAnswerMs = 5000;  // an answer that takes longer is a failure
constexpr int kCloseMs = 5000;   // so is a close that does not come

// The book's public numbers; STATS minus the counters that count traffic.
struct Snapshot {
  std::vector<proto::SkuView> skus;
  std::map<std::string, uint64_t> stats;
  bool operator==(const Snapshot&) const = default;
};
void PrintTo(const Snapshot& s, std::ostream* os) {
  for (const auto& v : s.skus) {
    *os << "\n  ";
    proto::PrintTo(v, os);
  }
  for (const auto& [name, value] : s.stats) *os << "\n  " << name << "=" << value;
}
Snapshot snapshot(Client& c) {
  Snapshot s{all_skus(c), stats_map(c)};
  std::erase_if(s.stats, [](const auto& kv) {  // traffic counters: these may move
    return kv.first.starts_with("connections") || kv.first.starts_with("requests");
  });
  return s;
}

std::string describe(const RawConn::Frame& f) {
  return std::string("opcode ") + std::to_string(f.header.opcode) + " status " +
         proto::status_name(f.status()) + " id " + std::to_string(f.header.request_id) + " '" +
         f.message + "'";
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.start()) << "stockd did not come up";
    admin_ = std::make_unique<Client>(server_.options(Role::kAdmin));
    connect_or_fail(*admin_);
    make_sku(*admin_, "BAD-1", 50, 3);
    bystander_ = std::make_unique<Client>(server_.options(Role::kBuyer));
    connect_or_fail(*bystander_);
    auto r = bystander_->reserve({"bystander", "by-0", 60'000, {{"BAD-1", 2}}});
    ASSERT_TRUE(r.ok());
    before_ = snapshot(*admin_);
  }

  // The connection opened at the start is still served, by the same server process.
  void expect_server_fine(const std::string& after) {
    SCOPED_TRACE(after);
    auto p = bystander_->ping();
    EXPECT_TRUE(p.ok()) << p.error;
    EXPECT_TRUE(server_.alive()) << "stockd exited with status " << server_.exit_status();
  }

  // One frame is expected back; then `close` says whether the server must close.
  // `id` unset: not checked (an error frame for a bad magic echoes meaningless bytes).
  void expect_answer(RawConn& c, uint16_t opcode, std::optional<uint32_t> id, Status status,
                     bool close, bool want_message = true) {
    RawConn::Frame f;
    ASSERT_EQ(c.read(f, kAnswerMs), RawConn::Got::kFrame);
    EXPECT_EQ(f.header.flags, proto::kFlagResponse);
    EXPECT_EQ(f.header.opcode, opcode) << describe(f);
    if (id) {
      EXPECT_EQ(f.header.request_id, *id) << describe(f);
    }
    EXPECT_EQ(f.status(), status) << describe(f);
    if (want_message) {
      EXPECT_FALSE(f.message.empty()) << "no reason given: " << describe(f);
    }
    if (close) {
      EXPECT_TRUE(c.closed_within(kCloseMs)) << "connection not closed after " << describe(f);
    }
  }

  // A PING on `c` answers OK: the connection is still usable.
  void expect_ping(RawConn& c, uint32_t id) {
    ASSERT_TRUE(c.send(raw_frame(static_cast<uint16_t>(Opcode::kPing), id, "")));
    expect_answer(c, static_cast<uint16_t>(Opcode::kPing), id, Status::kOk, false, false);
  }

  StockdProcess server_;
  std::unique_ptr<Client> admin_;
  std::unique_ptr<Client> bystander_;
  Snapshot before_;
};

TEST_F(BadInputTest, UnframeableInputGetsOneErrorFrameThenClose) {
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    expect_answer(c, 0, std::nullopt, Status::kBadRequest, true);
  }
  expect_server_fine("garbage");
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.send(raw_frame(0x02, 9, "", 0, 0x1234)));
    expect_answer(c, 0, std::nullopt, Status::kBadRequest, true);
  }
  expect_server_fine("bad magic");
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    ASSERT_TRUE(c.send(raw_frame(0x02, 10, "", 0, proto::kMagic, 2)));
    expect_answer(c, 0, 10, Status::kUnsupportedVersion, true);
  }
  expect_server_fine("bad version");
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    ASSERT_TRUE(c.send(raw_frame(0x02, 11, "", 0x04)));
    expect_answer(c, 0, 11, Status::kBadRequest, true);
  }
  expect_server_fine("unknown flag bits");
  {
    // Requests before the garbage in the same write are answered first, in order.
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    const auto kPing = static_cast<uint16_t>(Opcode::kPing);
    ASSERT_TRUE(
        c.send(raw_frame(kPing, 14, "") + raw_frame(kPing, 15, "") + std::string(16, '\xee')));
    expect_answer(c, kPing, 14, Status::kOk, false, false);
    expect_answer(c, kPing, 15, Status::kOk, false, false);
    expect_answer(c, 0, std::nullopt, Status::kBadRequest, true);
  }
  expect_server_fine("garbage after good frames");
  {
    // 100 MiB announced, nothing sent after the header: the answer must not wait for the body.
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    proto::FrameHeader h;
    h.body_len = 100u << 20;
    h.opcode = static_cast<uint16_t>(Opcode::kReserve);
    h.request_id = 12;
    std::string header;
    proto::encode_header(h, header);
    ASSERT_TRUE(c.send(header));
    RawConn::Frame f;
    ASSERT_EQ(c.read(f, kAnswerMs), RawConn::Got::kFrame);
    EXPECT_EQ(f.header.opcode, 0);
    EXPECT_EQ(f.header.request_id, 12u);
    EXPECT_EQ(f.status(), Status::kFrameTooLarge) << describe(f);
    EXPECT_FALSE(f.message.empty());
    EXPECT_TRUE(c.closed_within(kCloseMs));
  }
  expect_server_fine("oversized frame");
  {
    // A frame cut short by a disconnect.
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    std::string f;
    proto::encode_request(Opcode::kReserve, 13,
                          proto::ReserveReq{"cut", "cut-1", 0, {{"BAD-1", 1}}}, f);
    ASSERT_TRUE(c.send(f.substr(0, f.size() - 3)));
  }
  expect_server_fine("frame cut short");
  EXPECT_EQ(snapshot(*admin_), before_) << "bad frames changed the book";
}

TEST_F(BadInputTest, UnknownOpcodeIsAnsweredAndTheConnectionStaysAfterHello) {
  RawConn c(server_.port());
  ASSERT_TRUE(c.hello(Role::kBuyer, ""));
  ASSERT_TRUE(c.send(raw_frame(0x7777, 21, "whatever")));
  expect_answer(c, 0x7777, 21, Status::kUnknownOpcode, false);
  expect_ping(c, 22);
  // Before HELLO nothing but HELLO is looked at: UNAUTHORIZED, and the connection closes.
  RawConn early(server_.port());
  ASSERT_TRUE(early.send(raw_frame(0x0099, 23, "")));
  expect_answer(early, 0x0099, 23, Status::kUnauthorized, true);
  expect_server_fine("unknown opcode");
  EXPECT_EQ(snapshot(*admin_), before_);
}

TEST_F(BadInputTest, UnauthenticatedAndUnauthorizedRequestsChangeNothing) {
  const std::string reserve =
      request_body(Opcode::kReserve, proto::ReserveReq{"sneaky", "sneak-1", 0, {{"BAD-1", 5}}});
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.send(raw_frame(static_cast<uint16_t>(Opcode::kReserve), 31, reserve)));
    expect_answer(c, static_cast<uint16_t>(Opcode::kReserve), 31, Status::kUnauthorized, true);
  }
  expect_server_fine("request before HELLO");
  {
    RawConn c(server_.port());
    std::string hello;
    proto::encode_request(Opcode::kHello, 32,
                          proto::HelloReq{1, Role::kAdmin, "not-the-token", "x"}, hello);
    ASSERT_TRUE(c.send(hello));
    expect_answer(c, static_cast<uint16_t>(Opcode::kHello), 32, Status::kUnauthorized, true);
  }
  expect_server_fine("admin HELLO with a wrong token");
  {
    RawConn c(server_.port());
    std::string hello;
    proto::encode_request(Opcode::kHello, 40, proto::HelloReq{2, Role::kBuyer, "", "future"},
                          hello);
    ASSERT_TRUE(c.send(hello));
    expect_answer(c, static_cast<uint16_t>(Opcode::kHello), 40, Status::kUnsupportedVersion, true);
  }
  expect_server_fine("HELLO with protocol version 2");
  {
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    proto::SkuSetReq set{"BAD-1", proto::kSetTotal, 1'000'000, 0, 0, 0};
    ASSERT_TRUE(c.send(
        raw_frame(static_cast<uint16_t>(Opcode::kSkuSet), 33, request_body(Opcode::kSkuSet, set))));
    expect_answer(c, static_cast<uint16_t>(Opcode::kSkuSet), 33, Status::kUnauthorized, false);
    ASSERT_TRUE(c.send(
        raw_frame(static_cast<uint16_t>(Opcode::kCodesLoad), 34,
                  request_body(Opcode::kCodesLoad, proto::CodesLoadReq{"NEW-POOL", {"A", "B"}}))));
    expect_answer(c, static_cast<uint16_t>(Opcode::kCodesLoad), 34, Status::kUnauthorized, false);
    ASSERT_TRUE(c.send(raw_frame(static_cast<uint16_t>(Opcode::kOutboxRead), 35,
                                 request_body(Opcode::kOutboxRead, proto::OutboxReadReq{}))));
    expect_answer(c, static_cast<uint16_t>(Opcode::kOutboxRead), 35, Status::kUnauthorized, false);
    expect_ping(c, 36);
  }
  expect_server_fine("buyer sending admin requests");
  {
    // The outbox role may read but not buy.
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kOutbox, StockdProcess::kOutboxToken));
    ASSERT_TRUE(c.send(raw_frame(static_cast<uint16_t>(Opcode::kReserve), 37, reserve)));
    expect_answer(c, static_cast<uint16_t>(Opcode::kReserve), 37, Status::kUnauthorized, false);
    expect_ping(c, 38);
  }
  expect_server_fine("outbox sending RESERVE");
  {
    // A refused re-HELLO closes even an authenticated connection.
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(Role::kBuyer, ""));
    std::string hello;
    proto::encode_request(Opcode::kHello, 39, proto::HelloReq{1, Role::kAdmin, "guess", "x"},
                          hello);
    ASSERT_TRUE(c.send(hello));
    expect_answer(c, static_cast<uint16_t>(Opcode::kHello), 39, Status::kUnauthorized, true);
  }
  expect_server_fine("refused re-HELLO");
  EXPECT_EQ(snapshot(*admin_), before_) << "an unauthorized request changed the book";
}

TEST_F(BadInputTest, BodiesThatDoNotDecodeGetBadRequestAndTheConnectionStays) {
  RawConn c(server_.port());
  ASSERT_TRUE(c.hello(Role::kBuyer, ""));
  const auto kReserve = static_cast<uint16_t>(Opcode::kReserve);
  const std::string good =
      request_body(Opcode::kReserve, proto::ReserveReq{"decoder", "dec-1", 0, {{"BAD-1", 1}}});
  struct Case {
    const char* what;
    uint16_t opcode;
    std::string body;
  };
  std::string long_user(200, 'u');
  const Case cases[] = {
      {"trailing bytes", kReserve, good + "xyz"},
      {"short body", kReserve, good.substr(0, good.size() - 2)},
      {"empty body", kReserve, ""},
      {"ttl over a day", kReserve,
       request_body(Opcode::kReserve,
                    proto::ReserveReq{"decoder", "dec-2", 90'000'000, {{"BAD-1", 1}}})},
      {"qty 0", kReserve,
       request_body(Opcode::kReserve, proto::ReserveReq{"decoder", "dec-3", 0, {{"BAD-1", 0}}})},
      {"no lines", kReserve,
       request_body(Opcode::kReserve, proto::ReserveReq{"decoder", "dec-4", 0, {}})},
      {"user over 128 bytes", kReserve,
       request_body(Opcode::kReserve, proto::ReserveReq{long_user, "dec-5", 0, {{"BAD-1", 1}}})},
      {"hold id 0", static_cast<uint16_t>(Opcode::kCommit),
       request_body(Opcode::kCommit, proto::HoldReq{0, ""})},
      {"empty claim sku", static_cast<uint16_t>(Opcode::kClaim),
       request_body(Opcode::kClaim, proto::ClaimReq{"", "decoder", "dec-6"})},
      {"list count past the body", kReserve,
       std::string("\x03\x00u42\x00\x00\x00\x00\x00\x00\xff\xff", 13)},
  };
  uint32_t id = 40;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    ASSERT_TRUE(c.send(raw_frame(k.opcode, ++id, k.body)));
    expect_answer(c, k.opcode, id, Status::kBadRequest, false);
    expect_ping(c, ++id);
  }
  // A request frame with the response flag set: BAD_REQUEST, and the connection stays.
  ASSERT_TRUE(c.send(raw_frame(kReserve, ++id, good, proto::kFlagResponse)));
  expect_answer(c, kReserve, id, Status::kBadRequest, false);
  expect_ping(c, ++id);
  // A HELLO that does not decode: BAD_REQUEST, and (nobody is authenticated) the close.
  RawConn h(server_.port());
  ASSERT_TRUE(h.send(raw_frame(static_cast<uint16_t>(Opcode::kHello), 90, "\x01")));
  expect_answer(h, static_cast<uint16_t>(Opcode::kHello), 90, Status::kBadRequest, true);
  expect_server_fine("undecodable bodies");
  EXPECT_EQ(snapshot(*admin_), before_) << "a request that did not decode changed the book";
}

// SERVER BUG (open, see the integration report): requests that decode but that the book refuses
// with BAD_REQUEST -- e.g. a buyer's CLAIM of a SKU that has no code pool -- make the dispatcher
// encode the operation's normal body under an error status; encode_response() rejects that with
// std::abort(), so any buyer can kill the server with one request. Expected: BAD_REQUEST with
// an ErrorResp reason, the connection stays, the server lives. Fails until dispatch is fixed.
// Each case that kills the server is reported and the server restarted for the next one.
TEST_F(BadInputTest, RequestsTheBookRefusesAsBadRequestDoNotCrashTheServer) {
  make_sku(*admin_, "BAD-PLAIN", 10);  // counted units, no codes
  ASSERT_GT(make_code_pool(*admin_, "BAD-POOL", {"P-1", "P-2"}), 0u);
  before_ = snapshot(*admin_);
  struct Case {
    const char* what;
    Role role;
    Opcode op;
    proto::Request req;
  };
  const Case cases[] = {
      {"buyer CLAIM of a SKU without codes", Role::kBuyer, Opcode::kClaim,
       proto::ClaimReq{"BAD-PLAIN", "claimer", "bp-1"}},
      {"buyer RESERVE naming a SKU twice", Role::kBuyer, Opcode::kReserve,
       proto::ReserveReq{"twice", "bp-2", 0, {{"BAD-PLAIN", 1}, {"BAD-PLAIN", 1}}}},
      {"admin SKU_SET closing before it opens", Role::kAdmin, Opcode::kSkuSet,
       proto::SkuSetReq{"BAD-PLAIN", proto::kSetOpensAt | proto::kSetClosesAt, 0, 0, 2000, 1000}},
      {"admin SKU_SET total of a code pool", Role::kAdmin, Opcode::kSkuSet,
       proto::SkuSetReq{"BAD-POOL", proto::kSetTotal, 100, 0, 0, 0}},
      {"admin RESTOCK of a code pool", Role::kAdmin, Opcode::kRestock,
       proto::RestockReq{"BAD-POOL", 5}},
      {"admin CODES_LOAD into a counted SKU", Role::kAdmin, Opcode::kCodesLoad,
       proto::CodesLoadReq{"BAD-PLAIN", {"X-1"}}},
  };
  uint32_t id = 100;
  std::vector<std::string> killers;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    RawConn c(server_.port());
    ASSERT_TRUE(c.hello(k.role, k.role == Role::kAdmin ? StockdProcess::kAdminToken : "", ++id));
    std::string f;
    proto::encode_request(k.op, ++id, k.req, f);
    ASSERT_TRUE(c.send(f));
    RawConn::Frame got;
    auto g = c.read(got, kAnswerMs);
    if (g == RawConn::Got::kFrame) {
      EXPECT_EQ(got.status(), Status::kBadRequest) << describe(got);
      expect_ping(c, ++id);
    }
    if (!server_.wait_exit_for(200)) {
      EXPECT_EQ(g, RawConn::Got::kFrame) << "no answer";
      expect_server_fine(k.what);
      continue;
    }
    killers.push_back(k.what);
    ADD_FAILURE() << "stockd died (status " << server_.exit_status() << ") on: " << k.what;
    ASSERT_TRUE(server_.start()) << "stockd did not come back";
  }
  for (const auto& k : killers) std::printf("[ measured ] kills the server: %s\n", k.c_str());
  if (killers.empty()) {
    EXPECT_EQ(snapshot(*admin_), before_);
  } else {  // a restart resets the counters in STATS: compare the SKUs only
    EXPECT_EQ(snapshot(*admin_).skus, before_.skus);
  }
}

// Incomplete frames are held within --read-buffer-budget for all connections together: the
// connection whose kept bytes pass it gets one BUSY error frame and a close; the others go on.
TEST(ReadBudget, TricklingLargeFramesCannotGrowMemoryPastTheBudget) {
  StockdProcess server({"--frame-bytes-max", "65536", "--read-buffer-budget", "131072"});
  ASSERT_TRUE(server.start()) << "stockd did not come up";
  const auto kPing = static_cast<uint16_t>(Opcode::kPing);
  // PING frames declaring a 60,000-byte body; each connection sends half of one and waits.
  const std::string frame = raw_frame(kPing, 7, std::string(60000, 'x'));
  const std::string half = frame.substr(0, 30000);
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 6; ++i) {
    conns.push_back(std::make_unique<RawConn>(server.port()));
    ASSERT_TRUE(conns.back()->ok());
    ASSERT_TRUE(conns.back()->hello(Role::kBuyer, ""));
    ASSERT_TRUE(conns.back()->send(half));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Six halves (at least 180,000 bytes) cannot all fit: some are refused with BUSY (which ones:
  // hostile_test's ReadBudget tests), and the others are untouched.
  std::vector<size_t> kept;
  for (size_t i = 0; i < conns.size(); ++i) {
    RawConn::Frame f;
    if (conns[i]->read(f, 300) != RawConn::Got::kFrame) {
      kept.push_back(i);
      continue;
    }
    EXPECT_EQ(f.status(), Status::kBusy) << describe(f);
    EXPECT_NE(f.message.find("--read-buffer-budget"), std::string::npos) << f.message;
    EXPECT_TRUE(conns[i]->closed_within(kAnswerMs));
  }
  EXPECT_LT(kept.size(), conns.size());
  ASSERT_GE(kept.size(), 2u);
  // The rest finish their frame (a PING with a body is a BAD_REQUEST that keeps the
  // connection) and are served.
  for (size_t i : kept) {
    ASSERT_TRUE(conns[i]->send(frame.substr(half.size())));
    RawConn::Frame f;
    ASSERT_EQ(conns[i]->read(f, kAnswerMs), RawConn::Got::kFrame);
    EXPECT_EQ(f.status(), Status::kBadRequest) << describe(f);
    ASSERT_TRUE(conns[i]->send(raw_frame(kPing, 8, "")));
    ASSERT_EQ(conns[i]->read(f, kAnswerMs), RawConn::Got::kFrame);
    EXPECT_EQ(f.status(), Status::kOk) << describe(f);
  }
  // Freed budget is usable again: a new connection sends a whole maximal frame.
  RawConn late(server.port());
  ASSERT_TRUE(late.hello(Role::kBuyer, ""));
  ASSERT_TRUE(late.send(frame));
  RawConn::Frame f;
  ASSERT_EQ(late.read(f, kAnswerMs), RawConn::Got::kFrame);
  EXPECT_EQ(f.status(), Status::kBadRequest) << describe(f);
  EXPECT_TRUE(server.alive());
}

}  // namespace
}  // namespace stockd::test
