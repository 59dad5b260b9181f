// The outbox feed: the one owner of the outbox's positions (head, acked, first) and its long
// polls. The sidecar's operations (OUTBOX_READ, OUTBOX_ACK, OUTBOX_STATUS) are answered here
// from the log: each record is the log entry that decided it (stockd/decisions.h), found
// through an index of the retained log groups that hold records. The loop tells it when a group
// holding records is sealed and when it becomes durable; an ack is logged by the book; the
// checkpointer trims the log and says how far.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dispatch.h"
#include "stockd/config.h"
#include "stockd/persist.h"
#include "stockd/protocol.h"
#include "stockd/ring.h"
#include "stockd/store.h"

namespace stockd {

struct Conn;

class OutboxFeed {
 public:
  struct Poll {  // an OUTBOX_READ waiting for records
    Conn* conn;
    proto::FrameHeader header;
    proto::OutboxReadReq req;
    int64_t deadline_ms;
  };

  OutboxFeed(const Config& config, std::shared_ptr<spdlog::logger> log)
      : config_(config), log_(std::move(log)) {}

  // After recovery: the positions the store kept, `head` the last record written, the retained
  // groups with records. `store` may be null (no durability, or the store is being reopened).
  void reset(storage::Store* store, uint64_t acked, uint64_t first, uint64_t head,
             std::vector<LogGroupRef> groups);
  // A group with records was sealed (readable once durable).
  void add_group(const LogGroupRef& g) { groups_.push_back(g); }
  // The checkpointer trimmed the log below `lsn`; `first` is the lowest record retained.
  void trimmed(uint64_t lsn, uint64_t first);
  void set_store(storage::Store* store) { store_ = store; }

  // Answers one outbox request of `conn` into `out`; a read with nothing to return and time to
  // wait becomes a long poll (deferred). `acked_moved`: the meta row must carry the new ack.
  DispatchOutcome handle(Conn* conn, const proto::FrameHeader& h, const proto::Request& req,
                         bool store_failed, std::string& out, bool& acked_moved);
  // Records after req.after_seq, up to the durable head, within a frame.
  void read(const proto::OutboxReadReq& req, proto::OutboxReadResp& resp) const;

  // A group holding records up to `head` was sealed. durable(): the log is synced up to
  // `synced_lsn` (in interval mode the periodic sync, not the write, makes a group durable: a
  // record read by the sidecar before it could be lost to a power cut, while SQL keeps it);
  // true when long polls may now have records.
  void sealed(uint64_t head) { inflight_head_ = head; }
  bool durable(uint64_t synced_lsn);
  // Long polls to answer now: those with records (unless expired_only), past their wait, or all.
  std::vector<Poll> take_ready(bool expired_only, bool all, int64_t now);
  void forget(const Conn* conn);  // the connection closed

  uint64_t head() const { return durable_head_; }
  uint64_t acked() const { return acked_; }
  uint64_t first() const { return first_; }
  // `first` as reported: 0 when no record is retained.
  uint64_t first_retained() const { return first_ <= durable_head_ ? first_ : 0; }

 private:
  const Config& config_;
  std::shared_ptr<spdlog::logger> log_;
  storage::Store* store_ = nullptr;
  uint64_t durable_head_ = 0;   // highest seq known durable
  uint64_t inflight_head_ = 0;  // highest seq in the group being written
  uint64_t acked_ = 0;
  uint64_t first_ = 1;
  std::vector<Poll> polls_;
  Ring<LogGroupRef> groups_;  // retained log groups with records, in lsn (and seq) order
};

}  // namespace stockd
