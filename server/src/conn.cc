// Connection I/O on the loop thread: accept, read and frame, answer, write in order.
#include "conn.h"

#include <algorithm>

#include "server_impl.h"

namespace stockd {

void Conn::fail_unreleased(uint64_t durable) {
  auto first =
      std::find_if(marks.begin(), marks.end(), [&](const Mark& m) { return m.tag > durable; });
  if (first == marks.end()) return;
  out.resize(first->begin - out_base);
  for (auto it = first; it != marks.end(); ++it) {
    it->begin = out_base + out.size();
    Dispatcher::encode_error(it->opcode, it->request_id, proto::Status::kStorageUnavailable,
                             "the store failed before this answer was durable; nothing of it "
                             "was kept",
                             out);
    it->end = out_base + out.size();
    it->tag = durable;
  }
}

void Server::Impl::on_accept() {
  auto* c = new Conn();
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener), c->stream()) != 0) {
    uv_close(c->handle(), [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->last_active_ms = wall_ms();
  conns.push_back(c);
  if (conns.size() > config.connections_max) {
    ++rejected_total;
    uint64_t begin = c->out_base + c->out.size();
    Dispatcher::encode_error(
        0, 0, proto::Status::kBusy,
        "too many connections (" + std::to_string(config.connections_max) + "); try again later",
        c->out);
    c->mark_answer(durable_seq, begin, 0, 0);
    c->close_after_flush = true;
    mark_flush(c);
    return;
  }
  ++accepted_total;
  c->reading = true;
  start_reading(c);
}

// Every read lands in the loop's one read buffer; on_read keeps what a frame still needs.
void Server::Impl::start_reading(Conn* c) {
  uv_read_start(
      c->stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<Impl*>(h->loop->data);
        buf->base = self->read_buf;
        buf->len = sizeof self->read_buf;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        static_cast<Impl*>(s->loop->data)->on_read(static_cast<Conn*>(s->data), n, buf);
      });
}

void Server::Impl::on_read(Conn* c, ssize_t nread, const uv_buf_t* buf) {
  if (nread < 0) {
    close_conn(c);  // EOF or reset: answers still in flight are dropped with the socket
    return;
  }
  if (nread == 0) return;
  c->last_active_ms = wall_ms();
  auto n = static_cast<size_t>(nread);
  size_t used = 0;
  if (c->rbuf.empty()) {  // common case: parse straight from the shared read buffer
    process(c, {reinterpret_cast<const uint8_t*>(buf->base), n}, used);
    if (used < n) c->rbuf.assign(buf->base + used, n - used);
  } else {
    c->rbuf.append(buf->base, n);
    process(c, {reinterpret_cast<const uint8_t*>(c->rbuf.data()), c->rbuf.size()}, used);
    c->rbuf.erase(0, used);
  }
  account_rbuf(c);
}

// Frames what `c` kept of incomplete input, after it stopped reading or waited on a poll.
void Server::Impl::process_kept(Conn* c) {
  size_t used = 0;
  process(c, {reinterpret_cast<const uint8_t*>(c->rbuf.data()), c->rbuf.size()}, used);
  c->rbuf.erase(0, used);
  account_rbuf(c);
}

// One error frame (after the answers before it), then the connection closes.
void Server::Impl::answer_then_close(Conn* c, uint32_t request_id, proto::Status st,
                                     const std::string& why) {
  uint64_t begin = c->out_base + c->out.size();
  Dispatcher::encode_error(0, request_id, st, why, c->out);
  c->mark_answer(fill_seq, begin, 0, request_id);
  c->close_after_flush = true;
}

// Incomplete frames held by all connections stay under --read-buffer-budget: a connection whose
// kept bytes would pass it gets one BUSY error frame and is closed, so peers trickling large
// frames on many connections cannot grow the server's memory without bound.
void Server::Impl::account_rbuf(Conn* c) {
  if (c->rbuf.empty() && c->rbuf.capacity() > sizeof read_buf) std::string().swap(c->rbuf);
  const size_t held = c->rbuf.empty() ? 0 : c->rbuf.capacity();
  rbuf_bytes = rbuf_bytes - c->rbuf_counted + held;
  c->rbuf_counted = held;
  if (rbuf_bytes <= config.read_buffer_budget || held == 0 || c->closing || c->close_after_flush) {
    return;
  }
  answer_then_close(c, 0, proto::Status::kBusy,
                    "the server's buffers for incomplete frames are full (--read-buffer-budget); "
                    "retry later");
  ++metrics.read_budget_closes;
  log->warn(
      "closing a connection holding {} bytes of an incomplete frame: {} bytes held in all, "
      "over --read-buffer-budget",
      held, rbuf_bytes);
  std::string().swap(c->rbuf);
  rbuf_bytes -= held;
  c->rbuf_counted = 0;
  if (c->reading) {
    c->reading = false;
    uv_read_stop(c->stream());
  }
  mark_flush(c);
}

// Frames and answers every complete request in `data`, stopping early when the connection has
// too many unanswered requests, waits on a long poll, or must close. `used` = bytes consumed.
void Server::Impl::process(Conn* c, std::span<const uint8_t> data, size_t& used) {
  proto::Limits limits{config.frame_bytes_max};
  while (!c->closing && !c->close_after_flush && !c->deferred &&
         c->unanswered < config.inflight_max) {
    proto::FrameDecode d = proto::decode_frame(data.subspan(used), limits);
    if (d.kind == proto::DecodeKind::kNeedMore) break;
    if (d.kind == proto::DecodeKind::kInvalid) {
      // The stream cannot be framed any more: say why once, then close.
      answer_then_close(c, d.header.request_id, d.error, d.reason);
      ++metrics.bad_frames;
      used = data.size();
      log->debug("closing a connection: {}", d.reason);
      break;
    }
    used += d.consumed;
    answer_frame(c, d.header, d.body);
  }
  bool want_read =
      !c->close_after_flush && !c->deferred && c->unanswered < config.inflight_max && !stopping;
  if (want_read != c->reading && !c->closing) {
    c->reading = want_read;
    if (want_read) {
      start_reading(c);
    } else {
      uv_read_stop(c->stream());
    }
  }
  mark_flush(c);
}

void Server::Impl::answer_frame(Conn* c, const proto::FrameHeader& h,
                                std::span<const uint8_t> body) {
  ++requests_total;
  uint64_t begin = c->out_base + c->out.size();
  dispatching = c;
  DispatchOutcome o =
      dispatcher->handle(c->session, h, body, wall_ms(), !store_failed, changes, c->out);
  dispatching = nullptr;
  if (o.deferred) {
    c->deferred = true;
    return;
  }
  c->mark_answer(fill_seq, begin, h.opcode, h.request_id);
  if (c->out.size() >= begin - c->out_base + proto::kHeaderBytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(c->out.data()) + (begin - c->out_base) + 10;
    metrics.count_answer(h.opcode, static_cast<uint16_t>(p[0] | (p[1] << 8)));
  }
  if (o.close) c->close_after_flush = true;
}

void Server::Impl::mark_flush(Conn* c) {
  if (!c->in_flush_list && !c->marks.empty()) {
    c->in_flush_list = true;
    flush_list.push_back(c);
  }
}

void Server::Impl::flush_all() {
  size_t keep = 0;
  for (size_t i = 0; i < flush_list.size(); ++i) {
    Conn* c = flush_list[i];
    flush(c);
    if (!c->marks.empty() && !c->closing) {
      flush_list[keep++] = c;
    } else {
      c->in_flush_list = false;
    }
  }
  flush_list.resize(keep);
}

// Writes the answers whose groups are durable, in order: one write per call.
void Server::Impl::flush(Conn* c) {
  if (c->closing || c->write_active) return;
  uint64_t end = c->out_base;
  size_t n = 0;
  const uint64_t now_ns = uv_hrtime();
  for (const auto& m : c->marks) {
    if (m.tag > durable_seq) break;
    end = m.end;
    ++n;
    metrics.request_seconds.observe(static_cast<double>(now_ns - m.start_ns) / 1e9);
  }
  if (n == 0) {
    if (c->close_after_flush && c->marks.empty()) close_conn(c);
    return;
  }
  size_t bytes = end - c->out_base;
  if (bytes == c->out.size()) {
    c->writing.swap(c->out);
    c->out.clear();
  } else {
    c->writing.assign(c->out, 0, bytes);
    c->out.erase(0, bytes);
  }
  c->out_base = end;
  c->marks.erase(c->marks.begin(), c->marks.begin() + static_cast<long>(n));
  c->unanswered -= static_cast<uint32_t>(n);

  uv_buf_t b = uv_buf_init(c->writing.data(), static_cast<unsigned>(c->writing.size()));
  int w = uv_try_write(c->stream(), &b, 1);
  if (w == static_cast<int>(c->writing.size())) {
    c->writing.clear();
    after_write(c);
    return;
  }
  if (w < 0 && w != UV_EAGAIN) {
    close_conn(c);
    return;
  }
  size_t done = w > 0 ? static_cast<size_t>(w) : 0;
  b = uv_buf_init(c->writing.data() + done, static_cast<unsigned>(c->writing.size() - done));
  c->write_active = true;
  c->wreq.data = c;
  uv_write(&c->wreq, c->stream(), &b, 1, [](uv_write_t* req, int status) {
    auto* c = static_cast<Conn*>(req->data);
    c->write_active = false;
    c->writing.clear();
    auto* self = static_cast<Impl*>(req->handle->loop->data);
    if (status < 0 || c->closing) {
      self->close_conn(c);
      return;
    }
    self->after_write(c);
    self->flush(c);
    self->mark_flush(c);
  });
}

// After answers left: resume a connection that stopped reading at its in-flight limit.
void Server::Impl::after_write(Conn* c) {
  if (c->close_after_flush && c->marks.empty()) {
    close_conn(c);
    return;
  }
  if (c->reading || c->closing || c->deferred || c->close_after_flush || stopping) return;
  if (c->unanswered >= config.inflight_max) return;
  process_kept(c);
}

void Server::Impl::close_conn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  std::erase_if(polls, [c](const Poll& p) { return p.conn == c; });
  uv_close(c->handle(), [](uv_handle_t* h) {
    auto* c = static_cast<Conn*>(h->data);
    static_cast<Impl*>(h->loop->data)->conn_closed(c);
  });
}

void Server::Impl::conn_closed(Conn* c) {
  rbuf_bytes -= c->rbuf_counted;
  std::erase(conns, c);
  if (c->in_flush_list) std::erase(flush_list, c);
  delete c;
  finish_stop_if_drained();
}

}  // namespace stockd
