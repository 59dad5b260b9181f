#include "dispatch.h"

#include <cstdio>

#include "stockd/wire.h"

namespace stockd {
namespace {

using proto::Opcode;
using proto::Role;

// Constant-time token comparison: a wrong token must not leak its matching prefix length.
bool token_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

// Encodes the book's answer; an error status (>= 64) carries the book's reason instead.
template <class Resp>
void Dispatcher::answer(Opcode op, uint32_t id, const Verdict& v, Resp&& resp, std::string& out) {
  const proto::Status st = v.status;
  if (proto::is_error_status(st)) {
    error(static_cast<uint16_t>(op), id, st, v.why.empty() ? proto::status_name(st) : v.why, out);
    return;
  }
  status_ = st;
  proto::encode_response(op, id, st, proto::Response(std::forward<Resp>(resp)), out);
}

void Dispatcher::error(uint16_t opcode, uint32_t id, proto::Status st, const std::string& why,
                       std::string& out) {
  status_ = st;
  encode_error(opcode, id, st, why, out);
}

Dispatcher::Dispatcher(Book& book, const Config& config, HelloGuard* guard)
    : book_(book), config_(config), guard_(guard) {}

void Dispatcher::encode_error(uint16_t opcode, uint32_t request_id, proto::Status status,
                              const std::string& message, std::string& out) {
  proto::encode_response(static_cast<Opcode>(opcode), request_id, status,
                         proto::Response(proto::ErrorResp{message}), out);
}

proto::Status Dispatcher::hello(Session& s, const proto::HelloReq& req, proto::HelloResp& resp,
                                std::string& why) const {
  if (req.version != proto::kProtocolVersion) {
    why = "unsupported protocol version " + std::to_string(req.version) + ", server speaks 1";
    return proto::Status::kUnsupportedVersion;
  }
  const std::string* expected = nullptr;
  switch (req.role) {
    case Role::kBuyer:
      expected = &config_.client_token;
      break;
    case Role::kAdmin:
      expected = &config_.admin_token;
      if (expected->empty()) {
        why = "admin role is disabled (server started without --admin-token)";
        return proto::Status::kUnauthorized;
      }
      break;
    case Role::kOutbox:
      // The admin token opens the outbox role only when the operator asked for it.
      expected = config_.outbox_token.empty() && config_.outbox_accepts_admin_token
                     ? &config_.admin_token
                     : &config_.outbox_token;
      if (expected->empty()) {
        why = "outbox role is disabled (server started without --outbox-token)";
        return proto::Status::kUnauthorized;
      }
      break;
  }
  if (!token_equal(req.token, *expected)) {
    why = std::string("wrong token for role ") + (req.role == Role::kAdmin    ? "admin"
                                                  : req.role == Role::kOutbox ? "outbox"
                                                                              : "buyer");
    return proto::Status::kUnauthorized;
  }
  s.hello_done = true;
  s.role = req.role;
  resp.version = proto::kProtocolVersion;
  resp.frame_bytes_max = config_.frame_bytes_max;
  resp.inflight_max = config_.inflight_max;
  resp.idle_timeout_ms = config_.idle_timeout_ms;
  return proto::Status::kOk;
}

void Dispatcher::prefetch(const proto::FrameHeader& h, std::span<const uint8_t> body,
                          bool early) const {
  wire::Reader in(body);
  std::string_view sku, key;
  if (h.opcode == static_cast<uint16_t>(proto::Opcode::kClaim)) {  // ClaimReq: sku, user, key
    sku = in.view(proto::kSkuBytesMax);
    (void)in.view(proto::kUserBytesMax);
    key = in.view(proto::kKeyBytesMax);
  } else if (h.opcode == static_cast<uint16_t>(proto::Opcode::kReserve)) {
    (void)in.view(proto::kUserBytesMax);  // ReserveReq: user, key, ttl_ms, lines (sku, qty)...
    key = in.view(proto::kKeyBytesMax);
    (void)in.u32();
    if (in.u16() > 0) sku = in.view(proto::kSkuBytesMax);
  } else {
    return;
  }
  if (!in.ok()) return;
  if (early) {
    book_.prefetch_key(key);
    if (!sku.empty()) book_.prefetch_sku(sku);
  } else if (!sku.empty()) {
    book_.prefetch_sku_itself(sku);
  }
}

DispatchOutcome Dispatcher::handle(Session& session, const proto::FrameHeader& h,
                                   std::span<const uint8_t> body, int64_t now, bool writes_allowed,
                                   Changes& ch, std::string& out) {
  status_ = proto::Status::kInternal;
  DispatchOutcome o = decide(session, h, body, now, writes_allowed, ch, out);
  o.status = status_;
  return o;
}

DispatchOutcome Dispatcher::decide(Session& session, const proto::FrameHeader& h,
                                   std::span<const uint8_t> body, int64_t now, bool writes_allowed,
                                   Changes& ch, std::string& out) {
  const uint32_t id = h.request_id;
  const auto op = static_cast<Opcode>(h.opcode);
  const proto::OpInfo* rule = proto::op_info(h.opcode);  // its row in STOCKD_OPCODES
  // Before HELLO nothing but a HELLO is looked at: any other frame closes the connection.
  if (!session.hello_done && h.opcode != static_cast<uint16_t>(Opcode::kHello)) {
    error(h.opcode, id, proto::Status::kUnauthorized, "HELLO must be the first request", out);
    return {.close = true};
  }
  if (h.opcode != static_cast<uint16_t>(Opcode::kHello) && rule == nullptr) {
    char msg[48];
    std::snprintf(msg, sizeof msg, "unknown opcode 0x%04x", h.opcode);
    error(h.opcode, id, proto::Status::kUnknownOpcode, msg, out);
    return {};
  }
  if (h.is_response()) {
    error(h.opcode, id, proto::Status::kBadRequest, "response flag set on a request", out);
    return {.close = !session.hello_done};
  }
  if (stockd::Status bad = proto::decode_request(op, body, req_); !bad.ok()) {
    error(h.opcode, id, proto::Status::kBadRequest, bad.message(), out);
    return {.close = !session.hello_done};  // a HELLO that does not decode: nothing to talk
  }
  if (op == Opcode::kHello) {
    // An address out of allowance is not even checked: a guesser learns nothing.
    if (int64_t retry_ms = 0; guard_ != nullptr && guard_->locked(session.peer, now, retry_ms)) {
      error(h.opcode, id, proto::Status::kBusy,
            "too many failed HELLOs from this address; retry in " +
                std::to_string((retry_ms + 999) / 1000) + " s",
            out);
      return {.close = true, .hello_failures_to_log = guard_->failed(session.peer, now, false)};
    }
    proto::HelloResp resp;
    std::string why;  // a refused HELLO says why
    proto::Status st = hello(session, std::get<proto::HelloReq>(req_), resp, why);
    if (st != proto::Status::kOk) {
      error(h.opcode, id, st, why, out);
      DispatchOutcome o{.close = true};
      if (st == proto::Status::kUnauthorized && guard_ != nullptr) {
        o.hello_failures_to_log = guard_->failed(session.peer, now);
      }
      return o;
    }
    answer(op, id, st, resp, out);
    return {};
  }
  if (!rule->allows(session.role)) {
    error(h.opcode, id, proto::Status::kUnauthorized,
          std::string(proto::opcode_name(op)) + " is not allowed for this role", out);
    return {};
  }
  if (rule->writes && !writes_allowed) {
    error(h.opcode, id, proto::Status::kStorageUnavailable,
          "the store failed; state changes are refused until it recovers", out);
    return {};
  }
  switch (op) {
    case Opcode::kPing:
      answer(op, id, proto::Status::kOk, proto::PingResp{}, out);
      return {};
    case Opcode::kReserve: {
      proto::ReserveResp r;
      Verdict st = book_.reserve(std::get<proto::ReserveReq>(req_), now, r, ch);
      answer(op, id, st, std::move(r), out);
      return {};
    }
    case Opcode::kCommit:
    case Opcode::kRelease:
    case Opcode::kHoldGet: {
      const auto& hr = std::get<proto::HoldReq>(req_);
      if (hr.user.empty() && session.role == proto::Role::kBuyer) {
        error(h.opcode, id, proto::Status::kBadRequest,
              std::string(rule->label) + ": a buyer must name the hold's user", out);
        return {};
      }
      proto::HoldView v;
      Verdict st = op == Opcode::kCommit    ? book_.commit(hr.hold_id, now, v, ch, hr.user)
                   : op == Opcode::kRelease ? book_.release(hr.hold_id, now, v, ch, hr.user)
                                            : Verdict(book_.hold_get(hr.hold_id, v, hr.user));
      answer(op, id, st, std::move(v), out);
      return {};
    }
    case Opcode::kClaim: {
      proto::ClaimResp r;
      Verdict st = book_.claim(std::get<proto::ClaimReq>(req_), now, r, ch);
      answer(op, id, st, std::move(r), out);
      return {};
    }
    case Opcode::kSkuGet:
    case Opcode::kSaleClose: {
      proto::SkuView v;
      const std::string& sku = std::get<proto::SkuReq>(req_).sku;
      Verdict st = op == Opcode::kSkuGet ? Verdict(book_.sku_get(sku, v))
                                         : book_.sale_close(sku, now, v, ch);
      answer(op, id, st, std::move(v), out);
      return {};
    }
    case Opcode::kSkuList: {
      proto::SkuListResp r;
      // Paged by bytes too: header and list32 count, then SkuViews up to the frame limit.
      book_.sku_list(std::get<proto::SkuListReq>(req_), r,
                     config_.frame_bytes_max - proto::kHeaderBytes - 4);
      answer(op, id, proto::Status::kOk, std::move(r), out);
      return {};
    }
    case Opcode::kStats:  // the loop's counters too: the loop answers (Server::Impl::stats)
      return {.loop = true};
    case Opcode::kSkuSet: {
      proto::SkuView v;
      Verdict st = book_.sku_set(std::get<proto::SkuSetReq>(req_), now, v, ch);
      answer(op, id, st, std::move(v), out);
      return {};
    }
    case Opcode::kRestock: {
      proto::SkuView v;
      Verdict st = book_.restock(std::get<proto::RestockReq>(req_), now, v, ch);
      answer(op, id, st, std::move(v), out);
      return {};
    }
    case Opcode::kCodesLoad: {
      proto::CodesLoadResp r;
      Verdict st = book_.codes_load(std::get<proto::CodesLoadReq>(req_), now, r, ch);
      answer(op, id, st, std::move(r), out);
      return {};
    }
    case Opcode::kOutboxRead:  // the store's records and the feed's positions: the loop's
    case Opcode::kOutboxAck:
    case Opcode::kOutboxStatus:
      return {.loop = true};
    case Opcode::kHello:
      break;
  }
  error(h.opcode, id, proto::Status::kInternal, "unhandled opcode", out);
  return {};
}

}  // namespace stockd
