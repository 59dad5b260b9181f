// The sidecar's operations: read durable outbox records after a cursor (with long-poll),
// acknowledge up to a sequence number, report status; trim acknowledged records past retention.
#include <algorithm>

#include "server_impl.h"
#include "stockd/records.h"

namespace stockd {
namespace {

// Room kept in an OUTBOX_READ answer for its header and fixed fields.
constexpr size_t kOutboxFrameSlackBytes = 1024;
constexpr size_t kOutboxTrimPerTickMax = 10000;

size_t approx_bytes(const proto::OutboxRecord& r) {
  size_t n = 64 + r.user.size() + r.key.size();
  for (const auto& l : r.lines) n += 8 + l.sku.size();
  for (const auto& c : r.codes) n += 4 + c.sku.size() + c.code.size();
  return n;
}

}  // namespace

void Server::Impl::outbox_read(const proto::OutboxReadReq& req, proto::OutboxReadResp& resp) {
  resp.head_seq = outbox_durable_head;
  resp.acked_seq = outbox_acked;
  resp.first_seq = outbox_first <= outbox_durable_head ? outbox_first : 0;
  uint64_t from = std::max(req.after_seq + 1, outbox_first);
  if (from > outbox_durable_head || !store) return;  // no store: being reopened after a failure
  size_t budget = config.frame_bytes_max - kOutboxFrameSlackBytes;
  std::string why;
  storage::Status s = store->scan(
      std::string{rec::kTagOutbox, '/'},
      [&](std::string_view, std::string_view v) {
        proto::OutboxRecord r;
        if (!rec::decode(v, r, why)) return false;
        if (r.seq > outbox_durable_head) return false;
        size_t n = approx_bytes(r);
        if (n > budget && !resp.records.empty()) return false;
        budget -= std::min(budget, n);
        resp.records.push_back(std::move(r));
        return resp.records.size() < req.max_records;
      },
      rec::outbox_key(from));
  if (!s.ok() || !why.empty()) {
    log->error("outbox read failed at seq {}: {}", from, s.ok() ? why : s.message());
    resp.records.clear();
  }
}

// Answers OUTBOX_READ, OUTBOX_ACK and OUTBOX_STATUS from connection `c` (a read with nothing to
// return waits as a long poll of `c`).
DispatchOutcome Server::Impl::outbox(Conn* c, const proto::FrameHeader& h,
                                     const proto::Request& req, std::string& out) {
  auto op = static_cast<proto::Opcode>(h.opcode);
  if (!store || store_failed) {
    Dispatcher::encode_error(h.opcode, h.request_id, proto::Status::kStorageUnavailable,
                             store_failed ? "the store failed; the outbox is unavailable until it "
                                            "recovers"
                                          : "durability is off: there is no outbox",
                             out);
    return {.status = proto::Status::kStorageUnavailable};
  }
  if (op == proto::Opcode::kOutboxRead) {
    const auto& r = std::get<proto::OutboxReadReq>(req);
    proto::OutboxReadResp resp;
    outbox_read(r, resp);
    if (resp.records.empty() && r.wait_ms > 0 && r.after_seq >= outbox_durable_head) {
      polls.push_back({c, h, r, wall_ms() + r.wait_ms});
      return {.deferred = true};
    }
    proto::encode_response(op, h.request_id, proto::Status::kOk, proto::Response(std::move(resp)),
                           out);
    return {.status = proto::Status::kOk};
  }
  if (op == proto::Opcode::kOutboxAck) {
    uint64_t upto = std::get<proto::OutboxAckReq>(req).upto_seq;
    if (upto > outbox_durable_head) {
      Dispatcher::encode_error(h.opcode, h.request_id, proto::Status::kBadRequest,
                               "ack " + std::to_string(upto) + " is beyond the outbox head " +
                                   std::to_string(outbox_durable_head),
                               out);
      return {.status = proto::Status::kBadRequest};
    }
    if (upto > outbox_acked) {
      outbox_acked = upto;
      changes.meta = true;  // the meta row carries outbox_acked
    }
  }
  proto::OutboxStatusResp st{outbox_durable_head, outbox_acked,
                             outbox_first <= outbox_durable_head ? outbox_first : 0};
  proto::encode_response(op, h.request_id, proto::Status::kOk, proto::Response(st), out);
  return {.status = proto::Status::kOk};
}

// Answers long polls that now have records (or, with expired_only, whose wait ran out).
void Server::Impl::answer_polls(bool expired_only) {
  if (polls.empty()) return;
  int64_t now = wall_ms();
  std::vector<Poll> keep;
  std::vector<Poll> ready;
  for (auto& p : polls) {
    bool has = outbox_durable_head > p.req.after_seq;
    if ((has && !expired_only) || now >= p.deadline_ms || stopping) {
      ready.push_back(p);
    } else {
      keep.push_back(p);
    }
  }
  polls.swap(keep);
  for (auto& p : ready) {
    Conn* c = p.conn;
    proto::OutboxReadResp resp;
    outbox_read(p.req, resp);
    uint64_t begin = c->out_base + c->out.size();
    proto::encode_response(proto::Opcode::kOutboxRead, p.header.request_id, proto::Status::kOk,
                           proto::Response(std::move(resp)), c->out);
    c->mark_answer(durable_seq, begin, p.header.opcode, p.header.request_id);
    c->deferred = false;
    c->last_active_ms = now;  // the idle clock restarts once the poll is answered
    account_out(c);
    mark_flush(c);
    if (c->open() && !stopping) add_backlog(c);  // frames that waited behind the poll
  }
}

// Deletes acknowledged records older than the retention, oldest first, bounded per tick.
void Server::Impl::trim_outbox(int64_t now) {
  if (!store) return;
  for (size_t n = 0; n < kOutboxTrimPerTickMax && outbox_first <= outbox_acked; ++n) {
    std::string v;
    bool found = false;
    if (!store->get(rec::outbox_key(outbox_first), v, found).ok()) return;
    proto::OutboxRecord r;
    std::string why;
    if (found) {
      if (!rec::decode(v, r, why)) return;
      if (r.at_ms + config.outbox_retention_ms > now) return;
      extra_deletes.push_back(rec::outbox_key(outbox_first));
    }
    ++outbox_first;
  }
}

}  // namespace stockd
