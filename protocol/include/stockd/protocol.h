// stockd wire protocol: frame header, messages and a pure, bounded codec.
//
// This library needs only the C++ standard library. It does no I/O and keeps no state: every
// function is safe to call from any thread. The byte-level grammar, with hex test vectors, is
// docs/protocol.md; this header and that document must agree.
//
// Frame = 16-byte header + body. All integers little-endian.
//   offset 0  u16 magic        0x4B53 ("SK" on the wire: 53 4B)
//   offset 2  u8  version      kProtocolVersion
//   offset 3  u8  flags        bit 0 = response; other bits must be 0
//   offset 4  u32 body_len     bytes after the header, <= Limits::frame_bytes_max - 16
//   offset 8  u16 opcode
//   offset 10 u16 status       0 in requests; a Status in responses
//   offset 12 u32 request_id   chosen by the client, echoed in the response
// Body primitives: u8 u16 u32 u64 i64 (LE), str = u16 length + bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "stockd/status.h"

namespace stockd::proto {

inline constexpr uint16_t kMagic = 0x4B53;
inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr size_t kHeaderBytes = 16;
inline constexpr uint8_t kFlagResponse = 0x01;

// Hard limits of the protocol. Every limit is named once, with its unit.
struct Limits {
  uint32_t frame_bytes_max = 1 << 20;  // whole frame, header included
};
inline constexpr size_t kSkuBytesMax = 64;
inline constexpr size_t kUserBytesMax = 128;
inline constexpr size_t kKeyBytesMax = 128;
inline constexpr size_t kCodeBytesMax = 128;
inline constexpr size_t kTokenBytesMax = 256;
inline constexpr size_t kClientNameBytesMax = 128;  // HELLO client_name
inline constexpr size_t kStatNameBytesMax = 128;    // STATS name
inline constexpr size_t kReserveLinesMax = 64;
// Unique codes one hold may take (the code-pool lines of one RESERVE add up to at most this).
// With the string limits above it bounds every hold answer and outbox record by construction:
// kHoldBytesMax below, which must fit the smallest frame a server may be configured with.
inline constexpr size_t kHoldCodesMax = 256;
// Smallest --frame-bytes-max a server accepts: every answer and outbox record fits in it.
inline constexpr uint32_t kFrameBytesMin = 64 * 1024;
// Largest --frame-bytes-max a server accepts (and a client takes from a HELLO answer: it bounds
// what the client buffers for one answer).
inline constexpr uint32_t kFrameBytesMax = 64u << 20;
// Before HELLO, a frame's body is at most this (a HELLO body is at most 391 bytes).
inline constexpr uint32_t kHelloBodyBytesMax = 512;
inline constexpr uint32_t kHoldTtlMsMax = 24u * 3600u * 1000u;  // one day
inline constexpr uint32_t kSkuListMax = 1000;                   // per SKU_LIST page
inline constexpr uint32_t kOutboxReadMax = 10000;               // records per OUTBOX_READ
inline constexpr uint32_t kOutboxWaitMsMax = 30000;             // long-poll bound

// Every opcode, one row each, and nowhere else: the enum, the codec's table (request and
// response types), the dispatcher (roles, writes), the metrics slots and the client's retries are
// all made from this list, so an opcode cannot lack any of them.
//   X(enumerator, value, NAME, label for messages, request type, response type, roles, writes,
//     retry)
// roles: who may send it (section 4 of docs/protocol.md); writes: it changes state (refused while
// the store is failed); retry: whether a client may resend it after a lost answer (kAlways: it
// cannot apply twice; kWithKey: only with an idempotency key; kNever).
#define STOCKD_OPCODES(X)                                                                         \
  X(kHello, 0x01, "HELLO", "hello", HelloReq, HelloResp, kRolesAny, false, kAlways)               \
  X(kPing, 0x02, "PING", "ping", PingReq, PingResp, kRolesAny, false, kAlways)                    \
  X(kReserve, 0x10, "RESERVE", "reserve", ReserveReq, ReserveResp, kRolesBuy, true, kWithKey)     \
  X(kCommit, 0x11, "COMMIT", "commit", HoldReq, HoldView, kRolesBuy, true, kAlways)               \
  X(kRelease, 0x12, "RELEASE", "release", HoldReq, HoldView, kRolesBuy, true, kAlways)            \
  X(kClaim, 0x13, "CLAIM", "claim", ClaimReq, ClaimResp, kRolesBuy, true, kWithKey)               \
  X(kHoldGet, 0x14, "HOLD_GET", "hold_get", HoldReq, HoldView, kRolesAny, false, kAlways)         \
  X(kSkuGet, 0x20, "SKU_GET", "sku_get", SkuReq, SkuView, kRolesAny, false, kAlways)              \
  X(kSkuList, 0x21, "SKU_LIST", "sku_list", SkuListReq, SkuListResp, kRolesAny, false, kAlways)   \
  X(kStats, 0x22, "STATS", "stats", StatsReq, StatsResp, kRolesAny, false, kAlways)               \
  X(kSkuSet, 0x30, "SKU_SET", "sku_set", SkuSetReq, SkuView, kRolesAdmin, true, kNever)           \
  X(kRestock, 0x31, "RESTOCK", "restock", RestockReq, SkuView, kRolesAdmin, true, kNever)         \
  X(kCodesLoad, 0x32, "CODES_LOAD", "codes_load", CodesLoadReq, CodesLoadResp, kRolesAdmin, true, \
    kNever)                                                                                       \
  X(kSaleClose, 0x33, "SALE_CLOSE", "sale_close", SkuReq, SkuView, kRolesAdmin, true, kAlways)    \
  X(kOutboxRead, 0x40, "OUTBOX_READ", "outbox_read", OutboxReadReq, OutboxReadResp, kRolesOutbox, \
    false, kAlways)                                                                               \
  X(kOutboxAck, 0x41, "OUTBOX_ACK", "outbox_ack", OutboxAckReq, OutboxStatusResp, kRolesOutbox,   \
    true, kAlways)                                                                                \
  X(kOutboxStatus, 0x42, "OUTBOX_STATUS", "outbox_status", OutboxStatusReq, OutboxStatusResp,     \
    kRolesOutbox, false, kAlways)

enum class Opcode : uint16_t {
#define STOCKD_OPCODE_ENUM(e, v, ...) e = v,
  STOCKD_OPCODES(STOCKD_OPCODE_ENUM)
#undef STOCKD_OPCODE_ENUM
};
// The largest opcode value (metrics size their per-opcode slots from it).
inline constexpr uint16_t kOpcodeMax = [] {
  uint16_t m = 0;
#define STOCKD_OPCODE_VALUE(e, v, ...) uint16_t{v},
  for (uint16_t v : {STOCKD_OPCODES(STOCKD_OPCODE_VALUE)}) m = v > m ? v : m;
#undef STOCKD_OPCODE_VALUE
  return m;
}();
const char* opcode_name(Opcode op);
bool opcode_known(uint16_t raw);

// Status < 64: a business outcome; the body is the operation's response struct.
// Status >= 64: an error; the body is ErrorResp (a human-readable message).
enum class [[nodiscard]] Status : uint16_t{
    kOk = 0,
    kSoldOut = 1,
    kLimitExceeded = 2,
    kNotFound = 3,
    kSaleNotOpen = 4,
    kSaleClosed = 5,
    kHoldExpired = 6,
    kAlreadyDone = 7,
    kKeyConflict = 8,
    kDuplicateCode = 9,
    kBelowCommitted = 10,
    kBadRequest = 64,
    kUnauthorized = 65,
    kBusy = 66,
    kStorageUnavailable = 67,
    kUnknownOpcode = 68,
    kUnsupportedVersion = 69,
    kFrameTooLarge = 70,
    kInternal = 71,
    kTooManyHolds = 72,
};
const char* status_name(Status s);  // "OK", "SOLD_OUT", ...
inline bool is_error_status(Status s) { return static_cast<uint16_t>(s) >= 64; }

enum class Role : uint8_t { kBuyer = 1, kAdmin = 2, kOutbox = 3 };

// The registry row of an opcode (made from STOCKD_OPCODES).
enum class Retry : uint8_t { kAlways, kWithKey, kNever };
constexpr uint8_t role_bit(Role r) { return static_cast<uint8_t>(1u << static_cast<uint8_t>(r)); }
inline constexpr uint8_t kRolesAny =
    role_bit(Role::kBuyer) | role_bit(Role::kAdmin) | role_bit(Role::kOutbox);
inline constexpr uint8_t kRolesBuy = role_bit(Role::kBuyer) | role_bit(Role::kAdmin);
inline constexpr uint8_t kRolesAdmin = role_bit(Role::kAdmin);
inline constexpr uint8_t kRolesOutbox = role_bit(Role::kAdmin) | role_bit(Role::kOutbox);
struct OpInfo {
  Opcode op;
  const char* name;   // "COMMIT"
  const char* label;  // "commit": how messages name it
  uint8_t roles;      // role_bit()s allowed to send it
  bool writes;        // changes state
  Retry retry;        // may a client resend it after a lost answer
  bool allows(Role r) const { return (roles & role_bit(r)) != 0; }
};
// nullptr for an unknown opcode.
const OpInfo* op_info(uint16_t raw);
enum class HoldState : uint8_t {
  kNone = 0,
  kHeld = 1,
  kCommitted = 2,
  kReleased = 3,
  kExpired = 4
};
const char* hold_state_name(HoldState s);

struct FrameHeader {
  uint16_t magic = kMagic;
  uint8_t version = kProtocolVersion;
  uint8_t flags = 0;
  uint32_t body_len = 0;
  uint16_t opcode = 0;
  uint16_t status = 0;
  uint32_t request_id = 0;
  bool is_response() const { return (flags & kFlagResponse) != 0; }
};

// ---- Messages. Times are ms since the Unix epoch; 0 means "not set". ----

struct Line {
  std::string sku;
  uint32_t qty = 0;
  bool operator==(const Line&) const = default;
};
struct SkuCode {  // one unique code and the SKU it belongs to
  std::string sku;
  std::string code;
  bool operator==(const SkuCode&) const = default;
};

struct HelloReq {
  uint16_t version = kProtocolVersion;
  Role role = Role::kBuyer;
  std::string token;
  std::string client_name;
  bool operator==(const HelloReq&) const = default;
};
struct HelloResp {
  uint16_t version = kProtocolVersion;
  uint32_t frame_bytes_max = 0;
  uint32_t inflight_max = 0;     // requests a connection may have unanswered
  uint32_t idle_timeout_ms = 0;  // a connection with nothing outstanding this long is closed
  bool operator==(const HelloResp&) const = default;
};
struct PingReq {
  bool operator==(const PingReq&) const = default;
};
struct PingResp {
  bool operator==(const PingResp&) const = default;
};

struct ReserveReq {
  std::string user;
  std::string key;      // idempotency key; empty = none
  uint32_t ttl_ms = 0;  // 0 = buy now (committed at once)
  std::vector<Line> lines;
  bool operator==(const ReserveReq&) const = default;
};
struct ReserveResp {
  uint64_t hold_id = 0;  // also the order id once committed
  HoldState state = HoldState::kNone;
  int64_t expires_at_ms = 0;
  uint16_t failed_line = 0xFFFF;  // index of the refused line, 0xFFFF if none
  uint64_t available = 0;      // SOLD_OUT: units left; LIMIT_EXCEEDED: allowance left for the user
  std::vector<SkuCode> codes;  // codes held or sold by this reservation
  bool operator==(const ReserveResp&) const = default;
};

struct HoldReq {  // COMMIT, RELEASE, HOLD_GET
  uint64_t hold_id = 0;
  std::string user;  // whose hold; empty = any (admin and outbox only)
  bool operator==(const HoldReq&) const = default;
};
struct HoldView {  // COMMIT, RELEASE, HOLD_GET response
  uint64_t hold_id = 0;
  HoldState state = HoldState::kNone;
  std::string user;
  std::string key;
  int64_t created_at_ms = 0;
  int64_t expires_at_ms = 0;
  std::vector<Line> lines;
  std::vector<SkuCode> codes;
  bool operator==(const HoldView&) const = default;
};

struct ClaimReq {
  std::string sku;
  std::string user;
  std::string key;
  bool operator==(const ClaimReq&) const = default;
};
struct ClaimResp {
  uint64_t order_id = 0;
  std::string code;
  uint64_t available = 0;  // units left after this claim (or at refusal)
  bool operator==(const ClaimResp&) const = default;
};

struct SkuReq {  // SKU_GET, SALE_CLOSE
  std::string sku;
  bool operator==(const SkuReq&) const = default;
};
inline constexpr uint8_t kSkuFlagClosed = 0x01;
inline constexpr uint8_t kSkuFlagCodePool = 0x02;
struct SkuView {
  std::string sku;
  uint64_t total = 0;
  uint64_t available = 0;
  uint64_t held = 0;
  uint64_t sold = 0;
  uint32_t per_user_limit = 0;  // 0 = no limit
  int64_t opens_at_ms = 0;
  int64_t closes_at_ms = 0;
  uint8_t flags = 0;
  bool operator==(const SkuView&) const = default;
};

// Encoded size of one SkuView in a list: str sku, 4 x u64, u32, 2 x i64, u8.
inline size_t encoded_bytes(const SkuView& v) { return 2 + v.sku.size() + 32 + 4 + 16 + 1; }

struct SkuListReq {
  std::string after;  // list SKUs with id > after, in byte order
  uint32_t limit = 100;
  bool operator==(const SkuListReq&) const = default;
};
struct SkuListResp {
  std::vector<SkuView> skus;
  bool operator==(const SkuListResp&) const = default;
};

struct StatsReq {
  bool operator==(const StatsReq&) const = default;
};
struct Stat {
  std::string name;
  uint64_t value = 0;
  bool operator==(const Stat&) const = default;
};
struct StatsResp {
  std::vector<Stat> stats;
  bool operator==(const StatsResp&) const = default;
};

inline constexpr uint8_t kSetTotal = 0x01;
inline constexpr uint8_t kSetPerUserLimit = 0x02;
inline constexpr uint8_t kSetOpensAt = 0x04;
inline constexpr uint8_t kSetClosesAt = 0x08;
struct SkuSetReq {  // create, or update the fields named in `mask`
  std::string sku;
  uint8_t mask = 0;
  uint64_t total = 0;
  uint32_t per_user_limit = 0;
  int64_t opens_at_ms = 0;
  int64_t closes_at_ms = 0;
  bool operator==(const SkuSetReq&) const = default;
};
struct RestockReq {
  std::string sku;
  int64_t delta = 0;  // added to total and available; may be negative
  bool operator==(const RestockReq&) const = default;
};
struct CodesLoadReq {
  std::string sku;
  std::vector<std::string> codes;
  bool operator==(const CodesLoadReq&) const = default;
};
struct CodesLoadResp {
  SkuView sku;
  std::string duplicate;  // DUPLICATE_CODE: the first code already known
  bool operator==(const CodesLoadResp&) const = default;
};

enum class OutboxKind : uint8_t { kOrder = 1, kReleased = 2, kExpired = 3 };
struct OutboxRecord {
  uint64_t seq = 0;
  OutboxKind kind = OutboxKind::kOrder;
  uint64_t order_id = 0;  // the hold id
  std::string user;
  std::string key;
  int64_t created_at_ms = 0;
  int64_t at_ms = 0;  // committed, released or expired at
  std::vector<Line> lines;
  std::vector<SkuCode> codes;
  bool operator==(const OutboxRecord&) const = default;
};
struct OutboxReadReq {
  uint64_t after_seq = 0;
  uint32_t max_records = 1000;
  uint32_t wait_ms = 0;  // long-poll: wait up to this long for a record after after_seq
  bool operator==(const OutboxReadReq&) const = default;
};
struct OutboxReadResp {
  uint64_t head_seq = 0;   // highest sequence number written
  uint64_t acked_seq = 0;  // highest sequence number acknowledged by the sidecar
  uint64_t first_seq = 0;  // lowest sequence number still retained (0 if none)
  std::vector<OutboxRecord> records;
  bool operator==(const OutboxReadResp&) const = default;
};
struct OutboxAckReq {
  uint64_t upto_seq = 0;
  bool operator==(const OutboxAckReq&) const = default;
};
struct OutboxStatusReq {
  bool operator==(const OutboxStatusReq&) const = default;
};
struct OutboxStatusResp {
  uint64_t head_seq = 0;
  uint64_t acked_seq = 0;
  uint64_t first_seq = 0;
  bool operator==(const OutboxStatusResp&) const = default;
};

struct ErrorResp {  // body of every response whose status >= 64
  std::string message;
  bool operator==(const ErrorResp&) const = default;
};

using Request =
    std::variant<HelloReq, PingReq, ReserveReq, HoldReq, ClaimReq, SkuReq, SkuListReq, StatsReq,
                 SkuSetReq, RestockReq, CodesLoadReq, OutboxReadReq, OutboxAckReq, OutboxStatusReq>;
using Response =
    std::variant<HelloResp, PingResp, ReserveResp, HoldView, ClaimResp, SkuView, SkuListResp,
                 StatsResp, CodesLoadResp, OutboxReadResp, OutboxStatusResp, ErrorResp>;

// The largest encoded hold answer (HoldView) or outbox record, header included: user and key
// at their limits, kReserveLinesMax lines of the longest SKU id, kHoldCodesMax codes of the
// longest SKU id and code. ReserveResp and ClaimResp are smaller.
inline constexpr size_t kHoldBytesMax = kHeaderBytes + 8 + 1 + 8 + (2 + kUserBytesMax) +
                                        (2 + kKeyBytesMax) + 8 + 8 + 2 +
                                        kReserveLinesMax * (2 + kSkuBytesMax + 4) + 2 +
                                        kHoldCodesMax * (2 + kSkuBytesMax + 2 + kCodeBytesMax);
static_assert(kHoldBytesMax <= kFrameBytesMin, "a hold answer must fit the smallest frame");

// ---- Framing ----

enum class DecodeKind { kFrame, kNeedMore, kInvalid };
struct FrameDecode {
  DecodeKind kind = DecodeKind::kNeedMore;
  FrameHeader header;             // kFrame, and kInvalid when the header itself was read
  std::span<const uint8_t> body;  // kFrame: view into the input
  size_t consumed = 0;            // kFrame: header + body bytes
  Status error = Status::kOk;     // kInvalid: kBadRequest, kFrameTooLarge, kUnsupportedVersion
  std::string reason;             // kInvalid: why, for the error frame and the log
};
// Looks at the start of `in`. Never reads past in.size(); never allocates unless invalid.
FrameDecode decode_frame(std::span<const uint8_t> in, const Limits& limits);

// Appends one header to `out`.
void encode_header(const FrameHeader& h, std::string& out);

// ---- Bodies ----

// Decodes a request body for `op`; Invalid, with the field that failed, when it does not decode.
// Trailing bytes, strings over their limit and counts past the body are failures.
stockd::Result<Request> decode_request(Opcode op, std::span<const uint8_t> body);
// The same into `into`, reusing its strings and lists when it already holds the message type of
// `op` (a server decoding request after request allocates nothing once they are big enough).
// Invalid, with `into` unspecified, when the body does not decode.
stockd::Status decode_request(Opcode op, std::span<const uint8_t> body, Request& into);
// Decodes a response body for `op` with `status` (ErrorResp when status >= 64).
stockd::Result<Response> decode_response(Opcode op, Status status, std::span<const uint8_t> body);

// Append a whole frame (header + body) to `out`. The request's opcode follows from its type,
// except HoldReq (COMMIT/RELEASE/HOLD_GET) and SkuReq (SKU_GET/SALE_CLOSE), hence `op`.
void encode_request(Opcode op, uint32_t request_id, const Request& req, std::string& out);
void encode_response(Opcode op, uint32_t request_id, Status status, const Response& resp,
                     std::string& out);

// The opcode a request type is sent with by default (HoldReq -> COMMIT, SkuReq -> SKU_GET).
Opcode default_opcode(const Request& req);

}  // namespace stockd::proto
