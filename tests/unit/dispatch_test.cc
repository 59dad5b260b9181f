// The dispatcher in process: request frames in, answer frames out, no sockets and no loop. What
// the server promises per frame (docs/protocol.md sections 4, 6 and 7) before any I/O is added.
#include "../../server/src/dispatch.h"

#include <gtest/gtest.h>

#include "../../server/src/conn.h"
#include "stockd/check.h"

namespace stockd {
namespace {

using proto::Opcode;
using proto::Role;
using proto::Status;

constexpr int64_t kNow = 1'767'225'600'000;

class DispatchTest : public ::testing::Test {
 protected:
  DispatchTest() : guard(3, 60'000), dispatcher(book, config, &guard) {
    config.admin_token = "adm";
    session.peer = {std::string("\x7f\0\0\x01", 4), "127.0.0.1"};
  }

  struct Answer {
    proto::FrameHeader header;
    std::optional<proto::Response> body;
    std::string error;  // ErrorResp message (status >= 64)
    DispatchOutcome outcome;
  };

  // Encodes `req` as opcode `op`, hands the frame to the dispatcher, decodes the one answer.
  Answer send(Opcode op, const proto::Request& req, Session& s) {
    std::string frame;
    proto::encode_request(op, ++id, req, frame);
    const auto* bytes = reinterpret_cast<const uint8_t*>(frame.data());
    proto::FrameDecode in = proto::decode_frame({bytes, frame.size()}, proto::Limits{});
    EXPECT_EQ(in.kind, proto::DecodeKind::kFrame);
    std::string out;
    Changes ch;
    Answer a;
    a.outcome = dispatcher.handle(s, in.header, in.body, kNow, true, ch, out);
    const auto* ob = reinterpret_cast<const uint8_t*>(out.data());
    proto::FrameDecode d = proto::decode_frame({ob, out.size()}, proto::Limits{});
    EXPECT_EQ(d.kind, proto::DecodeKind::kFrame) << "no answer frame";
    EXPECT_EQ(d.consumed, out.size()) << "more than one answer frame";
    a.header = d.header;
    EXPECT_EQ(a.header.request_id, id);
    EXPECT_TRUE(a.header.is_response());
    const auto st = static_cast<Status>(d.header.status);
    auto body = proto::decode_response(static_cast<Opcode>(d.header.opcode), st, d.body);
    EXPECT_TRUE(body.ok()) << body.status().message();
    if (body.ok()) a.body = std::move(*body);
    if (a.body && proto::is_error_status(st)) a.error = std::get<proto::ErrorResp>(*a.body).message;
    return a;
  }
  Answer send(Opcode op, const proto::Request& req) { return send(op, req, session); }
  Answer hello(Role role, std::string token, Session& s) {
    return send(Opcode::kHello, proto::HelloReq{1, role, std::move(token), "test"}, s);
  }
  static Status status(const Answer& a) { return static_cast<Status>(a.header.status); }

  Config config;
  Book book;
  HelloGuard guard;
  Dispatcher dispatcher;
  Session session;
  uint32_t id = 0;
};

TEST_F(DispatchTest, NothingButHelloBeforeHello) {
  auto a = send(Opcode::kPing, proto::PingReq{});
  EXPECT_EQ(status(a), Status::kUnauthorized);
  EXPECT_TRUE(a.outcome.close);
  EXPECT_EQ(a.error, "HELLO must be the first request");
}

TEST_F(DispatchTest, RolesOpcodesAndBadBodies) {
  ASSERT_EQ(status(hello(Role::kBuyer, "", session)), Status::kOk);
  // An admin operation from a buyer: refused, the connection stays.
  auto a = send(Opcode::kRestock, proto::RestockReq{"tee", 5});
  EXPECT_EQ(status(a), Status::kUnauthorized);
  EXPECT_FALSE(a.outcome.close);
  // A well-framed unknown opcode: UNKNOWN_OPCODE, the connection stays.
  std::string frame;
  proto::FrameHeader h;
  h.opcode = 0x7777;
  h.request_id = 99;
  proto::encode_header(h, frame);
  std::string out;
  Changes ch;
  DispatchOutcome o = dispatcher.handle(session, h, {}, kNow, true, ch, out);
  EXPECT_FALSE(o.close);
  const auto* ob = reinterpret_cast<const uint8_t*>(out.data());
  auto d = proto::decode_frame({ob, out.size()}, proto::Limits{});
  EXPECT_EQ(static_cast<Status>(d.header.status), Status::kUnknownOpcode);
  // A body that does not decode names the field.
  auto bad = send(Opcode::kCommit, proto::HoldReq{0, "u"});
  EXPECT_EQ(status(bad), Status::kBadRequest);
  EXPECT_EQ(bad.error, "commit: hold_id is 0, must be at least 1");
}

TEST_F(DispatchTest, ABuyerReachesOnlyItsOwnHolds) {
  Session admin;
  ASSERT_EQ(status(hello(Role::kAdmin, "adm", admin)), Status::kOk);
  ASSERT_EQ(status(send(Opcode::kSkuSet, proto::SkuSetReq{"tee", 0x01, 10, 0, 0, 0}, admin)),
            Status::kOk);
  ASSERT_EQ(status(hello(Role::kBuyer, "", session)), Status::kOk);
  auto r = send(Opcode::kReserve, proto::ReserveReq{"ann", "", 60'000, {{"tee", 2}}});
  ASSERT_EQ(status(r), Status::kOk);
  const uint64_t hold = std::get<proto::ReserveResp>(*r.body).hold_id;

  auto other = send(Opcode::kCommit, proto::HoldReq{hold, "bob"});
  EXPECT_EQ(status(other), Status::kNotFound);
  EXPECT_EQ(std::get<proto::HoldView>(*other.body), proto::HoldView{});
  auto nobody = send(Opcode::kRelease, proto::HoldReq{hold, ""});
  EXPECT_EQ(status(nobody), Status::kBadRequest);
  EXPECT_EQ(nobody.error, "release: a buyer must name the hold's user");
  auto any = send(Opcode::kHoldGet, proto::HoldReq{hold, ""}, admin);
  ASSERT_EQ(status(any), Status::kOk);
  EXPECT_EQ(std::get<proto::HoldView>(*any.body).user, "ann");
  auto mine = send(Opcode::kCommit, proto::HoldReq{hold, "ann"});
  EXPECT_EQ(status(mine), Status::kOk);
  EXPECT_EQ(std::get<proto::HoldView>(*mine.body).state, proto::HoldState::kCommitted);
}

TEST_F(DispatchTest, FailedHellosLockTheAddressOut) {
  for (int i = 0; i < 3; ++i) {
    Session s = session;
    auto a = hello(Role::kAdmin, "guess", s);
    EXPECT_EQ(status(a), Status::kUnauthorized);
    EXPECT_TRUE(a.outcome.close);
    EXPECT_EQ(a.outcome.hello_failures_to_log, i == 0 ? 1u : 0u) << "one log line, not three";
  }
  Session s = session;
  auto locked = hello(Role::kAdmin, "adm", s);
  EXPECT_EQ(status(locked), Status::kBusy) << "the right token, unchecked while locked";
  EXPECT_FALSE(s.hello_done);
  // Another address is not affected.
  Session elsewhere;
  elsewhere.peer = {std::string("\x0a\0\0\x07", 4), "10.0.0.7"};
  EXPECT_EQ(status(hello(Role::kAdmin, "adm", elsewhere)), Status::kOk);
}

// The always-on invariant check stops the process and says what broke (release builds too).
// The server hands the frame after the one it answers to prefetch(): whatever a peer sent,
// cut at any byte, it reads only that frame's body (ASan checks each cut in its own buffer) and
// changes nothing.
TEST_F(DispatchTest, ThePrefetchHintReadsOnlyItsFrameAndChangesNothing) {
  Session admin;
  ASSERT_EQ(status(hello(Role::kAdmin, "adm", admin)), Status::kOk);
  ASSERT_EQ(status(send(Opcode::kSkuSet, proto::SkuSetReq{"tee", 0x01, 10, 0, 0, 0}, admin)),
            Status::kOk);
  const std::pair<Opcode, proto::Request> requests[] = {
      {Opcode::kReserve, proto::ReserveReq{"ann", "key-1", 0, {{"tee", 1}}}},
      {Opcode::kClaim, proto::ClaimReq{"pool", "ann", "key-2"}},
      {Opcode::kPing, proto::PingReq{}},
  };
  for (const auto& [op, req] : requests) {
    std::string frame;
    proto::encode_request(op, 7, req, frame);
    const auto* bytes = reinterpret_cast<const uint8_t*>(frame.data());
    proto::FrameDecode in = proto::decode_frame({bytes, frame.size()}, proto::Limits{});
    ASSERT_EQ(in.kind, proto::DecodeKind::kFrame);
    for (size_t cut = 0; cut <= in.body.size(); ++cut) {
      std::vector<uint8_t> body(in.body.begin(), in.body.begin() + static_cast<ptrdiff_t>(cut));
      for (bool early : {true, false}) {
        dispatcher.prefetch(in.header, body, early);
        std::vector<uint8_t> junk(cut, 0xFF);  // lengths that point past the end
        dispatcher.prefetch(in.header, junk, early);
      }
    }
  }
  EXPECT_EQ(book.counters().reserves_ok, 0u);
  ASSERT_EQ(status(hello(Role::kBuyer, "", session)), Status::kOk);
  auto r = send(Opcode::kReserve, proto::ReserveReq{"ann", "key-1", 0, {{"tee", 1}}});
  ASSERT_EQ(status(r), Status::kOk);
  EXPECT_EQ(std::get<proto::ReserveResp>(*r.body).available, 9u);
  EXPECT_EQ(book.counters().idem_hits, 0u);  // a first request: the hint recorded no key
  EXPECT_TRUE(book.check_invariants().ok());
}

TEST(Check, StopsTheProcessNamingTheInvariant) {
  const int two = 2;
  EXPECT_DEATH(STOCKD_CHECK(two + two == 5, "arithmetic holds"),
               "invariant broken at .*dispatch_test.cc:[0-9]+: arithmetic holds");
}

// When the store fails, a connection's answers that waited for the failed write become
// STORAGE_UNAVAILABLE ("nothing was applied"), reads included: they may show state that is
// rolled back. Not HELLO's: the login took effect, and a client told its HELLO failed went on
// logged in (a PING after it answered OK). Nor PING's, which depends on nothing.
TEST(ConnStoreFailure, OnlyAnswersThatDependOnStateBecomeStorageUnavailable) {
  Conn c;
  c.out_base = 1000;  // as after earlier answers were written
  const auto add = [&](Opcode op, uint32_t id, const proto::Response& resp) {
    const uint64_t begin = c.out_base + c.out.size();
    proto::encode_response(op, id, Status::kOk, resp, c.out);
    c.mark_answer(7, begin, static_cast<uint16_t>(op), id);
  };
  add(Opcode::kHello, 1, proto::HelloResp{.frame_bytes_max = 1 << 20, .inflight_max = 8});
  proto::ReserveResp reserved;
  reserved.hold_id = 9;
  add(Opcode::kReserve, 2, reserved);
  add(Opcode::kPing, 3, proto::PingResp{});
  proto::SkuView mug;
  mug.sku = "mug";
  mug.total = 3;
  add(Opcode::kSkuGet, 4, mug);
  c.fail_unreleased(6);
  std::vector<std::pair<uint32_t, Status>> got;
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(c.out.data()), c.out.size());
  size_t at = 0;
  for (const Conn::Mark& m : c.marks) {
    EXPECT_EQ(m.begin, c.out_base + at);
    proto::FrameDecode d = proto::decode_frame(in.subspan(at), proto::Limits{1 << 20});
    ASSERT_EQ(d.kind, proto::DecodeKind::kFrame);
    EXPECT_EQ(m.end, m.begin + d.consumed);
    EXPECT_EQ(m.tag, 6u) << "released with the durable group";
    got.emplace_back(d.header.request_id, static_cast<Status>(d.header.status));
    at += d.consumed;
  }
  EXPECT_EQ(at, c.out.size());
  EXPECT_EQ(got, (std::vector<std::pair<uint32_t, Status>>{{1, Status::kOk},
                                                           {2, Status::kStorageUnavailable},
                                                           {3, Status::kOk},
                                                           {4, Status::kStorageUnavailable}}));
}

}  // namespace
}  // namespace stockd
