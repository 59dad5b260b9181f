// What stockbench sends and receives, independent of the target's wire format: an Op is one
// request, a Reply its answer, and a Codec turns Ops into bytes and bytes into Replies for one
// target (stockd's binary protocol, Redis RESP).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace stockd::bench {

enum class OpKind : uint8_t {
  kHello,    // first request of every connection (stockd HELLO, Redis PING)
  kBuyNow,   // RESERVE with ttl 0 / Redis EVALSHA decrement
  kReserve,  // RESERVE with a TTL; followed by `then`
  kCommit,
  kRelease,
  kClaim,
  kQuery,  // SKU_GET / Redis GET
};

struct Op {
  OpKind kind = OpKind::kHello;
  OpKind then = OpKind::kHello;  // kReserve: kCommit or kRelease (kHello: nothing, hold stays)
  bool retry = false;            // a resend of the previous keyed op with the same key
  uint32_t sku = 0;              // index into Config::skus
  uint32_t user = 0;             // buyer index
  uint32_t qty = 1;
  uint64_t key = 0;      // idempotency key number (0 = no key); see Codec for its text
  uint64_t hold_id = 0;  // kCommit, kRelease
};

// Statuses are stockd's (proto::Status values); Redis answers are mapped onto them, with
// kRedisError for an error reply.
inline constexpr uint16_t kStatusOk = 0;
inline constexpr uint16_t kStatusSoldOut = 1;
inline constexpr uint16_t kStatusErrorMin = 64;
inline constexpr uint16_t kRedisError = 100;

struct Reply {
  uint16_t status = kStatusOk;
  uint64_t id = 0;      // RESERVE: hold id; CLAIM: order id; HELLO: server's inflight_max
  std::string code;     // CLAIM: the code handed out
  std::string message;  // status >= 64: the error text
};

enum class Take { kReply, kNeedMore, kInvalid };

// One per thread: encode() and take() may keep scratch state.
class Codec {
 public:
  virtual ~Codec() = default;
  // Appends one whole request to `out`.
  virtual void encode(const Op& op, uint32_t request_id, std::string& out) = 0;
  // Reads the answer to (op, request_id) at the start of `in`: kReply with `consumed` bytes,
  // kNeedMore, or kInvalid (`why`) when the bytes cannot be an answer to it.
  virtual Take take(std::span<const uint8_t> in, const Op& op, uint32_t request_id, Reply& reply,
                    size_t& consumed, std::string& why) = 0;
};

}  // namespace stockd::bench
