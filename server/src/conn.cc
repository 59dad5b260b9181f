// Connection I/O on the loop thread: accept, read and frame, answer, write in order, and the
// bounds a peer meets (slots, deadlines, buffers, a fair share of each turn).
#include <algorithm>

#include "connections.h"

namespace stockd {
namespace {

// One connection's share of a loop turn: answer bytes made before the others get theirs (and
// Connections::kTurnFramesMax frames). A pipeline of the most expensive request waits for the
// next turn past this.
constexpr size_t kTurnOutBytesMax = 256 * 1024;
// A group's share: past this many decisions (or bytes of log entries) the filling group takes
// no more this turn, as leveldb caps a write group, so that one group's write (and the wait of
// every answer in it) stays bounded whatever a thousand pipelines send at once.
constexpr uint32_t kGroupEntriesMax = 16384;
constexpr size_t kGroupBytesMax = 4 << 20;

// No more decisions fit the filling group until it is sealed.
bool group_full(const Changes& group) {
  return group.entry_count >= kGroupEntriesMax || group.entries.size() >= kGroupBytesMax;
}
// Room for answers in flight a connection keeps when it has none: a burst's is given back.
constexpr size_t kMarksKeptIdle = 256;

// The few bytes a TLS session has to say before the socket closes (an alert, close_notify), in
// one try: best effort, since a peer that does not read has no claim on them.
void send_tls_goodbye(Conn* c) {
  std::string out;
  c->tls->take_output(out);
  uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
  if (!out.empty()) (void)uv_try_write(c->stream(), &b, 1);
}
}  // namespace

// Answers that waited for a failed write say so, except those that depend on no state: HELLO's
// (the login took effect either way), PING's and the connection-level error frames (opcode 0).
void Conn::fail_unreleased(uint64_t durable) {
  auto first =
      std::find_if(marks.begin(), marks.end(), [&](const Mark& m) { return m.tag > durable; });
  if (first == marks.end()) return;
  const uint64_t tail_base = first->begin;
  const std::string tail = out.substr(tail_base - out_base);
  out.resize(tail_base - out_base);
  for (auto it = first; it != marks.end(); ++it) {
    const size_t from = it->begin - tail_base, size = it->end - it->begin;
    it->begin = out_base + out.size();
    const auto op = static_cast<proto::Opcode>(it->opcode);
    if (it->opcode == 0 || op == proto::Opcode::kHello || op == proto::Opcode::kPing) {
      out.append(tail, from, size);
    } else {
      Dispatcher::encode_error(it->opcode, it->request_id, proto::Status::kStorageUnavailable,
                               "the store failed before this answer was durable; nothing of it "
                               "was kept",
                               out);
    }
    it->end = out_base + out.size();
    it->tag = durable;
  }
}

// ---------------------------------------------------------------------------------------------
// Accept, slots and the lifecycle.

void Connections::accept(uv_stream_t* listener) {
  auto* c = new Conn();
  uv_tcp_init(&loop_, &c->tcp);
  c->tcp.data = c;
  c->home = this;
  if (uv_accept(listener, c->stream()) != 0) {
    uv_close(c->handle(), [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (tls_ctx_) c->tls = std::make_unique<TlsSession>(*tls_ctx_);
  sockaddr_storage peer{};
  int peer_len = sizeof peer;
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    c->session.peer = peer_addr(peer);
  }
  c->accepted_ms = c->last_active_ms = wall_ms();
  c->slot = conns_.size();
  conns_.push_back(c);
  link_pending(c);
  ++hello_pending_;
  // Descriptors are bounded: authenticated slots plus slots for peers still to say HELLO (and
  // kRefusalsMax refusals lingering).
  if (conns_.size() - refusals_ > size_t{config_.connections_max} + config_.hello_pending_max) {
    ++rejected_total_;
    answer_then_close(
        c, 0, proto::Status::kBusy,
        "too many connections (" + std::to_string(config_.connections_max) + "); try again later");
    mark_flush(c);
    return;
  }
  // Peers that never finish HELLO cannot hold the door: the oldest of them makes room. A real
  // client says HELLO within a round trip, so it is never the oldest for long.
  if (hello_pending_ > config_.hello_pending_max) evict_oldest_pending();
  ++accepted_total_;
  start_reading(c);
}

void Connections::link_pending(Conn* c) {
  c->in_pending = true;
  c->older_pending = pending_newest_;
  c->newer_pending = nullptr;
  (pending_newest_ != nullptr ? pending_newest_->newer_pending : pending_oldest_) = c;
  pending_newest_ = c;
}

void Connections::unlink_pending(Conn* c) {
  if (!c->in_pending) return;
  (c->older_pending != nullptr ? c->older_pending->newer_pending : pending_oldest_) =
      c->newer_pending;
  (c->newer_pending != nullptr ? c->newer_pending->older_pending : pending_newest_) =
      c->older_pending;
  c->in_pending = false;
  c->older_pending = c->newer_pending = nullptr;
}

// The oldest connection still open without HELLO: the head of the pending list (those that said
// HELLO or ended are taken off it as they are met).
void Connections::evict_oldest_pending() {
  while (Conn* c = pending_oldest_) {
    unlink_pending(c);
    if (c->open() && !c->session.hello_done) {
      ++metrics_.hello_evictions;
      answer_then_close(c, 0, proto::Status::kBusy,
                        "too many connections waiting for HELLO (--hello-pending-max); the "
                        "oldest is closed");
      mark_flush(c);
      return;
    }
  }
}

// Every state change goes through here, so that the slot counts follow the lifecycle.
void Connections::set_state(Conn* c, Conn::State to) {
  if (c->state == to) return;
  if (c->state == Conn::State::kOpen && !c->session.hello_done) --hello_pending_;
  c->state = to;
}

// One error frame (after the answers before it); then the connection lingers and closes.
void Connections::answer_then_close(Conn* c, uint32_t request_id, proto::Status st,
                                    const std::string& why) {
  uint64_t begin = c->out_base + c->out.size();
  Dispatcher::encode_error(0, request_id, st, why, c->out);
  mark(c, commit_.filling(), begin, 0, request_id);
  finish_conn(c);
}

// No more requests are read; the answers made are sent, then the connection lingers and closes.
void Connections::finish_conn(Conn* c) {
  if (!c->open()) return;
  set_state(c, Conn::State::kFinishing);
  stop_reading(c);
  if (!c->rbuf.empty()) {
    std::string().swap(c->rbuf);
    account_rbuf(c);
  }
  // A peer ended before HELLO (refused at the cap, evicted, or by its own bad input) lingers
  // outside the slots, as one of at most kRefusalsMax; past them it is closed at once.
  if (!c->session.hello_done) {
    if (refusals_ >= kRefusalsMax) {
      close_conn(c);
      return;
    }
    c->refusal = true;
    ++refusals_;
  }
}

// Once a finishing (or, while stopping_, any) connection has written every answer: FIN, then
// read and drop until the peer closes or its Linger is over (sweep closes it then).
void Connections::linger_if_done(Conn* c) {
  if (c->closing() || c->state == Conn::State::kLingering) return;
  if (c->state == Conn::State::kOpen && !stopping_) return;
  if (!c->marks.empty() || c->write_active || c->deferred) return;
  set_state(c, Conn::State::kLingering);
  c->linger.start(wall_ms());
  if (c->tls) {  // close_notify, so the client sees a clean end (best effort: a few bytes)
    c->tls->close_notify();
    send_tls_goodbye(c);
  }
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, c->stream(), [](uv_shutdown_t* r, int status) {
        auto* c = static_cast<Conn*>(r->data);
        if (status < 0 && !c->closing()) c->home->close_conn(c);
      }) != 0) {
    close_conn(c);
    return;
  }
  start_reading(c);
}

void Connections::close_conn(Conn* c) {
  if (c->closing()) return;
  set_state(c, Conn::State::kClosing);
  host_.closing(c);
  uv_close(c->handle(), [](uv_handle_t* h) {
    auto* c = static_cast<Conn*>(h->data);
    c->home->conn_closed(c);
  });
}

void Connections::conn_closed(Conn* c) {
  rbuf_bytes_ -= c->rbuf_counted;
  out_bytes_ -= c->out_counted;
  if (c->session.hello_done) --authed_;
  if (c->refusal) --refusals_;
  unlink_pending(c);
  conns_[c->slot] = conns_.back();
  conns_[c->slot]->slot = c->slot;
  conns_.pop_back();
  if (c->in_flush_list) std::erase(flush_list_, c);
  if (c->in_backlog) std::erase(backlog_, c);
  delete c;
  host_.closed();
}

// Deadlines, once per tick: HELLO, a frame once begun, a write that does not move, lingering,
// and silence with nothing outstanding.
void Connections::sweep(int64_t now) {
  const auto over = [now](int64_t since, uint32_t ms) {
    return since != 0 && now - since >= static_cast<int64_t>(ms);
  };
  for (Conn* c : std::vector<Conn*>(conns_)) {
    if (c->closing()) continue;
    if (c->state == Conn::State::kLingering) {
      if (c->linger.over(c->stream(), now, config_.write_timeout_ms)) {
        if (c->linger.stuck()) {
          ++metrics_.write_timeouts;
          log_->debug("closing a finished connection whose last answers did not move for {} ms",
                      config_.write_timeout_ms);
        }
        close_conn(c);
      }
      continue;
    }
    if (c->write_active) {
      const size_t queued = uv_stream_get_write_queue_size(c->stream());
      if (queued < c->write_queue_seen) {
        c->write_queue_seen = queued;
        c->write_progress_ms = now;
      } else if (over(c->write_progress_ms, config_.write_timeout_ms)) {
        ++metrics_.write_timeouts;
        log_->debug("closing a connection whose answers did not move for {} ms",
                    now - c->write_progress_ms);
        close_conn(c);
        continue;
      }
    }
    if (!c->session.hello_done && over(c->accepted_ms, config_.hello_timeout_ms)) {
      ++metrics_.hello_timeouts;
      close_conn(c);
    } else if (c->reading && over(c->frame_started_ms, config_.frame_timeout_ms)) {
      ++metrics_.frame_timeouts;
      close_conn(c);
    } else if (!c->write_active && c->marks.empty() && !c->deferred && !c->in_backlog &&
               over(c->last_active_ms, config_.idle_timeout_ms)) {
      ++metrics_.idle_timeouts;
      close_conn(c);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading and framing.

// Every read lands in the loop's one read buffer; on_read keeps what a frame still needs.
void Connections::start_reading(Conn* c) {
  if (c->reading || c->closing()) return;
  c->reading = true;
  uv_read_start(
      c->stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        Connections* self = static_cast<Conn*>(h->data)->home;
        buf->base = self->read_buf_;
        buf->len = sizeof self->read_buf_;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* c = static_cast<Conn*>(s->data);
        c->home->on_read(c, n, buf);
      });
}

void Connections::stop_reading(Conn* c) {
  if (!c->reading || c->closing()) return;
  c->reading = false;
  uv_read_stop(c->stream());
}

void Connections::on_read(Conn* c, ssize_t nread, const uv_buf_t* buf) {
  if (nread > 0 && c->tls && (c->open() || c->state == Conn::State::kLingering)) {
    // Decrypt first; a handshake answers at once (flush sends what the session has to say).
    tls_plain_.clear();
    bool peer_done = false;
    const Status s = c->tls->feed({buf->base, static_cast<size_t>(nread)}, tls_plain_, peer_done);
    if (!s.ok()) {
      ++metrics_.tls_errors;
      log_->debug("closing a TLS connection: {}", s.message());
      // A failed handshake: the alert OpenSSL wrote (a certificate refused or missing, a
      // protocol it does not speak), so that the client can tell a refusal from a lost
      // connection and does not redial. Best effort, a few bytes: input the peer sent after
      // it (a TLS 1.3 client's HELLO) makes the close a reset, which Linux delivers after them.
      if (!c->tls->handshake_done()) send_tls_goodbye(c);
      close_conn(c);
      return;
    }
    if (c->tls->has_output()) flush(c);
    if (!tls_plain_.empty()) take_input(c, tls_plain_.data(), tls_plain_.size());
    // close_notify: the peer sends no more. It may come in the same read as frames kept for a
    // later turn (past a turn's share, behind a long poll): the end waits for them, as a plain
    // connection's EOF waits in the socket while reading is stopped.
    // A connection already finishing (its last answer an error, e.g. a refused HELLO) closes
    // once that answer is out: the close_notify changes nothing.
    if (peer_done && c->open() && !c->reading && !stopping_) {
      c->eof_pending = true;
    } else if (peer_done && c->state != Conn::State::kFinishing) {
      on_eof(c);
    }
    return;
  }
  if (nread == UV_EOF) return on_eof(c);
  if (nread < 0) {
    close_conn(c);  // a reset: answers still in flight are dropped with the socket
    return;
  }
  take_input(c, buf->base, static_cast<size_t>(nread));
}

void Connections::on_eof(Conn* c) {
  if (c->closing()) return;
  if (c->open() && (!c->marks.empty() || c->write_active)) {
    finish_conn(c);  // the peer half-closed: it still gets the answers to what it sent
    linger_if_done(c);
    return;
  }
  close_conn(c);
}

// Plaintext from the peer: frames what is complete, keeps the rest in rbuf.
void Connections::take_input(Conn* c, const char* data, size_t n) {
  if (n == 0 || !c->open() || stopping_) return;  // finishing or lingering: input dropped
  const int64_t now = wall_ms();
  c->last_active_ms = now;
  size_t used = 0;
  const bool had_partial = !c->rbuf.empty();
  Stop stop;
  if (!had_partial) {  // common case: parse straight from the read buffer
    stop = process(c, {reinterpret_cast<const uint8_t*>(data), n}, used);
    if (used < n && c->open()) c->rbuf.assign(data + used, n - used);
  } else {
    c->rbuf.append(data, n);
    stop = process(c, {reinterpret_cast<const uint8_t*>(c->rbuf.data()), c->rbuf.size()}, used);
    c->rbuf.erase(0, used);
  }
  // The frame deadline runs from the first byte of the frame now incomplete.
  if (c->rbuf.empty()) {
    c->frame_started_ms = 0;
  } else if (used > 0 || !had_partial) {
    c->frame_started_ms = now;
  }
  after_process(c, stop);
  account_rbuf(c);
}

// Frames what `c` kept of its input, in a later turn (backlog_) or after answers left.
void Connections::process_kept(Conn* c) {
  size_t used = 0;
  Stop stop = process(c, {reinterpret_cast<const uint8_t*>(c->rbuf.data()), c->rbuf.size()}, used);
  c->rbuf.erase(0, used);
  if (used > 0) c->frame_started_ms = c->rbuf.empty() ? 0 : wall_ms();
  after_process(c, stop);
  account_rbuf(c);
}

// Reads again only when everything kept was framed: a connection holds at most one read of
// input beyond the frame it waits for.
void Connections::after_process(Conn* c, Stop stop) {
  if (!c->open()) return;
  if (stop == Stop::kQuota) add_backlog(c);
  if (stop == Stop::kNeedMore && !stopping_) {
    if (c->eof_pending) {
      c->eof_pending = false;
      return on_eof(c);
    }
    start_reading(c);
  } else {
    stop_reading(c);
  }
}

void Connections::add_backlog(Conn* c) {
  if (c->in_backlog) return;
  c->in_backlog = true;
  backlog_.push_back(c);
  start_backlog_idle();
}

void Connections::start_backlog_idle() {
  uv_idle_start(&backlog_idle_,
                [](uv_idle_t* h) { static_cast<Connections*>(h->data)->run_backlog(); });
}

// Before the next poll (an active idle handle makes it not block): each connection with kept
// input gets another share of the turn. The check phase then seals the group and flushes.
void Connections::run_backlog() {
  std::vector<Conn*> work;
  work.swap(backlog_);
  for (Conn* c : work) {
    c->in_backlog = false;
    if (c->open() && !stopping_) process_kept(c);
  }
  // The idle handle stays active until end_of_turn has sealed and flushed what was just
  // answered: stopping it here would let the next poll block with those answers unsent.
}

// Incomplete frames held by all connections stay under --read-buffer-budget. Past it the hogs
// go, not the newcomer: unauthenticated first, then the largest, then the oldest partial frame.
void Connections::account_rbuf(Conn* c) {
  if (c->rbuf.empty() && c->rbuf.capacity() > sizeof read_buf_) std::string().swap(c->rbuf);
  const size_t held = c->rbuf.empty() ? 0 : c->rbuf.capacity();
  rbuf_bytes_ = rbuf_bytes_ - c->rbuf_counted + held;
  c->rbuf_counted = held;
  while (rbuf_bytes_ > config_.read_buffer_budget) {
    Conn* hog = nullptr;
    for (Conn* o : conns_) {
      if (o->rbuf_counted == 0 || !o->open()) continue;
      if (hog == nullptr || hog_before(*o, *hog)) hog = o;
    }
    if (hog == nullptr) return;
    const size_t bytes = hog->rbuf_counted;
    ++metrics_.read_budget_closes;
    log_->warn(
        "closing a connection holding {} bytes of an incomplete frame: {} bytes held in all, "
        "over --read-buffer-budget",
        bytes, rbuf_bytes_);
    answer_then_close(hog, 0, proto::Status::kBusy,
                      "the server's buffers for incomplete frames are full "
                      "(--read-buffer-budget); retry later");
    mark_flush(hog);
  }
}

bool Connections::hog_before(const Conn& a, const Conn& b) {
  if (a.session.hello_done != b.session.hello_done) return !a.session.hello_done;
  if (a.rbuf_counted != b.rbuf_counted) return a.rbuf_counted > b.rbuf_counted;
  return a.frame_started_ms < b.frame_started_ms;
}

// Unwritten answers: per connection under --output-bytes-max, in all under --output-budget
// (a connection with nothing pending may always make some, so nobody starves).
bool Connections::output_full(const Conn* c) const {
  const size_t mine = c->pending_out();
  return mine >= config_.output_bytes_max || (mine > 0 && out_bytes_ >= config_.output_budget);
}

void Connections::account_out(Conn* c) {
  const size_t now = c->pending_out();
  out_bytes_ = out_bytes_ - c->out_counted + now;
  c->out_counted = now;
}

// Frames and answers complete requests in `data` until input runs out (kNeedMore), the
// connection may take no more for now (kBlocked: in-flight or output limit, a long poll, an
// error, stopping_), or it used its share of the turn (kQuota). `used` = bytes consumed.
Connections::Stop Connections::process(Conn* c, std::span<const uint8_t> data, size_t& used) {
  Stop stop = Stop::kNeedMore;
  const size_t out_start = c->out.size();
  const size_t ahead = c->session.hello_done ? decode_ahead(c, data.subspan(used)) : 0;
  for (size_t frames = 0;; ++frames) {
    if (!c->open() || stopping_ || c->deferred || c->unanswered >= config_.inflight_max) {
      stop = Stop::kBlocked;
      break;
    }
    if (output_full(c)) {
      ++metrics_.output_stalls;
      stop = Stop::kBlocked;
      break;
    }
    const Changes& group = commit_.changes();
    if (frames >= kTurnFramesMax || c->out.size() - out_start >= kTurnOutBytesMax ||
        group_full(group)) {
      stop = Stop::kQuota;
      break;
    }
    // Before HELLO only a HELLO-sized frame is taken: an unknown peer cannot hold a big buffer.
    const bool hello = c->session.hello_done;
    proto::Limits limits{
        hello ? config_.frame_bytes_max
              : static_cast<uint32_t>(proto::kHeaderBytes + proto::kHelloBodyBytesMax)};
    proto::FrameDecode d;
    if (frames < ahead) {
      d.kind = proto::DecodeKind::kFrame;
      d.header = ahead_[frames].header;
      d.body = ahead_[frames].body;
      d.consumed = ahead_[frames].consumed;
    } else {
      d = proto::decode_frame(data.subspan(used), limits);
    }
    if (d.kind == proto::DecodeKind::kNeedMore) break;
    if (d.kind == proto::DecodeKind::kInvalid) {
      // The stream cannot be framed any more: say why once, then close.
      if (!hello && d.error == proto::Status::kFrameTooLarge) {
        d.reason = "before HELLO a frame body may be at most " +
                   std::to_string(proto::kHelloBodyBytesMax) + " bytes";
      }
      answer_then_close(c, d.header.request_id, d.error, d.reason);
      ++metrics_.bad_frames;
      used = data.size();
      log_->debug("closing a connection: {}", d.reason);
      stop = Stop::kBlocked;
      break;
    }
    used += d.consumed;
    if (frames + 1 < ahead)
      host_.prefetch(ahead_[frames + 1].header, ahead_[frames + 1].body, false);
    answer_frame(c, d.header, d.body);
  }
  account_out(c);
  mark_flush(c);
  return stop;
}

// Frames the call of process() for `c` may answer (after HELLO; at most this turn's share and
// the room left in flight), decoded once into ahead_; returns how many. The slots of each one's
// first lookups are fetched as it is decoded, so that the misses overlap each other and the
// decoding of the frames after it; then the first one's SKU (through its slot), and process()
// fetches each next one's SKU as it answers one.
size_t Connections::decode_ahead(const Conn* c, std::span<const uint8_t> data) {
  const proto::Limits limits{config_.frame_bytes_max};
  const size_t room = c->unanswered < config_.inflight_max
                          ? std::min<size_t>(kTurnFramesMax, config_.inflight_max - c->unanswered)
                          : 0;
  size_t n = 0, at = 0;
  for (; n < room; ++n) {
    const proto::FrameDecode d = proto::decode_frame(data.subspan(at), limits);
    if (d.kind != proto::DecodeKind::kFrame) break;
    ahead_[n] = {d.header, d.body, d.consumed};
    host_.prefetch(d.header, d.body, true);
    at += d.consumed;
  }
  if (n > 0) host_.prefetch(ahead_[0].header, ahead_[0].body, false);
  return n;
}

void Connections::answer_frame(Conn* c, const proto::FrameHeader& h,
                               std::span<const uint8_t> body) {
  ++requests_total_;
  const bool was_authed = c->session.hello_done;
  if (!was_authed && h.opcode == static_cast<uint16_t>(proto::Opcode::kHello) &&
      authed_ >= config_.connections_max) {
    ++rejected_total_;
    answer_then_close(
        c, h.request_id, proto::Status::kBusy,
        "too many connections (" + std::to_string(config_.connections_max) + "); try again later");
    return;
  }
  const size_t begin_at = c->out.size();
  const uint64_t begin = c->out_base + begin_at;
  DispatchOutcome o = host_.answer(c, h, body, c->out);
  if (!was_authed && c->session.hello_done) {
    --hello_pending_;
    ++authed_;
    unlink_pending(c);
  }
  if (o.hello_failures_to_log > 0) {
    log_->warn(
        "HELLO refused from {}: {} failed in the last {} s (wrong token, disabled role, or "
        "refused unchecked after --hello-fail-burst failures)",
        c->session.peer.text.empty() ? "an unknown address" : c->session.peer.text,
        o.hello_failures_to_log, HelloGuard::kLogEveryMs / 1000);
  }
  if (o.deferred) {
    c->deferred = true;
    return;
  }
  if (c->out.size() - begin_at > config_.frame_bytes_max) {
    // Bounded by construction (protocol.h: kHoldBytesMax, paged lists); never send a frame the
    // peer must refuse.
    log_->error("an answer to {} of {} bytes passed --frame-bytes-max; answered INTERNAL",
                proto::opcode_name(static_cast<proto::Opcode>(h.opcode)), c->out.size() - begin_at);
    c->out.resize(begin_at);
    Dispatcher::encode_error(h.opcode, h.request_id, proto::Status::kInternal,
                             "the answer would not fit a frame", c->out);
    o.status = proto::Status::kInternal;
  }
  mark(c, commit_.filling(), begin, h.opcode, h.request_id);
  metrics_.count_answer(h.opcode, static_cast<uint16_t>(o.status));
  if (o.close) finish_conn(c);
}

// ---------------------------------------------------------------------------------------------
// Writing.

void Connections::mark_flush(Conn* c) {
  if (!c->in_flush_list && !c->marks.empty()) {
    c->in_flush_list = true;
    flush_list_.push_back(c);
  }
}

void Connections::flush_all() {
  size_t keep = 0;
  for (size_t i = 0; i < flush_list_.size(); ++i) {
    Conn* c = flush_list_[i];
    flush(c);
    if (!c->marks.empty() && !c->closing()) {
      flush_list_[keep++] = c;
    } else {
      c->in_flush_list = false;
    }
  }
  flush_list_.resize(keep);
}

// Writes the answers whose groups are durable, in order: one write per call.
void Connections::flush(Conn* c) {
  if (c->closing() || c->write_active) return;
  uint64_t end = c->out_base;
  size_t n = 0;
  const uint64_t now_ns = uv_hrtime();
  for (const auto& m : c->marks) {
    if (m.tag > commit_.durable()) break;
    end = m.end;
    ++n;
    metrics_.request_seconds.observe(static_cast<double>(now_ns - m.start_ns) / 1e9);
  }
  const bool tls_out = c->tls && c->tls->has_output();  // handshake records to send
  if (n == 0 && !tls_out) {
    linger_if_done(c);
    return;
  }
  size_t bytes = end - c->out_base;
  if (c->tls) {
    // Before the handshake there is no key: an answer then (a BUSY at accept) cannot be sent.
    if (n > 0 && !c->tls->handshake_done()) {
      close_conn(c);
      return;
    }
    c->tls->encrypt({c->out.data(), bytes});
    c->out.erase(0, bytes);
    c->tls->take_output(c->writing);
  } else if (bytes == c->out.size()) {
    c->writing.swap(c->out);
    c->out.clear();
  } else {
    c->writing.assign(c->out, 0, bytes);
    c->out.erase(0, bytes);
  }
  c->out_base = end;
  c->marks.pop_front(n);
  c->marks.release_if_idle(kMarksKeptIdle);
  c->unanswered -= static_cast<uint32_t>(n);

  uv_buf_t b = uv_buf_init(c->writing.data(), static_cast<unsigned>(c->writing.size()));
  int w = uv_try_write(c->stream(), &b, 1);
  if (w == static_cast<int>(c->writing.size())) {
    c->writing.clear();
    account_out(c);
    after_write(c);
    return;
  }
  if (w < 0 && w != UV_EAGAIN) {
    close_conn(c);  // the peer is gone (EPIPE, ECONNRESET): SIGPIPE is ignored (run())
    return;
  }
  size_t done = w > 0 ? static_cast<size_t>(w) : 0;
  b = uv_buf_init(c->writing.data() + done, static_cast<unsigned>(c->writing.size() - done));
  c->write_active = true;
  c->write_progress_ms = wall_ms();
  c->write_queue_seen = c->writing.size() - done;
  c->wreq.data = c;
  const int queued = uv_write(&c->wreq, c->stream(), &b, 1, [](uv_write_t* req, int status) {
    auto* c = static_cast<Conn*>(req->data);
    Connections* self = c->home;
    c->write_active = false;
    c->writing.clear();
    self->account_out(c);
    if (c->closing()) return;
    if (status < 0) {
      self->close_conn(c);
      return;
    }
    self->after_write(c);
    self->flush(c);
    self->mark_flush(c);
  });
  if (queued < 0) {  // refused at once (EPIPE after a shutdown): no callback will come
    c->write_active = false;
    close_conn(c);
    return;
  }
  account_out(c);
}

// After answers left: a connection that stopped reading (in-flight or output limit) frames its
// kept input in the next turn; a finishing one lingers once everything is out.
void Connections::after_write(Conn* c) {
  if (!c->open() || stopping_) {
    linger_if_done(c);
    return;
  }
  if (!c->reading && !c->deferred) add_backlog(c);
}

// ---------------------------------------------------------------------------------------------
// What the server calls.

void Connections::init() {
  uv_idle_init(&loop_, &backlog_idle_);
  backlog_idle_.data = this;
}

void Connections::linger_all() {
  for (Conn* c : std::vector<Conn*>(conns_)) {
    if (c->closing()) continue;
    std::string().swap(c->rbuf);  // requests read but not framed are not applied
    account_rbuf(c);
    c->frame_started_ms = 0;
    linger_if_done(c);  // those with answers to send linger after their last write
  }
}

void Connections::close_all() {
  for (Conn* c : std::vector<Conn*>(conns_)) close_conn(c);
}

void Connections::close_handles() {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&backlog_idle_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&backlog_idle_), nullptr);
  }
}

void Connections::end_of_turn() {
  flush_all();
  if (stopping_) return;
  if (backlog_.empty()) {
    uv_idle_stop(&backlog_idle_);
  } else if (group_full(commit_.changes())) {
    // Nothing kept can be framed before the full group is sealed, which waits for the group
    // being written (or the gathering window): an event, the WAL thread's, ends both. Until
    // then the loop polls for it instead of running the backlog without waiting (a core spent
    // for as long as a slow fsync lasts).
    uv_idle_stop(&backlog_idle_);
  } else {
    start_backlog_idle();  // again, after a full group was sealed
  }
}

void Connections::mark(Conn* c, uint64_t tag, uint64_t begin, uint16_t opcode,
                       uint32_t request_id) {
  const uint64_t newest = c->marks.empty() ? 0 : c->marks.back().tag;
  c->mark_answer(tag, begin, opcode, request_id);
  commit_.waits_on(newest, tag);
}

void Connections::fail_unreleased(uint64_t durable) {
  for (Conn* c : conns_) c->fail_unreleased(durable);
}

void Connections::answered_later(Conn* c, uint64_t begin, const proto::FrameHeader& h, uint64_t tag,
                                 int64_t now) {
  // Answers pipelined before the poll may wait on a later group than `tag` (the one filling when
  // they were made): the poll's answer, after them in the stream, waits for it too.
  if (!c->marks.empty()) tag = std::max(tag, c->marks.back().tag);
  mark(c, tag, begin, h.opcode, h.request_id);
  c->deferred = false;
  c->last_active_ms = now;  // the idle clock restarts once the poll is answered
  account_out(c);
  mark_flush(c);
  if (c->open() && !stopping_) add_backlog(c);  // frames that waited behind the poll
}

}  // namespace stockd
