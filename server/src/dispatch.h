// Dispatch: one decoded frame in, one encoded answer out. decode -> authorize -> apply -> encode,
// one registry row per opcode. No I/O: the loop owns sockets, this owns the meaning of a request.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hello_guard.h"
#include "stockd/book.h"
#include "stockd/config.h"
#include "stockd/protocol.h"

namespace stockd {

struct Session {  // per connection
  bool hello_done = false;
  proto::Role role = proto::Role::kBuyer;
  PeerAddr peer;  // where it connected from (failed HELLOs are counted per address)
};

struct DispatchOutcome {
  bool close = false;  // close the connection after sending the answer
  // A request the loop answers itself (STATS, OUTBOX_*: they read the loop and the store),
  // decoded and allowed: Dispatcher::request() holds it; nothing was appended to `out`.
  bool loop = false;
  bool deferred = false;               // no answer yet (the loop answers later: outbox long-poll)
  uint64_t hello_failures_to_log = 0;  // failed HELLOs of this peer's address to log now
  proto::Status status = proto::Status::kOk;  // of the answer appended (for metrics)
};

class Dispatcher {
 public:
  // `guard` (optional) limits failed HELLOs per address.
  Dispatcher(Book& book, const Config& config, HelloGuard* guard = nullptr);

  // Handles one framed request. Appends exactly one answer frame to `out`, unless the outcome
  // says `loop` (the caller answers it from request()). `writes_allowed` false (the store
  // failed) refuses state changes with STORAGE_UNAVAILABLE.
  DispatchOutcome handle(Session& session, const proto::FrameHeader& header,
                         std::span<const uint8_t> body, int64_t now, bool writes_allowed,
                         Changes& changes, std::string& out);

  // A hint, no effect: a RESERVE's or CLAIM's idempotency key is looked up first, in an index
  // of millions (a cache miss); this starts fetching its slot. Called for the frames after the
  // one being handled, so that their misses overlap its work. Anything malformed is ignored
  // (handle() says what is wrong with it).
  // `early` (frames further ahead): the key's slot and the first SKU's slot; else (the next
  // frame, its slots fetched by an early call): the SKU itself.
  void prefetch(const proto::FrameHeader& header, std::span<const uint8_t> body, bool early) const;

  // The request just handled, decoded (for an outcome with `loop` set).
  const proto::Request& request() const { return req_; }

  // Answer for a frame that could not be framed at all (then the connection closes).
  static void encode_error(uint16_t opcode, uint32_t request_id, proto::Status status,
                           const std::string& message, std::string& out);

 private:
  DispatchOutcome decide(Session& session, const proto::FrameHeader& header,
                         std::span<const uint8_t> body, int64_t now, bool writes_allowed,
                         Changes& changes, std::string& out);
  template <class Resp>
  void answer(proto::Opcode op, uint32_t id, const Verdict& v, Resp&& resp, std::string& out);
  void error(uint16_t opcode, uint32_t id, proto::Status st, const std::string& why,
             std::string& out);
  proto::Status hello(Session& s, const proto::HelloReq& req, proto::HelloResp& resp,
                      std::string& why) const;
  Book& book_;
  const Config& config_;
  HelloGuard* guard_;
  proto::Status status_ = proto::Status::kOk;  // of the answer being made
  proto::Request req_;  // each request is decoded into this one, reusing its buffers
};

}  // namespace stockd
