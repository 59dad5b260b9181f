// One client connection. Owned by the loop; freed only in its close callback.
//
// Answers are appended to `out` as they are made, each with a mark naming the group whose
// durability it waits for. flush() writes the prefix whose groups are durable; `writing` keeps
// the bytes of the write in flight alive until its callback.
//
// What a peer can make a connection hold is bounded (Config): its incomplete frame (rbuf, under
// the read budget), its unwritten answers (out + writing, under output_bytes_max: past it the
// connection is not read), its unanswered requests (inflight_max), and its time: HELLO, a frame
// once started, a write that makes no progress, and silence each have a deadline.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "dispatch.h"
#include "linger.h"
#include "stockd/check.h"
#include "stockd/ring.h"
#include "tls.h"

namespace stockd {

class Connections;

struct Conn {
  struct Mark {
    uint64_t tag;         // group id the answer waits for
    uint64_t begin, end;  // absolute offsets of the answer in the stream of `out`
    uint16_t opcode;
    uint32_t request_id;
    uint64_t start_ns;  // when the request was read (uv_hrtime)
  };

  // The lifecycle, in order; only ever moves forward.
  enum class State : uint8_t {
    kOpen,       // reading and answering
    kFinishing,  // answers the requests it has, then closes (an error frame was queued)
    kLingering,  // stopping: answers sent, FIN sent; input is read and dropped until EOF
    kClosing,    // uv_close called; freed in the close callback
  };

  uv_tcp_t tcp{};               // tcp.data points back here
  Connections* home = nullptr;  // the table it is in (libuv callbacks find it here)
  State state = State::kOpen;
  bool refusal = false;  // ended before HELLO: lingers as one of Connections::kRefusalsMax
  std::unique_ptr<TlsSession> tls;  // with --tls-cert: every byte in and out passes through it
  Session session;
  std::string rbuf;         // the start of a frame not yet complete, kept for the next read
  size_t rbuf_counted = 0;  // rbuf's capacity as counted in Server::Impl::rbuf_bytes
  std::string out;          // encoded answers not yet handed to a write
  uint64_t out_base = 0;    // absolute offset of out[0]
  size_t out_counted = 0;   // out + writing as counted in Server::Impl::out_bytes
  Ring<Mark> marks;         // a ring: a pipeline of answers allocates nothing once it has room
  std::string writing;      // bytes of the write in flight
  uv_write_t wreq{};
  uv_shutdown_t sreq{};
  bool write_active = false;
  bool reading = false;
  bool in_flush_list = false;
  bool in_backlog = false;   // has complete frames kept in rbuf, to frame in a later turn
  bool eof_pending = false;  // TLS close_notify came with frames still kept: the end after them
  size_t slot = 0;           // its index in Connections::conns_
  // Connections::pending_: accepted, HELLO not yet done, oldest first (an intrusive list: the
  // eviction and the close are O(1) however many connections are open).
  bool in_pending = false;
  Conn* older_pending = nullptr;
  Conn* newer_pending = nullptr;
  bool deferred = false;    // a long-poll answer is pending; later frames wait for it
  uint32_t unanswered = 0;  // answers made but not yet written
  int64_t accepted_ms = 0;
  int64_t last_active_ms = 0;
  int64_t frame_started_ms = 0;   // first byte of the incomplete frame in rbuf; 0 if none
  Linger linger;                  // kLingering: when the socket may be closed
  int64_t write_progress_ms = 0;  // last time the write in flight was seen to move
  size_t write_queue_seen = 0;    // its unsent bytes then

  bool open() const { return state == State::kOpen; }
  bool closing() const { return state == State::kClosing; }
  size_t pending_out() const { return out.size() + writing.size(); }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
  uv_handle_t* handle() { return reinterpret_cast<uv_handle_t*>(&tcp); }

  // Records that `out` grew by one answer for (opcode, request_id) waiting on group `tag`.
  void mark_answer(uint64_t tag, uint64_t begin, uint16_t opcode, uint32_t request_id) {
    // Answers leave in request order: none may wait on an earlier group than the one before it.
    STOCKD_CHECK(marks.empty() || marks.back().tag <= tag, "answers are released in order");
    marks.push_back({tag, begin, out_base + out.size(), opcode, request_id, uv_hrtime()});
    ++unanswered;
  }
  // Replaces every answer waiting on a group after `durable` by STORAGE_UNAVAILABLE.
  void fail_unreleased(uint64_t durable);
};

}  // namespace stockd
