// The sidecar's operations: read durable outbox records after a cursor (with long-poll),
// acknowledge up to a sequence number, report status; trim acknowledged records past retention.
#include "outbox_feed.h"

#include <algorithm>

#include "stockd/decisions.h"

namespace stockd {

int64_t wall_ms();  // server.cc

namespace {

// Room kept in an OUTBOX_READ answer for its header and fixed fields.
constexpr size_t kOutboxFrameSlackBytes = 1024;

size_t approx_bytes(const proto::OutboxRecord& r) {
  size_t n = 64 + r.user.size() + r.key.size();
  for (const auto& l : r.lines) n += 8 + l.sku.size();
  for (const auto& c : r.codes) n += 4 + c.sku.size() + c.code.size();
  return n;
}

}  // namespace

void OutboxFeed::reset(storage::Store* store, uint64_t acked, uint64_t first, uint64_t head,
                       std::vector<LogGroupRef> groups) {
  store_ = store;
  acked_ = acked;
  first_ = first;
  durable_head_ = inflight_head_ = head;
  groups_.clear();
  for (const LogGroupRef& g : groups) groups_.push_back(g);
}

void OutboxFeed::trimmed(uint64_t lsn, uint64_t first) {
  while (!groups_.empty() && groups_.front().lsn < lsn) groups_.pop_front();
  first_ = std::max(first_, first);
}

void OutboxFeed::read(const proto::OutboxReadReq& req, proto::OutboxReadResp& resp) const {
  resp.head_seq = durable_head_;
  resp.acked_seq = acked_;
  resp.first_seq = first_retained();
  // (after_seq + 1 would wrap at the top: after the last possible seq there is nothing.)
  if (req.after_seq == UINT64_MAX) return;
  const uint64_t from = std::max(req.after_seq + 1, first_);
  if (from > durable_head_ || store_ == nullptr) return;  // no store: being reopened
  // The first group whose records reach `from`.
  auto g = std::upper_bound(groups_.begin(), groups_.end(), from,
                            [](uint64_t seq, const LogGroupRef& r) { return seq < r.end_seq; });
  if (g == groups_.end()) return;
  size_t budget = config_.frame_bytes_max - kOutboxFrameSlackBytes;
  rec::GroupReader reader;
  rec::Decision d;
  Status s = store_->scan(
      std::string{rec::kTagLog, '/'},
      [&](std::string_view, std::string_view v) {
        if (!reader.open(v)) return false;
        uint64_t seq = reader.first_outbox_seq();
        while (reader.next(d)) {
          if (!d.makes_record()) continue;
          const uint64_t this_seq = seq++;
          if (this_seq < from) continue;
          if (this_seq > durable_head_) return false;
          proto::OutboxRecord r;
          rec::outbox_record(d, this_seq, r);
          const size_t n = approx_bytes(r);
          if (n > budget && !resp.records.empty()) return false;
          budget -= std::min(budget, n);
          resp.records.push_back(std::move(r));
          if (resp.records.size() >= req.max_records) return false;
        }
        if (!reader.status().ok()) return false;
        return seq <= durable_head_;
      },
      rec::log_key(g->lsn));
  if (s.ok()) s = reader.status();
  if (!s.ok()) {
    log_->error("outbox read failed at seq {}: {}", from, s.message());
    resp.records.clear();
  }
}

DispatchOutcome OutboxFeed::handle(Conn* conn, const proto::FrameHeader& h,
                                   const proto::Request& req, bool store_failed, std::string& out,
                                   bool& acked_moved) {
  acked_moved = false;
  auto op = static_cast<proto::Opcode>(h.opcode);
  if (store_ == nullptr || store_failed) {
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
    read(r, resp);
    if (resp.records.empty() && r.wait_ms > 0 && r.after_seq >= durable_head_) {
      polls_.push_back({conn, h, r, wall_ms() + r.wait_ms});
      return {.deferred = true};
    }
    proto::encode_response(op, h.request_id, proto::Status::kOk, proto::Response(std::move(resp)),
                           out);
    return {.status = proto::Status::kOk};
  }
  if (op == proto::Opcode::kOutboxAck) {
    uint64_t upto = std::get<proto::OutboxAckReq>(req).upto_seq;
    if (upto > durable_head_) {
      Dispatcher::encode_error(h.opcode, h.request_id, proto::Status::kBadRequest,
                               "ack " + std::to_string(upto) + " is beyond the outbox head " +
                                   std::to_string(durable_head_),
                               out);
      return {.status = proto::Status::kBadRequest};
    }
    if (upto > acked_) {
      acked_ = upto;
      acked_moved = true;  // the meta row carries it
    }
  }
  proto::OutboxStatusResp st{durable_head_, acked_, first_retained()};
  proto::encode_response(op, h.request_id, proto::Status::kOk, proto::Response(st), out);
  return {.status = proto::Status::kOk};
}

bool OutboxFeed::durable(uint64_t synced_lsn) {
  if (inflight_head_ <= durable_head_) return false;
  // The newest group with records that the sync covers (the last one in sync mode; in
  // interval mode at most the groups of one interval are newer).
  uint64_t head = durable_head_;
  for (size_t i = groups_.size(); i-- > 0;) {
    if (groups_[i].lsn <= synced_lsn) {
      head = std::max(head, groups_[i].end_seq - 1);
      break;
    }
  }
  head = std::min(head, inflight_head_);
  if (head <= durable_head_) return false;
  durable_head_ = head;
  return true;
}

std::vector<OutboxFeed::Poll> OutboxFeed::take_ready(bool expired_only, bool all, int64_t now) {
  std::vector<Poll> ready;
  if (polls_.empty()) return ready;
  std::erase_if(polls_, [&](const Poll& p) {
    const bool has = durable_head_ > p.req.after_seq;
    if ((has && !expired_only) || now >= p.deadline_ms || all) {
      ready.push_back(p);
      return true;
    }
    return false;
  });
  return ready;
}

void OutboxFeed::forget(const Conn* conn) {
  std::erase_if(polls_, [conn](const Poll& p) { return p.conn == conn; });
}

}  // namespace stockd
