// stockd's binary protocol for stockbench: Ops into frames, frames into Replies.
#include <utility>

#include "codecs.h"
#include "stockd/protocol.h"

namespace stockd::bench {

namespace {

using proto::Opcode;

Opcode opcode_of(OpKind k) {
  switch (k) {
    case OpKind::kHello:
      return Opcode::kHello;
    case OpKind::kBuyNow:
    case OpKind::kReserve:
      return Opcode::kReserve;
    case OpKind::kCommit:
      return Opcode::kCommit;
    case OpKind::kRelease:
      return Opcode::kRelease;
    case OpKind::kClaim:
      return Opcode::kClaim;
    case OpKind::kQuery:
      return Opcode::kSkuGet;
  }
  return Opcode::kPing;
}

class StockdCodec final : public Codec {
 public:
  explicit StockdCodec(const Config& c) : c_(c) {}

  void encode(const Op& op, uint32_t id, std::string& out) override {
    const Opcode code = opcode_of(op.kind);
    switch (op.kind) {
      case OpKind::kHello:
        proto::encode_request(
            code, id, proto::HelloReq{proto::kProtocolVersion, c_.role, c_.token, "stockbench"},
            out);
        return;
      case OpKind::kBuyNow:
      case OpKind::kReserve: {
        proto::ReserveReq r;
        r.user = user_text(c_, op.user);
        if (op.key != 0) r.key = key_text(c_, op.key);
        r.ttl_ms = op.kind == OpKind::kBuyNow ? 0 : c_.hold_ttl_ms;
        r.lines.push_back({sku_text(c_, op.sku), op.qty});
        proto::encode_request(code, id, r, out);
        return;
      }
      case OpKind::kCommit:
      case OpKind::kRelease:
        proto::encode_request(code, id, proto::HoldReq{op.hold_id, user_text(c_, op.user)}, out);
        return;
      case OpKind::kClaim:
        proto::encode_request(code, id,
                              proto::ClaimReq{sku_text(c_, op.sku), user_text(c_, op.user),
                                              op.key != 0 ? key_text(c_, op.key) : std::string()},
                              out);
        return;
      case OpKind::kQuery:
        proto::encode_request(code, id, proto::SkuReq{sku_text(c_, op.sku)}, out);
        return;
    }
  }

  Take take(std::span<const uint8_t> in, const Op& op, uint32_t id, Reply& reply, size_t& consumed,
            std::string& why) override {
    proto::FrameDecode f = proto::decode_frame(in, limits_);
    if (f.kind == proto::DecodeKind::kNeedMore) return Take::kNeedMore;
    if (f.kind == proto::DecodeKind::kInvalid) {
      why = f.reason;
      return Take::kInvalid;
    }
    const auto status = static_cast<proto::Status>(f.header.status);
    Opcode code = opcode_of(op.kind);
    // A connection-level error frame (opcode 0, e.g. BUSY when over the connection limit)
    // answers whatever was first in flight.
    const bool conn_error = f.header.opcode == 0 && proto::is_error_status(status);
    if (!f.header.is_response() ||
        (!conn_error &&
         (f.header.request_id != id || f.header.opcode != static_cast<uint16_t>(code)))) {
      why = "answer out of order: got opcode " + std::to_string(f.header.opcode) + " id " +
            std::to_string(f.header.request_id) + ", expected " + proto::opcode_name(code) +
            " id " + std::to_string(id);
      return Take::kInvalid;
    }
    if (conn_error) code = Opcode{};
    auto body = proto::decode_response(code, status, f.body);
    if (!body.ok()) {
      why = body.status().message();
      return Take::kInvalid;
    }
    reply.status = f.header.status;
    fill(*body, reply);
    consumed = f.consumed;
    return Take::kReply;
  }

 private:
  static void fill(proto::Response& body, Reply& reply) {
    if (auto* r = std::get_if<proto::ReserveResp>(&body)) {
      reply.id = r->hold_id;
    } else if (auto* cl = std::get_if<proto::ClaimResp>(&body)) {
      reply.id = cl->order_id;
      reply.code = std::move(cl->code);
    } else if (auto* h = std::get_if<proto::HelloResp>(&body)) {
      reply.id = h->inflight_max;
    } else if (auto* e = std::get_if<proto::ErrorResp>(&body)) {
      reply.message = std::move(e->message);
    }
  }

  const Config& c_;
  proto::Limits limits_;
};

}  // namespace

std::string sku_text(const Config& c, uint32_t sku) {
  return c.skus_numbered ? c.sku_prefix + std::to_string(sku) : c.skus[sku];
}

std::string user_text(const Config& c, uint32_t user) {
  return "u" + c.run_id + "-" + std::to_string(user);
}

std::string key_text(const Config& c, uint64_t key) {
  return "k" + c.run_id + "-" + std::to_string(key);
}

std::unique_ptr<Codec> make_stockd_codec(const Config& c) {
  return std::make_unique<StockdCodec>(c);
}

}  // namespace stockd::bench
