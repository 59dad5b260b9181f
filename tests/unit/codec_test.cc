// Codec tests: the test vectors of docs/protocol.md byte for byte, round trips of every
// message type, framing split at every byte, and malformed input of every kind.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/wire.h"

namespace stockd::proto {
namespace {

constexpr int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z, the doc's T0

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// ---- The vectors of docs/protocol.md ----

// Reads every `<!-- vector: NAME -->` + ```hex block. Sets `error` on any malformed block.
std::map<std::string, std::string> load_doc_vectors(std::string& error) {
  std::ifstream file(STOCKD_PROTOCOL_MD);
  if (!file) return error = "cannot open " STOCKD_PROTOCOL_MD, std::map<std::string, std::string>();
  std::map<std::string, std::string> out;
  std::string line;
  const std::string open = "<!-- vector: ", close = " -->";
  while (std::getline(file, line)) {
    if (line.rfind(open, 0) != 0 || line.size() < open.size() + close.size()) continue;
    std::string name = line.substr(open.size(), line.size() - open.size() - close.size());
    std::string fence;
    if (!std::getline(file, fence) || fence != "```hex") return error = name + ": no ```hex", out;
    std::string bytes;
    while (std::getline(file, line) && line != "```") {
      std::istringstream words(line);
      std::string w;
      while (words >> w) {
        if (w.size() != 2 || w.find_first_not_of("0123456789abcdef") != std::string::npos) {
          return error = name + ": bad hex byte '" + w + "'", out;
        }
        bytes += static_cast<char>(std::stoi(w, nullptr, 16));
      }
    }
    if (line != "```") return error = name + ": unterminated block", out;
    if (!out.emplace(name, bytes).second) return error = name + ": defined twice", out;
  }
  return out;
}

const std::vector<Line> kLines = {{"TSHIRT-M", 2}, {"MUG", 1}};
const std::vector<SkuCode> kCodes = {{"MUG", "MUG-7Q2X"}};

// What each vector holds, built in C++ from the field values the doc lists.
struct Vector {
  bool response = false;
  uint16_t opcode = 0;
  uint32_t request_id = 0;
  Status status = Status::kOk;
  Request req;
  Response resp;
};
Vector req(Opcode op, uint32_t id, Request r) {
  return {false, static_cast<uint16_t>(op), id, Status::kOk, std::move(r), {}};
}
Vector resp(uint16_t op, uint32_t id, Status s, Response r) {
  return {true, op, id, s, {}, std::move(r)};
}
Vector resp(Opcode op, uint32_t id, Response r) {
  return resp(static_cast<uint16_t>(op), id, Status::kOk, std::move(r));
}

std::map<std::string, Vector> expected_vectors() {
  OutboxRecord rec{42, OutboxKind::kOrder, 1001, "u42", "k-9f1", kT0, kT0 + 60000, kLines, kCodes};
  return {
      {"hello_request", req(Opcode::kHello, 1, HelloReq{1, Role::kBuyer, "s3cret", "web-1"})},
      {"hello_response", resp(Opcode::kHello, 1, HelloResp{1, 1048576, 256, 300000})},
      {"ping_request", req(Opcode::kPing, 2, PingReq{})},
      {"ping_response", resp(Opcode::kPing, 2, PingResp{})},
      {"reserve_request", req(Opcode::kReserve, 3, ReserveReq{"u42", "k-9f1", 600000, kLines})},
      {"reserve_response_ok",
       resp(Opcode::kReserve, 3,
            ReserveResp{1001, HoldState::kHeld, kT0 + 600000, 0xFFFF, 497, {}})},
      {"reserve_response_sold_out",
       resp(0x10, 4, Status::kSoldOut, ReserveResp{0, HoldState::kNone, 0, 0, 1, {}})},
      {"commit_request", req(Opcode::kCommit, 5, HoldReq{1001, "u42"})},
      {"commit_response", resp(Opcode::kCommit, 5,
                               HoldView{1001, HoldState::kCommitted, "u42", "k-9f1", kT0,
                                        kT0 + 600000, kLines, kCodes})},
      {"claim_request", req(Opcode::kClaim, 6, ClaimReq{"GIFT-25", "u42", "c-1"})},
      {"claim_response", resp(Opcode::kClaim, 6, ClaimResp{1002, "GC-AAAA-0001", 499})},
      {"sku_set_request",
       req(Opcode::kSkuSet, 7,
           SkuSetReq{"TSHIRT-M", kSetTotal | kSetPerUserLimit | kSetOpensAt, 500, 2, kT0, 0})},
      {"sku_get_request", req(Opcode::kSkuGet, 8, SkuReq{"TSHIRT-M"})},
      {"sku_get_response",
       resp(Opcode::kSkuGet, 8, SkuView{"TSHIRT-M", 500, 497, 1, 2, 2, kT0, 0, 0})},
      {"stats_request", req(Opcode::kStats, 9, StatsReq{})},
      {"stats_response",
       resp(Opcode::kStats, 9, StatsResp{{{"connections", 3}, {"reserves_ok", 1042}}})},
      {"error_bad_request",
       resp(0x10, 10, Status::kBadRequest, ErrorResp{"reserve: line 1 sku is empty"})},
      {"error_frame_too_large",
       resp(0, 0, Status::kFrameTooLarge,
            ErrorResp{"frame of 2097168 bytes exceeds frame_bytes_max 1048576"})},
      {"outbox_read_request", req(Opcode::kOutboxRead, 11, OutboxReadReq{41, 100, 5000})},
      {"outbox_read_response", resp(Opcode::kOutboxRead, 11, OutboxReadResp{42, 41, 1, {rec}})},
      {"outbox_ack_request", req(Opcode::kOutboxAck, 12, OutboxAckReq{42})},
      {"outbox_ack_response", resp(Opcode::kOutboxAck, 12, OutboxStatusResp{42, 42, 1})},
  };
}

std::string encode(const Vector& v) {
  std::string out;
  if (v.response) {
    encode_response(static_cast<Opcode>(v.opcode), v.request_id, v.status, v.resp, out);
  } else {
    encode_request(static_cast<Opcode>(v.opcode), v.request_id, v.req, out);
  }
  return out;
}

class DocVectors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    doc_ = load_doc_vectors(error);
    ASSERT_EQ(error, "");
    expected_ = expected_vectors();
  }
  std::map<std::string, std::string> doc_;
  std::map<std::string, Vector> expected_;
};

TEST_F(DocVectors, DocAndTestKnowTheSameVectors) {
  for (const auto& [name, v] : expected_)
    EXPECT_TRUE(doc_.count(name)) << "missing in doc: " << name;
  for (const auto& [name, v] : doc_) EXPECT_TRUE(expected_.count(name)) << "unchecked: " << name;
  EXPECT_GE(doc_.size(), 14u);
}

TEST_F(DocVectors, EncodeMatchesDocByteForByte) {
  for (const auto& [name, v] : expected_) {
    if (!doc_.count(name)) continue;
    EXPECT_EQ(hex(encode(v)), hex(doc_[name])) << name;
  }
}

TEST_F(DocVectors, DecodeGivesTheDocumentedMessage) {
  for (const auto& [name, v] : expected_) {
    if (!doc_.count(name)) continue;
    const std::string& frame = doc_[name];
    FrameDecode d = decode_frame(bytes_of(frame), Limits{});
    ASSERT_EQ(d.kind, DecodeKind::kFrame) << name << ": " << d.reason;
    EXPECT_EQ(d.consumed, frame.size()) << name;
    EXPECT_EQ(d.header.is_response(), v.response) << name;
    EXPECT_EQ(d.header.opcode, v.opcode) << name;
    EXPECT_EQ(d.header.status, static_cast<uint16_t>(v.status)) << name;
    EXPECT_EQ(d.header.request_id, v.request_id) << name;
    Opcode op = static_cast<Opcode>(d.header.opcode);
    if (v.response) {
      auto got = decode_response(op, static_cast<Status>(d.header.status), d.body);
      ASSERT_TRUE(got.ok()) << name << ": " << got.status().message();
      EXPECT_TRUE(*got == v.resp) << name;
    } else {
      auto got = decode_request(op, d.body);
      ASSERT_TRUE(got.ok()) << name << ": " << got.status().message();
      EXPECT_TRUE(*got == v.req) << name;
    }
  }
}

TEST_F(DocVectors, EveryPrefixNeedsMoreAndTheWholeIsOneFrame) {
  for (const auto& [name, frame] : doc_) {
    for (size_t n = 0; n < frame.size(); ++n) {
      FrameDecode d = decode_frame(bytes_of(frame).first(n), Limits{});
      ASSERT_EQ(d.kind, DecodeKind::kNeedMore) << name << " prefix " << n;
    }
    std::string two = frame + frame;
    FrameDecode d = decode_frame(bytes_of(two), Limits{});
    ASSERT_EQ(d.kind, DecodeKind::kFrame) << name;
    EXPECT_EQ(d.consumed, frame.size()) << name;
    EXPECT_EQ(d.body.size(), frame.size() - kHeaderBytes) << name;
  }
}

TEST_F(DocVectors, StreamFedInChunksOfEverySize) {
  std::string stream;
  std::vector<std::string> frames;
  for (const auto& [name, frame] : doc_) {
    stream += frame;
    frames.push_back(frame);
  }
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    std::string buf;
    size_t pos = 0;
    std::vector<std::string> got;
    for (size_t fed = 0; fed < stream.size(); fed += chunk) {
      buf.append(stream, fed, chunk);
      for (;;) {
        FrameDecode d = decode_frame(bytes_of(buf).subspan(pos), Limits{});
        ASSERT_NE(d.kind, DecodeKind::kInvalid) << "chunk " << chunk << ": " << d.reason;
        if (d.kind == DecodeKind::kNeedMore) break;
        got.push_back(buf.substr(pos, d.consumed));
        pos += d.consumed;
      }
    }
    ASSERT_EQ(pos, buf.size()) << "chunk " << chunk;
    ASSERT_EQ(got, frames) << "chunk " << chunk;
  }
}

TEST_F(DocVectors, EveryStrictPrefixOfEveryBodyIsRefused) {
  for (const auto& [name, v] : expected_) {
    std::string body = encode(v).substr(kHeaderBytes);
    Opcode op = static_cast<Opcode>(v.opcode);
    for (size_t n = 0; n < body.size(); ++n) {
      auto part = bytes_of(body).first(n);
      const stockd::Status st = v.response ? decode_response(op, v.status, part).status()
                                           : decode_request(op, part).status();
      EXPECT_FALSE(st.ok()) << name << " cut at " << n;
      EXPECT_EQ(st.code(), stockd::Status::Code::kInvalid) << name << " cut at " << n;
      EXPECT_NE(st.message(), "") << name << " cut at " << n;
    }
  }
}

TEST_F(DocVectors, TrailingBytesAreRefused) {
  for (const auto& [name, v] : expected_) {
    std::string body = encode(v).substr(kHeaderBytes) + "xyz";
    Opcode op = static_cast<Opcode>(v.opcode);
    const stockd::Status st = v.response ? decode_response(op, v.status, bytes_of(body)).status()
                                         : decode_request(op, bytes_of(body)).status();
    EXPECT_FALSE(st.ok()) << name;
    EXPECT_TRUE(st.message().ends_with(": trailing 3 bytes after body"))
        << name << ": " << st.message();
  }
}

// ---- Round trips of every message type ----

std::string repeat(char c, size_t n) { return std::string(n, c); }

std::vector<std::pair<Opcode, Request>> sample_requests() {
  std::vector<Line> many;
  for (int i = 0; i < 64; ++i) many.push_back({"sku-" + std::to_string(i), uint32_t(i + 1)});
  return {
      {Opcode::kHello, HelloReq{1, Role::kAdmin, repeat('t', kTokenBytesMax), "stockctl"}},
      {Opcode::kHello, HelloReq{7, Role::kOutbox, "", ""}},
      {Opcode::kPing, PingReq{}},
      {Opcode::kReserve,
       ReserveReq{repeat('u', kUserBytesMax), repeat('k', kKeyBytesMax), kHoldTtlMsMax, many}},
      {Opcode::kReserve, ReserveReq{"bob", "", 0, {{repeat('s', kSkuBytesMax), 0xFFFFFFFF}}}},
      {Opcode::kCommit, HoldReq{0x0102030405060708, "u-\xff"}},
      {Opcode::kRelease, HoldReq{1, ""}},
      {Opcode::kHoldGet, HoldReq{~uint64_t{0}, std::string(128, 'u')}},
      {Opcode::kClaim, ClaimReq{"GIFT", "carol", "idem-1"}},
      {Opcode::kSkuGet, SkuReq{"A"}},
      {Opcode::kSaleClose, SkuReq{"\xff\x00z"}},
      {Opcode::kSkuList, SkuListReq{"", kSkuListMax}},
      {Opcode::kSkuList, SkuListReq{"M", 1}},
      {Opcode::kStats, StatsReq{}},
      {Opcode::kSkuSet, SkuSetReq{"X", 0x0F, ~uint64_t{0}, 7, -5, INT64_MAX}},
      {Opcode::kRestock, RestockReq{"X", -12345678901}},
      {Opcode::kCodesLoad, CodesLoadReq{"GIFT", {"a", repeat('c', kCodeBytesMax), "zz"}}},
      {Opcode::kOutboxRead, OutboxReadReq{~uint64_t{0} - 1, kOutboxReadMax, kOutboxWaitMsMax}},
      {Opcode::kOutboxAck, OutboxAckReq{99}},
      {Opcode::kOutboxStatus, OutboxStatusReq{}},
  };
}

std::vector<std::tuple<uint16_t, Status, Response>> sample_responses() {
  OutboxRecord order{1, OutboxKind::kOrder, 5, "u", "k", -1, 2, kLines, kCodes};
  OutboxRecord expired{2, OutboxKind::kExpired, 6, "", "", 3, 4, {}, {}};
  SkuView sku{"S", 10, 5, 3, 2, 4, kT0, kT0 + 1, kSkuFlagClosed | kSkuFlagCodePool};
  auto op = [](Opcode o) { return static_cast<uint16_t>(o); };
  return {
      {op(Opcode::kHello), Status::kOk, HelloResp{1, 1 << 20, 128, 5000}},
      {op(Opcode::kPing), Status::kOk, PingResp{}},
      {op(Opcode::kReserve), Status::kOk,
       ReserveResp{7, HoldState::kCommitted, 0, 0xFFFF, 0, {{"a", "1"}, {"b", "2"}}}},
      {op(Opcode::kReserve), Status::kLimitExceeded, ReserveResp{0, HoldState::kNone, 0, 3, 1, {}}},
      {op(Opcode::kCommit), Status::kHoldExpired,
       HoldView{9, HoldState::kExpired, "u", "", 1, 2, kLines, {}}},
      {op(Opcode::kRelease), Status::kAlreadyDone,
       HoldView{9, HoldState::kReleased, "u", "k", 1, 2, {}, kCodes}},
      {op(Opcode::kHoldGet), Status::kNotFound, HoldView{}},
      {op(Opcode::kClaim), Status::kSoldOut, ClaimResp{0, "", 0}},
      {op(Opcode::kSkuGet), Status::kOk, sku},
      {op(Opcode::kSkuSet), Status::kBelowCommitted, sku},
      {op(Opcode::kRestock), Status::kOk, sku},
      {op(Opcode::kSaleClose), Status::kOk, sku},
      {op(Opcode::kSkuList), Status::kOk, SkuListResp{{sku, sku, SkuView{}}}},
      {op(Opcode::kStats), Status::kOk, StatsResp{{{"a", 1}, {"b", ~uint64_t{0}}}}},
      {op(Opcode::kCodesLoad), Status::kDuplicateCode, CodesLoadResp{sku, "dup-code"}},
      {op(Opcode::kOutboxRead), Status::kOk, OutboxReadResp{9, 3, 1, {order, expired}}},
      {op(Opcode::kOutboxAck), Status::kOk, OutboxStatusResp{9, 9, 4}},
      {op(Opcode::kOutboxStatus), Status::kOk, OutboxStatusResp{1, 2, 3}},
      {op(Opcode::kReserve), Status::kStorageUnavailable, ErrorResp{"store write failed"}},
      {0x9999, Status::kUnknownOpcode, ErrorResp{"unknown opcode 0x9999"}},
      {0, Status::kBadRequest, ErrorResp{""}},
      {op(Opcode::kPing), Status::kInternal, ErrorResp{repeat('m', 65535)}},
  };
}

TEST(CodecRoundTrip, EveryRequestType) {
  std::set<size_t> types;
  std::set<Opcode> ops;
  uint32_t id = 100;
  for (const auto& [op, r] : sample_requests()) {
    std::string frame;
    encode_request(op, ++id, r, frame);
    FrameDecode d = decode_frame(bytes_of(frame), Limits{});
    ASSERT_EQ(d.kind, DecodeKind::kFrame) << opcode_name(op);
    EXPECT_EQ(d.header.flags, 0);
    EXPECT_EQ(d.header.status, 0);
    EXPECT_EQ(d.header.opcode, static_cast<uint16_t>(op));
    EXPECT_EQ(d.header.request_id, id);
    EXPECT_EQ(d.header.body_len, frame.size() - kHeaderBytes);
    auto got = decode_request(op, d.body);
    ASSERT_TRUE(got.ok()) << opcode_name(op) << ": " << got.status().message();
    EXPECT_TRUE(*got == r) << opcode_name(op);
    types.insert(r.index());
    ops.insert(op);
  }
  EXPECT_EQ(types.size(), std::variant_size_v<Request>);
  EXPECT_EQ(ops.size(), 17u);
}

TEST(CodecRoundTrip, EveryResponseType) {
  std::set<size_t> types;
  for (const auto& [op, status, r] : sample_responses()) {
    std::string frame;
    encode_response(static_cast<Opcode>(op), 0xFFFFFFFF, status, r, frame);
    FrameDecode d = decode_frame(bytes_of(frame), Limits{});
    ASSERT_EQ(d.kind, DecodeKind::kFrame) << op;
    EXPECT_TRUE(d.header.is_response());
    EXPECT_EQ(d.header.opcode, op);
    EXPECT_EQ(d.header.status, static_cast<uint16_t>(status));
    EXPECT_EQ(d.header.request_id, 0xFFFFFFFFu);
    auto got = decode_response(static_cast<Opcode>(op), status, d.body);
    ASSERT_TRUE(got.ok()) << op << " " << status_name(status) << ": " << got.status().message();
    EXPECT_TRUE(*got == r) << op << " " << status_name(status);
    types.insert(r.index());
  }
  EXPECT_EQ(types.size(), std::variant_size_v<Response>);
}

TEST(CodecRoundTrip, EncodeAppendsToExistingOutput) {
  std::string out = "prefix";
  encode_request(Opcode::kCommit, 1, HoldReq{5, ""}, out);
  encode_request(Opcode::kPing, 2, PingReq{}, out);
  ASSERT_EQ(out.size(), 6 + 26 + 16u);
  FrameDecode d = decode_frame(bytes_of(out).subspan(6), Limits{});
  ASSERT_EQ(d.kind, DecodeKind::kFrame);
  EXPECT_EQ(d.header.body_len, 10u);
  EXPECT_EQ(d.consumed, 26u);
}

TEST(CodecRoundTrip, EncodeHeaderIsTheDocumentedLayout) {
  FrameHeader h;
  h.flags = kFlagResponse;
  h.body_len = 0x04030201;
  h.opcode = 0x0605;
  h.status = 0x0807;
  h.request_id = 0x0C0B0A09;
  std::string out;
  encode_header(h, out);
  EXPECT_EQ(hex(out), "53 4b 01 01 01 02 03 04 05 06 07 08 09 0a 0b 0c");
}

// ---- Names ----

TEST(CodecNames, NamesAndDefaults) {
  EXPECT_STREQ(opcode_name(Opcode::kSaleClose), "SALE_CLOSE");
  EXPECT_STREQ(opcode_name(Opcode::kOutboxStatus), "OUTBOX_STATUS");
  EXPECT_STREQ(opcode_name(static_cast<Opcode>(0x99)), "UNKNOWN");
  EXPECT_STREQ(status_name(Status::kSoldOut), "SOLD_OUT");
  EXPECT_STREQ(status_name(Status::kStorageUnavailable), "STORAGE_UNAVAILABLE");
  EXPECT_STREQ(status_name(Status::kBelowCommitted), "BELOW_COMMITTED");
  EXPECT_STREQ(status_name(static_cast<Status>(200)), "UNKNOWN");
  EXPECT_STREQ(hold_state_name(HoldState::kHeld), "HELD");
  EXPECT_STREQ(hold_state_name(HoldState::kNone), "NONE");
  EXPECT_STREQ(hold_state_name(HoldState::kExpired), "EXPIRED");
  EXPECT_TRUE(opcode_known(0x10));
  EXPECT_TRUE(opcode_known(0x42));
  EXPECT_FALSE(opcode_known(0));
  EXPECT_FALSE(opcode_known(0x15));
  EXPECT_TRUE(is_error_status(Status::kBadRequest));
  EXPECT_FALSE(is_error_status(Status::kBelowCommitted));
  EXPECT_EQ(default_opcode(HoldReq{1, ""}), Opcode::kCommit);
  EXPECT_EQ(default_opcode(SkuReq{"a"}), Opcode::kSkuGet);
  EXPECT_EQ(default_opcode(OutboxAckReq{}), Opcode::kOutboxAck);
  for (const auto& [op, r] : sample_requests()) {
    std::string frame;
    encode_request(default_opcode(r), 1, r, frame);  // must not abort
    EXPECT_TRUE(decode_request(default_opcode(r), bytes_of(frame).subspan(16)).ok());
  }
}

TEST(CodecDeath, EncodeRefusesATypeThatDoesNotMatchTheOpcode) {
  std::string out;
  EXPECT_DEATH(encode_request(Opcode::kReserve, 1, HoldReq{1, ""}, out), "does not match");
  EXPECT_DEATH(encode_response(Opcode::kPing, 1, Status::kOk, ErrorResp{"x"}, out),
               "does not match");
  EXPECT_DEATH(encode_response(Opcode::kPing, 1, Status::kBusy, PingResp{}, out), "ErrorResp");
}

// ---- Malformed frames ----

std::string header_bytes(uint16_t magic, uint8_t version, uint8_t flags, uint32_t body_len,
                         uint32_t request_id = 77) {
  FrameHeader h;
  h.magic = magic;
  h.version = version;
  h.flags = flags;
  h.body_len = body_len;
  h.opcode = static_cast<uint16_t>(Opcode::kPing);
  h.request_id = request_id;
  std::string out;
  encode_header(h, out);
  return out;
}

TEST(CodecFrame, BadMagic) {
  FrameDecode d = decode_frame(bytes_of(header_bytes(0x1234, 1, 0, 0)), Limits{});
  EXPECT_EQ(d.kind, DecodeKind::kInvalid);
  EXPECT_EQ(d.error, Status::kBadRequest);
  EXPECT_EQ(d.reason, "bad magic 0x1234, expected 0x4B53");
  // Plain text (an HTTP request by mistake) is refused as soon as 16 bytes are in.
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(decode_frame(bytes_of(http), Limits{}).kind, DecodeKind::kInvalid);
  EXPECT_EQ(decode_frame(bytes_of(http).first(15), Limits{}).kind, DecodeKind::kNeedMore);
}

TEST(CodecFrame, BadVersion) {
  for (uint8_t v : {0, 2, 255}) {
    FrameDecode d = decode_frame(bytes_of(header_bytes(kMagic, v, 0, 0)), Limits{});
    EXPECT_EQ(d.kind, DecodeKind::kInvalid);
    EXPECT_EQ(d.error, Status::kUnsupportedVersion);
    EXPECT_EQ(d.reason, "unsupported protocol version " + std::to_string(v) + ", expected 1");
    EXPECT_EQ(d.header.request_id, 77u);  // the header was read: the error frame can echo it
  }
}

TEST(CodecFrame, UnknownFlagBits) {
  for (uint8_t f : {0x02, 0x80, 0xFF}) {
    FrameDecode d = decode_frame(bytes_of(header_bytes(kMagic, 1, f, 0)), Limits{});
    EXPECT_EQ(d.kind, DecodeKind::kInvalid) << int(f);
    EXPECT_EQ(d.error, Status::kBadRequest);
  }
  FrameDecode d = decode_frame(bytes_of(header_bytes(kMagic, 1, 0x03, 0)), Limits{});
  EXPECT_EQ(d.reason, "unknown flag bits 0x02 (only 0x01 is defined)");
  EXPECT_EQ(decode_frame(bytes_of(header_bytes(kMagic, 1, 0x01, 0)), Limits{}).kind,
            DecodeKind::kFrame);
}

TEST(CodecFrame, OversizeIsDecidedFromTheHeaderAlone) {
  Limits small{64};
  // Exactly at the limit: a valid frame whose body has not arrived yet.
  EXPECT_EQ(decode_frame(bytes_of(header_bytes(kMagic, 1, 0, 48)), small).kind,
            DecodeKind::kNeedMore);
  FrameDecode d = decode_frame(bytes_of(header_bytes(kMagic, 1, 0, 49)), small);
  EXPECT_EQ(d.kind, DecodeKind::kInvalid);
  EXPECT_EQ(d.error, Status::kFrameTooLarge);
  EXPECT_EQ(d.reason, "frame of 65 bytes exceeds frame_bytes_max 64");
  d = decode_frame(bytes_of(header_bytes(kMagic, 1, 0, 0xFFFFFFFF)), Limits{});
  EXPECT_EQ(d.error, Status::kFrameTooLarge);
  EXPECT_EQ(d.reason, "frame of 4294967311 bytes exceeds frame_bytes_max 1048576");
  d = decode_frame(bytes_of(header_bytes(kMagic, 1, 0, (1 << 20) - 15)), Limits{});
  EXPECT_EQ(d.error, Status::kFrameTooLarge);
  EXPECT_EQ(decode_frame(bytes_of(header_bytes(kMagic, 1, 0, (1 << 20) - 16)), Limits{}).kind,
            DecodeKind::kNeedMore);
}

TEST(CodecFrame, UnknownOpcodeIsAFrameButNotARequest) {
  FrameHeader h;
  h.opcode = 0x99;
  h.body_len = 2;
  std::string frame;
  encode_header(h, frame);
  frame += "ab";
  FrameDecode d = decode_frame(bytes_of(frame), Limits{});
  ASSERT_EQ(d.kind, DecodeKind::kFrame);
  EXPECT_FALSE(opcode_known(d.header.opcode));
  EXPECT_EQ(decode_request(static_cast<Opcode>(0x99), d.body).status().message(),
            "unknown opcode 0x0099");
  EXPECT_FALSE(decode_response(static_cast<Opcode>(0x99), Status::kOk, d.body).ok());
}

// ---- Malformed bodies ----

// Encodes `r` (the encoder does not check limits) and returns why decoding refuses it.
std::string refusal(Opcode op, const Request& r) {
  std::string frame;
  encode_request(op, 1, r, frame);
  auto got = decode_request(op, bytes_of(frame).subspan(kHeaderBytes));
  EXPECT_FALSE(got.ok()) << opcode_name(op);
  return got.status().message();
}
std::string refusal(Opcode op, Status s, const Response& r) {
  std::string frame;
  encode_response(op, 1, s, r, frame);
  auto got = decode_response(op, s, bytes_of(frame).subspan(kHeaderBytes));
  EXPECT_FALSE(got.ok()) << opcode_name(op);
  return got.status().message();
}
std::string request_body_refusal(Opcode op, const std::string& body) {
  auto got = decode_request(op, bytes_of(body));
  EXPECT_FALSE(got.ok()) << opcode_name(op);
  return got.status().message();
}
std::string response_body_refusal(Opcode op, const std::string& body) {
  auto got = decode_response(op, Status::kOk, bytes_of(body));
  EXPECT_FALSE(got.ok());
  return got.status().message();
}

TEST(CodecBody, StringsOverTheirLimit) {
  EXPECT_EQ(refusal(Opcode::kSkuGet, SkuReq{repeat('s', 65)}), "sku_get: sku is 65 bytes, max 64");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{repeat('u', 129), "", 0, kLines}),
            "reserve: user is 129 bytes, max 128");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", repeat('k', 129), 0, kLines}),
            "reserve: key is 129 bytes, max 128");
  EXPECT_EQ(refusal(Opcode::kHello, HelloReq{1, Role::kBuyer, repeat('t', 257), ""}),
            "hello: token is 257 bytes, max 256");
  EXPECT_EQ(refusal(Opcode::kHello, HelloReq{1, Role::kBuyer, "", repeat('c', 129)}),
            "hello: client_name is 129 bytes, max 128");
  EXPECT_EQ(refusal(Opcode::kCodesLoad, CodesLoadReq{"G", {"a", repeat('c', 129)}}),
            "codes_load: code 1 is 129 bytes, max 128");
  EXPECT_EQ(refusal(Opcode::kSkuList, SkuListReq{repeat('a', 65), 10}),
            "sku_list: after is 65 bytes, max 64");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", 0, {{"a", 1}, {repeat('s', 65), 1}}}),
            "reserve: line 1 sku is 65 bytes, max 64");
  EXPECT_EQ(refusal(Opcode::kSkuGet, Status::kOk, SkuView{repeat('s', 65)}),
            "sku_get response: sku is 65 bytes, max 64");
  EXPECT_EQ(refusal(Opcode::kStats, Status::kOk, StatsResp{{{repeat('n', 129), 1}}}),
            "stats response: stat 0 name is 129 bytes, max 128");
}

TEST(CodecBody, RequiredStringsMustNotBeEmpty) {
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", 0, {{"a", 1}, {"", 1}}}),
            "reserve: line 1 sku is empty");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"", "k", 0, kLines}), "reserve: user is empty");
  EXPECT_EQ(refusal(Opcode::kClaim, ClaimReq{"", "u", ""}), "claim: sku is empty");
  EXPECT_EQ(refusal(Opcode::kClaim, ClaimReq{"s", "", ""}), "claim: user is empty");
  EXPECT_EQ(refusal(Opcode::kSaleClose, SkuReq{""}), "sale_close: sku is empty");
  EXPECT_EQ(refusal(Opcode::kSkuSet, SkuSetReq{}), "sku_set: sku is empty");
  EXPECT_EQ(refusal(Opcode::kRestock, RestockReq{"", 1}), "restock: sku is empty");
  EXPECT_EQ(refusal(Opcode::kCodesLoad, CodesLoadReq{"G", {"a", "", "b"}}),
            "codes_load: code 1 is empty");
}

TEST(CodecBody, CountsAndRanges) {
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", 0, {}}),
            "reserve: line count is 0, must be 1..64");
  std::vector<Line> too_many(65, Line{"a", 1});
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", 0, too_many}),
            "reserve: line count is 65, must be 1..64");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", 0, {{"a", 1}, {"b", 0}}}),
            "reserve: line 1 qty is 0, must be at least 1");
  EXPECT_EQ(refusal(Opcode::kReserve, ReserveReq{"u", "", kHoldTtlMsMax + 1, kLines}),
            "reserve: ttl_ms is 86400001, max 86400000");
  EXPECT_EQ(refusal(Opcode::kCommit, HoldReq{0, ""}), "commit: hold_id is 0, must be at least 1");
  EXPECT_EQ(refusal(Opcode::kRelease, HoldReq{0, ""}), "release: hold_id is 0, must be at least 1");
  EXPECT_EQ(refusal(Opcode::kHoldGet, HoldReq{0, ""}),
            "hold_get: hold_id is 0, must be at least 1");
  EXPECT_EQ(refusal(Opcode::kSkuList, SkuListReq{"", 0}), "sku_list: limit is 0, must be 1..1000");
  EXPECT_EQ(refusal(Opcode::kSkuList, SkuListReq{"", 1001}),
            "sku_list: limit is 1001, must be 1..1000");
  EXPECT_EQ(refusal(Opcode::kOutboxRead, OutboxReadReq{0, 0, 0}),
            "outbox_read: max_records is 0, must be 1..10000");
  EXPECT_EQ(refusal(Opcode::kOutboxRead, OutboxReadReq{0, 10001, 0}),
            "outbox_read: max_records is 10001, must be 1..10000");
  EXPECT_EQ(refusal(Opcode::kOutboxRead, OutboxReadReq{0, 1, 30001}),
            "outbox_read: wait_ms is 30001, max 30000");
  EXPECT_EQ(refusal(Opcode::kCodesLoad, CodesLoadReq{"G", {}}),
            "codes_load: code count is 0, must be at least 1");
}

TEST(CodecBody, BadEnumValues) {
  EXPECT_EQ(refusal(Opcode::kHello, HelloReq{1, static_cast<Role>(0), "", ""}),
            "hello: role is 0, must be 1..3");
  EXPECT_EQ(refusal(Opcode::kHello, HelloReq{1, static_cast<Role>(4), "", ""}),
            "hello: role is 4, must be 1..3");
  EXPECT_EQ(refusal(Opcode::kSkuSet, SkuSetReq{"a", 0x10}),
            "sku_set: mask 0x10 has unknown bits (known: 0x0F)");
  EXPECT_EQ(refusal(Opcode::kReserve, Status::kOk,
                    ReserveResp{1, static_cast<HoldState>(5), 0, 0, 0, {}}),
            "reserve response: state is 5, max 4");
  HoldView view;
  view.state = static_cast<HoldState>(9);
  EXPECT_EQ(refusal(Opcode::kHoldGet, Status::kOk, view), "hold_get response: state is 9, max 4");
  OutboxRecord bad;
  bad.kind = static_cast<OutboxKind>(0);
  EXPECT_EQ(refusal(Opcode::kOutboxRead, Status::kOk, OutboxReadResp{1, 0, 1, {{}, bad}}),
            "outbox_read response: record 1 kind is 0, must be 1..3");
  bad.kind = static_cast<OutboxKind>(4);
  EXPECT_EQ(refusal(Opcode::kOutboxRead, Status::kOk, OutboxReadResp{1, 0, 1, {bad}}),
            "outbox_read response: record 0 kind is 4, must be 1..3");
}

TEST(CodecBody, CountsLargerThanTheBody) {
  std::string body;
  wire::Writer w(body);
  w.str("u");
  w.str("");
  w.u32(0);
  w.u16(3);  // three lines announced, two present
  w.str("a");
  w.u32(1);
  w.str("b");
  w.u32(1);
  EXPECT_EQ(request_body_refusal(Opcode::kReserve, body),
            "reserve: line count is 3 but only 14 bytes are left (items take at least 6 bytes)");
  std::string codes;
  wire::Writer c(codes);
  c.str("G");
  c.u32(0xFFFFFFFF);
  c.str("x");
  EXPECT_EQ(request_body_refusal(Opcode::kCodesLoad, codes),
            "codes_load: code count is 4294967295 but only 3 bytes are left (items take at least "
            "2 bytes)");
  for (Opcode op : {Opcode::kSkuList, Opcode::kOutboxRead}) {
    std::string huge;
    wire::Writer h(huge);
    if (op == Opcode::kOutboxRead) h.raw(std::string(24, '\0'));
    h.u32(0xFFFFFFFF);
    h.raw(std::string(100, '\0'));
    std::string reason = response_body_refusal(op, huge);
    EXPECT_NE(reason.find("count is 4294967295 but only 100 bytes are left"), std::string::npos)
        << reason;
  }
  std::string stats;
  wire::Writer s(stats);
  s.u16(0xFFFF);
  EXPECT_EQ(response_body_refusal(Opcode::kStats, stats),
            "stats response: stat count is 65535 but only 0 bytes are left (items take at least "
            "10 bytes)");
}

TEST(CodecBody, TruncationReasonsNameTheField) {
  std::string body;
  wire::Writer w(body);
  w.str("u");
  w.str("k");
  w.u16(7);  // half of ttl_ms
  EXPECT_EQ(request_body_refusal(Opcode::kReserve, body),
            "reserve: ttl_ms truncated: needs 4 bytes, 2 left");
  std::string str_body;
  wire::Writer s(str_body);
  s.u16(10);
  s.raw("abc");
  EXPECT_EQ(request_body_refusal(Opcode::kSkuGet, str_body),
            "sku_get: sku truncated: length 10, 3 bytes left");
  EXPECT_EQ(request_body_refusal(Opcode::kCommit, ""),
            "commit: hold_id truncated: needs 8 bytes, 0 left");
}

TEST(CodecBody, ResponsesAreLenientAboutMeaningButNotShape) {
  std::string frame;
  HoldView odd{0, HoldState::kNone, "", "", 0, 0, {{"", 0}}, {{"", ""}}};
  encode_response(Opcode::kHoldGet, 1, Status::kOk, odd, frame);
  auto got = decode_response(Opcode::kHoldGet, Status::kOk, bytes_of(frame).subspan(16));
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_TRUE(*got == Response(odd));
  // Any opcode, even unknown or 0, carries an ErrorResp when the status is an error.
  std::string msg;
  wire::Writer w(msg);
  w.str("nope");
  got = decode_response(static_cast<Opcode>(0xBEEF), static_cast<Status>(99), bytes_of(msg));
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(std::get<ErrorResp>(*got).message, "nope");
  EXPECT_EQ(decode_response(static_cast<Opcode>(0), Status::kBusy, bytes_of(msg).first(3))
                .status()
                .message(),
            "error response: message truncated: length 4, 1 bytes left");
}

TEST(CodecBody, EmptyMessagesHaveEmptyBodies) {
  for (Opcode op : {Opcode::kPing, Opcode::kStats, Opcode::kOutboxStatus}) {
    EXPECT_TRUE(decode_request(op, {}).ok()) << opcode_name(op);
    EXPECT_EQ(request_body_refusal(op, std::string(1, '\0')),
              std::string(op == Opcode::kPing    ? "ping"
                          : op == Opcode::kStats ? "stats"
                                                 : "outbox_status") +
                  ": trailing 1 bytes after body");
  }
  EXPECT_TRUE(decode_response(Opcode::kPing, Status::kOk, {}).ok());
}

}  // namespace
}  // namespace stockd::proto

namespace stockd::proto {
namespace {

// The server decodes every request into one reused Request: whatever it held before (longer
// strings, more lines, another message type, a failed decode) must not show through.
TEST(DecodeInto, AReusedRequestEqualsAFreshDecode) {
  const std::vector<std::pair<Opcode, Request>> seq = {
      {Opcode::kReserve,
       ReserveReq{
           std::string(100, 'u'), std::string(128, 'k'), 60000, {{"a", 1}, {"bb", 2}, {"c", 3}}}},
      {Opcode::kReserve, ReserveReq{"ann", "", 0, {{"tee", 1}}}},
      {Opcode::kClaim, ClaimReq{"cp", "bob", "key-1"}},
      {Opcode::kReserve, ReserveReq{"cy", "k2", 5, {{"x", 9}, {"y", 8}}}},
      {Opcode::kCodesLoad, CodesLoadReq{"cp", {"c1", "c22", "c333"}}},
      {Opcode::kCodesLoad, CodesLoadReq{"cp", {"z"}}},
  };
  Request reused;
  for (int round = 0; round < 2; ++round) {
    for (const auto& [op, req] : seq) {
      std::string frame;
      encode_request(op, 1, req, frame);
      FrameDecode d = decode_frame(bytes_of(frame), Limits{});
      ASSERT_EQ(d.kind, DecodeKind::kFrame) << d.reason;
      const stockd::Status st = decode_request(op, d.body, reused);
      ASSERT_TRUE(st.ok()) << st.message();
      EXPECT_EQ(reused, req);
      EXPECT_EQ(reused, *decode_request(op, d.body));
      // A body cut short fails, and the next decode is still exact.
      const stockd::Status cut = decode_request(op, d.body.first(d.body.size() - 1), reused);
      EXPECT_FALSE(cut.ok());
      EXPECT_FALSE(cut.message().empty());
    }
  }
}

}  // namespace
// The opcode registry (STOCKD_OPCODES) against the role table of docs/protocol.md section 4:
// the spec and the dispatcher cannot drift.
TEST(OpcodeRegistry, RolesMatchTheSpecTable) {
  std::ifstream file(STOCKD_PROTOCOL_MD);
  ASSERT_TRUE(file) << "cannot open " STOCKD_PROTOCOL_MD;
  std::string line;
  while (std::getline(file, line) && line.rfind("| Opcodes", 0) != 0) {
  }
  ASSERT_FALSE(file.eof()) << "no role table";
  std::getline(file, line);  // the |---| line
  std::map<std::string, std::array<bool, 3>> spec;
  while (std::getline(file, line) && line.rfind("|", 0) == 0) {
    std::vector<std::string> cells;
    std::stringstream row(line.substr(1));
    for (std::string cell; std::getline(row, cell, '|');) {
      cell.erase(0, cell.find_first_not_of(' '));
      cell.erase(cell.find_last_not_of(' ') + 1);
      cells.push_back(cell);
    }
    ASSERT_GE(cells.size(), 4u) << line;
    std::stringstream names(cells[0]);
    for (std::string name; std::getline(names, name, ',');) {
      name.erase(0, name.find_first_not_of(' '));
      spec[name] = {cells[1] == "yes", cells[2] == "yes", cells[3] == "yes"};
    }
  }
  size_t known = 0;
  for (uint16_t raw = 0; raw <= kOpcodeMax; ++raw) {
    const OpInfo* info = op_info(raw);
    if (info == nullptr) continue;
    ++known;
    auto it = spec.find(info->name);
    ASSERT_NE(it, spec.end()) << info->name << " is not in the spec's role table";
    EXPECT_EQ(info->allows(Role::kBuyer), it->second[0]) << info->name << " buyer";
    EXPECT_EQ(info->allows(Role::kAdmin), it->second[1]) << info->name << " admin";
    EXPECT_EQ(info->allows(Role::kOutbox), it->second[2]) << info->name << " outbox";
    EXPECT_EQ(opcode_name(info->op), std::string(info->name));
  }
  EXPECT_EQ(known, spec.size()) << "the spec lists opcodes the registry does not have";
}

}  // namespace stockd::proto
