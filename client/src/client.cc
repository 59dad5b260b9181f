// stockd C++ client on blocking-style POSIX sockets.
//
// The socket itself is non-blocking: every wait is a poll() bounded by the call's deadline, so
// no call can hang past Options::timeout_ms (plus an OUTBOX_READ's own long-poll wait).
#include "stockd/client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

#include "stockd/endpoint.h"

namespace stockd {

using proto::Opcode;
using proto::Request;
using proto::Response;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kBackoffMsMax = 5000;

Clock::time_point after_ms(int64_t ms) { return Clock::now() + std::chrono::milliseconds(ms); }

int remaining_ms(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

// Waits for `events` on `fd`. 1: ready (or an error the next syscall will report), 0: deadline
// passed, -1: poll itself failed (errno).
int wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return 1;
    if (rc == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

// True when the peer is ending an idle connection, so that a request sent on it would be lost.
// Checked before each call, with nothing outstanding: then even calls that are never retried
// get a fresh connection. The protocol sends nothing unasked but the end of a connection (an
// error frame before the close, TLS's close_notify, the FIN, a reset), so anything readable
// now is that end. (Peeking for a FIN took a TLS close_notify for a live connection.)
bool peer_gone(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

std::string endpoint_text(const ClientOptions& o) {
  bool v6 = o.host.find(':') != std::string::npos;
  return (v6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port);
}

// Opens a non-blocking TCP socket to `ai` within `timeout_ms`: the fd, or Io saying why not.
Result<int> connect_addr(const addrinfo* ai, int timeout_ms) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return Status::Io(std::strerror(errno));
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    int err = errno;
    if (err == EINPROGRESS) {
      int w = wait_fd(fd, POLLOUT, after_ms(timeout_ms));
      socklen_t len = sizeof err;
      if (w == 0) {
        err = ETIMEDOUT;
      } else if (w < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        err = errno;
      }
    }
    if (err != 0) {
      ::close(fd);
      return Status::Io(err == ETIMEDOUT ? "timed out after " + std::to_string(timeout_ms) + " ms"
                                         : std::strerror(err));
    }
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::string frame_text(uint32_t id, Opcode op) {
  if (static_cast<uint16_t>(op) == 0) return "a connection error frame";
  return std::string(proto::opcode_name(op)) + " #" + std::to_string(id);
}

// Why an answer that does not match the request ends the connection.
std::string mismatch_text(uint32_t want_id, Opcode want_op, uint32_t id, Opcode op,
                          const Reply<Response>& answer) {
  if (static_cast<uint16_t>(op) == 0) {  // the server gave up on this connection and says why
    std::string what = std::string("server error: ") + proto::status_name(answer.status);
    return answer.error.empty() ? what : what + ": " + answer.error;
  }
  return "protocol error: sent " + frame_text(want_id, want_op) + ", got " + frame_text(id, op);
}

// Time budget of one call: OUTBOX_READ may legitimately wait `wait_ms` on the server first.
int64_t call_budget_ms(const ClientOptions& o, const Request& req) {
  int64_t ms = o.timeout_ms;
  if (const auto* r = std::get_if<proto::OutboxReadReq>(&req)) ms += r->wait_ms;
  return ms;
}

Reply<Response> transport_failure(std::string error) {
  Reply<Response> r;
  r.error = std::move(error);
  return r;
}

// Whether a call whose answer was lost may be sent again: the opcode registry says (a keyed
// RESERVE or CLAIM answers its first answer again; COMMIT and RELEASE cannot apply twice).
bool may_resend(Opcode op, const Request& req) {
  const proto::OpInfo* info = proto::op_info(static_cast<uint16_t>(op));
  if (info == nullptr || info->retry == proto::Retry::kNever) return false;
  if (info->retry == proto::Retry::kAlways) return true;
  if (const auto* r = std::get_if<proto::ReserveReq>(&req)) return !r->key.empty();
  if (const auto* c = std::get_if<proto::ClaimReq>(&req)) return !c->key.empty();
  return false;
}

}  // namespace

// ---- Endpoint ----

Status parse_endpoint(const std::string& text, ClientOptions& options) {
  return parse_host_port(text, options.host, options.port);
}

// ---- Lifetime ----

Client::Client(ClientOptions options) : options_(std::move(options)) {}

Client::~Client() { drop(); }

Client::Client(Client&& o) noexcept
    : options_(std::move(o.options_)),
      fd_(std::exchange(o.fd_, -1)),
      may_connect_(o.may_connect_),
      tls_(std::move(o.tls_)),
      next_id_(o.next_id_),
      frame_bytes_max_(o.frame_bytes_max_),
      rbuf_(std::move(o.rbuf_)),
      rpos_(std::exchange(o.rpos_, 0)),
      wbuf_(std::move(o.wbuf_)),
      queued_(std::move(o.queued_)),
      queued_ends_(std::move(o.queued_ends_)),
      inflight_max_(o.inflight_max_) {}

Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    close();
    options_ = std::move(o.options_);
    fd_ = std::exchange(o.fd_, -1);
    may_connect_ = o.may_connect_;
    tls_ = std::move(o.tls_);
    next_id_ = o.next_id_;
    frame_bytes_max_ = o.frame_bytes_max_;
    rbuf_ = std::move(o.rbuf_);
    rpos_ = std::exchange(o.rpos_, 0);
    wbuf_ = std::move(o.wbuf_);
    queued_ = std::move(o.queued_);
    queued_ends_ = std::move(o.queued_ends_);
    inflight_max_ = o.inflight_max_;
  }
  return *this;
}

bool Client::connected() const { return fd_ >= 0; }

void Client::close() {
  drop();
  may_connect_ = true;
}

void Client::drop() {
  tls_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  rbuf_.clear();
  rpos_ = 0;
}

// ---- Connecting ----

Status Client::connect() {
  try {
    Reply<Response> refusal;
    return connect_once(refusal);
  } catch (const std::exception& e) {
    drop();
    return Status::Io(std::string("internal error: ") + e.what());
  }
}

Status Client::connect_once(Reply<Response>& refusal) {
  drop();
  const std::string where = endpoint_text(options_);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  std::string port = std::to_string(options_.port);
  int gai = ::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &list);
  if (gai != 0) return Status::Io("cannot resolve " + options_.host + ": " + ::gai_strerror(gai));
  Status error = Status::Io("no address");
  for (const addrinfo* ai = list; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    Result<int> fd = connect_addr(ai, bounded_ms(options_.connect_timeout_ms));
    if (fd.ok())
      fd_ = *fd;
    else
      error = fd.status();
  }
  ::freeaddrinfo(list);
  if (fd_ < 0) return std::move(error).context("cannot connect to " + where);
  if (options_.tls.enabled) {
    Result<std::unique_ptr<TlsConnection>> tls = TlsConnection::start(
        fd_, options_.tls, options_.host, bounded_ms(options_.connect_timeout_ms));
    if (!tls.ok()) {
      drop();
      return tls.status().context("cannot connect to " + where);
    }
    tls_ = std::move(*tls);
  }

  proto::HelloReq hello{proto::kProtocolVersion, options_.role, options_.token,
                        options_.client_name};
  const uint32_t id = next_id_++;
  std::string frame;
  proto::encode_request(Opcode::kHello, id, hello, frame);
  Deadline deadline = bounded(after_ms(options_.timeout_ms));
  Reply<Response> answer;
  uint32_t got_id = 0;
  Opcode got_op = Opcode::kHello;
  const std::string hello_to = "HELLO to " + where;
  if (Status s = write_all(frame, deadline); !s.ok()) return std::move(s).context(hello_to);
  if (!read_answer(deadline, answer, got_id, got_op))
    return Status::Io(hello_to + ": " + answer.error);
  if (got_id != id || got_op != Opcode::kHello) {
    drop();
    return Status::Io(hello_to + ": " + mismatch_text(id, Opcode::kHello, got_id, got_op, answer));
  }
  if (answer.status != proto::Status::kOk) {
    drop();
    refusal = answer;
    std::string why = proto::status_name(answer.status);
    return Status::Refused(answer.error.empty() ? why : why + ": " + answer.error);
  }
  const auto* resp = std::get_if<proto::HelloResp>(&answer.body);
  if (resp == nullptr) {
    drop();
    return Status::Io(hello_to + ": protocol error: wrong answer body");
  }
  // The server's frame limit bounds what this client buffers for one answer too: a broken or
  // hostile server announcing 4 GiB would have it grow toward that for one body_len.
  if (resp->frame_bytes_max < proto::kHeaderBytes ||
      resp->frame_bytes_max > proto::kFrameBytesMax) {
    drop();
    return Status::Io(hello_to + ": protocol error: frame_bytes_max " +
                      std::to_string(resp->frame_bytes_max) + " is outside " +
                      std::to_string(proto::kHeaderBytes) + ".." +
                      std::to_string(proto::kFrameBytesMax));
  }
  frame_bytes_max_ = resp->frame_bytes_max;
  inflight_max_ = resp->inflight_max;
  may_connect_ = false;  // the next connection is the caller's to ask for (connect_in_calls)
  return Status::Ok();
}

bool Client::ensure_connected(Reply<Response>& failure) {
  if (fd_ >= 0 && peer_gone(fd_)) drop();  // e.g. the server's idle timeout: start afresh
  if (fd_ >= 0) return true;
  if (!options_.connect_in_calls && !may_connect_) {
    failure = transport_failure("the connection to " + endpoint_text(options_) +
                                " was lost; this client connects again only when told to");
    return false;
  }
  const int attempts = std::max(1, options_.reconnect_attempts);
  int backoff_ms = std::max(0, options_.reconnect_backoff_ms);
  for (int i = 0; i < attempts; ++i) {
    if (i > 0) {
      if (after_ms(backoff_ms) >= call_end_) break;  // no time left for another attempt
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, kBackoffMsMax);
    }
    Reply<Response> refusal;
    Status s = connect_once(refusal);
    if (s.ok()) return true;
    if (refusal.transport) {  // the server answered "no": asking again will not change that
      failure = std::move(refusal);
      return false;
    }
    failure = transport_failure(s.message());
  }
  return false;
}

// ---- Bytes on the wire ----

ssize_t Client::io_send(const char* data, size_t n) {
  return tls_ ? tls_->send(data, n) : ::send(fd_, data, n, MSG_NOSIGNAL);
}

ssize_t Client::io_recv(char* data, size_t n) {
  return tls_ ? tls_->recv(data, n) : ::recv(fd_, data, n, 0);
}

Status Client::write_all(const std::string& bytes, Deadline deadline) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = io_send(bytes.data() + off, bytes.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    Status failed;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(fd_, POLLOUT, deadline);
      if (w > 0) continue;
      failed =
          Status::Io(w == 0 ? "timed out sending" : std::string("poll: ") + std::strerror(errno));
    } else {
      failed = Status::Io(std::string("send: ") + std::strerror(errno));
    }
    drop();
    return failed;
  }
  return Status::Ok();
}

Status Client::read_more(Deadline deadline) {
  if (rpos_ == rbuf_.size()) {
    rbuf_.clear();
    rpos_ = 0;
  } else if (rpos_ > kReadChunkBytes && rpos_ * 2 > rbuf_.size()) {
    rbuf_.erase(0, rpos_);
    rpos_ = 0;
  }
  char chunk[kReadChunkBytes];
  for (;;) {
    ssize_t n = io_recv(chunk, sizeof chunk);
    if (n > 0) {
      rbuf_.append(chunk, static_cast<size_t>(n));
      return Status::Ok();
    }
    if (n == 0) return Status::Io("connection closed by the server");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Status::Io(tls_ && !tls_->last_error().empty()
                            ? tls_->last_error()
                            : std::string("recv: ") + std::strerror(errno));
    }
    int w = wait_fd(fd_, POLLIN, deadline);
    if (w <= 0) {
      return Status::Io(w == 0 ? "timed out waiting for the answer"
                               : std::string("poll: ") + std::strerror(errno));
    }
  }
}

int Client::take_answer(Reply<Response>& out, uint32_t& id, Opcode& op, Status& error) {
  std::span<const uint8_t> in(reinterpret_cast<const uint8_t*>(rbuf_.data()) + rpos_,
                              rbuf_.size() - rpos_);
  proto::FrameDecode d = proto::decode_frame(in, proto::Limits{frame_bytes_max_});
  if (d.kind == proto::DecodeKind::kNeedMore) return 0;
  if (d.kind == proto::DecodeKind::kInvalid) {
    error = Status::Corruption("protocol error: " + d.reason);
    return -1;
  }
  // Opcode 0 is the server's connection error frame (input it could not frame, or BUSY).
  const bool error_frame =
      d.header.opcode == 0 && proto::is_error_status(static_cast<proto::Status>(d.header.status));
  if (!d.header.is_response() || !(error_frame || proto::opcode_known(d.header.opcode))) {
    error = Status::Corruption("protocol error: not a response frame (opcode " +
                               std::to_string(d.header.opcode) + ")");
    return -1;
  }
  id = d.header.request_id;
  op = static_cast<Opcode>(d.header.opcode);
  const auto status = static_cast<proto::Status>(d.header.status);
  Result<Response> body = proto::decode_response(op, status, d.body);
  if (!body.ok()) {
    error = body.status().context("protocol error: bad " + frame_text(id, op) + " answer");
    return -1;
  }
  rpos_ += d.consumed;
  out = Reply<Response>{};
  out.transport = true;
  out.status = status;
  if (const auto* e = std::get_if<proto::ErrorResp>(&*body)) out.error = e->message;
  out.body = std::move(*body);
  return 1;
}

bool Client::read_answer(Deadline deadline, Reply<Response>& out, uint32_t& id, Opcode& op) {
  Status error;
  for (;;) {
    int taken = take_answer(out, id, op, error);
    if (taken > 0) return true;
    if (taken < 0) break;
    if (error = read_more(deadline); !error.ok()) break;
  }
  drop();
  out = transport_failure(error.message());
  return false;
}

int Client::bounded_ms(int ms) const {
  if (call_end_ == Deadline::max()) return ms;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(call_end_ - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 1, std::max(ms, 1)));
}

// ---- Typed calls ----

Reply<Response> Client::call_once(Opcode op, const Request& req, bool& reached) {
  reached = false;
  Reply<Response> failure;
  if (!ensure_connected(failure)) return failure;
  reached = true;
  const uint32_t id = next_id_++;
  std::string frame;
  proto::encode_request(op, id, req, frame);
  if (frame.size() > frame_bytes_max_) {
    reached = false;  // nothing was sent; a retry would fail the same way
    return transport_failure("request too large: " + std::to_string(frame.size()) +
                             " bytes, the server accepts at most " +
                             std::to_string(frame_bytes_max_));
  }
  const int64_t budget_ms = call_budget_ms(options_, req);
  Deadline deadline = bounded(after_ms(budget_ms));
  const std::string what = std::string(proto::opcode_name(op)) + " to " + endpoint_text(options_);
  if (Status s = write_all(frame, deadline); !s.ok()) {
    return transport_failure(what + ": " + s.message());
  }
  Reply<Response> answer;
  uint32_t got_id = 0;
  Opcode got_op = op;
  if (!read_answer(deadline, answer, got_id, got_op)) {
    const bool timed_out = answer.error.rfind("timed out", 0) == 0;
    std::string after = timed_out ? " (" + std::to_string(budget_ms) + " ms)" : "";
    return transport_failure(what + ": " + answer.error + after);
  }
  if (got_id != id || got_op != op) {
    drop();
    return transport_failure(what + ": " + mismatch_text(id, op, got_id, got_op, answer));
  }
  return answer;
}

template <class T>
Reply<T> Client::call(Opcode op, const Request& req) {
  const bool retry_safe = may_resend(op, req);
  Reply<Response> raw;
  bool resent = false;
  // The whole call, connecting and a resend included, within its budget (--timeout-ms).
  call_end_ = after_ms(call_budget_ms(options_, req));
  struct Unbound {
    Deadline& end;
    ~Unbound() { end = Deadline::max(); }
  } unbound{call_end_};
  try {
    bool reached = false;
    raw = call_once(op, req, reached);
    if (!raw.transport && retry_safe && reached && options_.connect_in_calls &&
        Clock::now() < call_end_) {
      const std::string first = raw.error;
      raw = call_once(op, req, reached);
      resent = raw.transport && reached;
      // The resend never reached the server: its HELLO was refused (a token rotated in a
      // restart, the address locked out). That refusal is not this call's answer: the first
      // send may have been applied, so the outcome is unknown, not "refused".
      if (raw.transport && !reached) {
        raw = transport_failure(first + "; sent again, the new connection's HELLO was refused (" +
                                proto::status_name(raw.status) +
                                (raw.error.empty() ? "" : ": " + raw.error) +
                                "): the request may or may not have been applied");
      }
    }
  } catch (const std::exception& e) {
    drop();
    raw = transport_failure(std::string("internal error: ") + e.what());
  }
  Reply<T> out;
  out.transport = raw.transport;
  out.status = raw.status;
  out.error = std::move(raw.error);
  out.resent = resent;
  if (!out.transport || proto::is_error_status(out.status)) return out;
  if (auto* body = std::get_if<T>(&raw.body)) {
    out.body = std::move(*body);
  } else {
    drop();
    out.transport = false;
    out.error =
        std::string("protocol error: unexpected body in the ") + proto::opcode_name(op) + " answer";
  }
  return out;
}

Reply<proto::PingResp> Client::ping() {
  return call<proto::PingResp>(Opcode::kPing, proto::PingReq{});
}
Reply<proto::ReserveResp> Client::reserve(const proto::ReserveReq& req) {
  return call<proto::ReserveResp>(Opcode::kReserve, req);
}
Reply<proto::HoldView> Client::commit(uint64_t hold_id, std::string_view user) {
  return call<proto::HoldView>(Opcode::kCommit, proto::HoldReq{hold_id, std::string(user)});
}
Reply<proto::HoldView> Client::release(uint64_t hold_id, std::string_view user) {
  return call<proto::HoldView>(Opcode::kRelease, proto::HoldReq{hold_id, std::string(user)});
}
Reply<proto::HoldView> Client::hold_get(uint64_t hold_id, std::string_view user) {
  return call<proto::HoldView>(Opcode::kHoldGet, proto::HoldReq{hold_id, std::string(user)});
}
Reply<proto::ClaimResp> Client::claim(const proto::ClaimReq& req) {
  return call<proto::ClaimResp>(Opcode::kClaim, req);
}
Reply<proto::SkuView> Client::sku_get(const std::string& sku) {
  return call<proto::SkuView>(Opcode::kSkuGet, proto::SkuReq{sku});
}
Reply<proto::SkuListResp> Client::sku_list(const std::string& after, uint32_t limit) {
  return call<proto::SkuListResp>(Opcode::kSkuList, proto::SkuListReq{after, limit});
}
Reply<proto::StatsResp> Client::stats() {
  return call<proto::StatsResp>(Opcode::kStats, proto::StatsReq{});
}
Reply<proto::SkuView> Client::sku_set(const proto::SkuSetReq& req) {
  return call<proto::SkuView>(Opcode::kSkuSet, req);
}
Reply<proto::SkuView> Client::restock(const std::string& sku, int64_t delta) {
  return call<proto::SkuView>(Opcode::kRestock, proto::RestockReq{sku, delta});
}
Reply<proto::CodesLoadResp> Client::codes_load(const proto::CodesLoadReq& req) {
  return call<proto::CodesLoadResp>(Opcode::kCodesLoad, req);
}
Reply<proto::SkuView> Client::sale_close(const std::string& sku) {
  return call<proto::SkuView>(Opcode::kSaleClose, proto::SkuReq{sku});
}
Reply<proto::OutboxReadResp> Client::outbox_read(const proto::OutboxReadReq& req) {
  return call<proto::OutboxReadResp>(Opcode::kOutboxRead, req);
}
Reply<proto::OutboxStatusResp> Client::outbox_ack(uint64_t upto_seq) {
  return call<proto::OutboxStatusResp>(Opcode::kOutboxAck, proto::OutboxAckReq{upto_seq});
}
Reply<proto::OutboxStatusResp> Client::outbox_status() {
  return call<proto::OutboxStatusResp>(Opcode::kOutboxStatus, proto::OutboxStatusReq{});
}

// ---- Pipelining ----

uint32_t Client::queue(Opcode op, const Request& req) {
  const uint32_t id = next_id_++;
  proto::encode_request(op, id, req, wbuf_);
  queued_.emplace_back(id, op);
  queued_ends_.push_back(wbuf_.size());
  return id;
}

// Writes `bytes` while reading answers, never keeping more than inflight_max_ requests
// unanswered (so neither side can block the other with full socket buffers). The deadline
// restarts whenever an answer arrives. Returns how many answers were taken into `out`.
size_t Client::pump(const std::string& bytes, const std::vector<size_t>& ends,
                    std::vector<Reply<Response>>& out, Status& error) {
  const size_t n = out.size();
  size_t answered = 0;
  size_t written = 0;
  Deadline deadline = after_ms(options_.timeout_ms);
  while (answered < n) {
    uint32_t id = 0;
    Opcode op = Opcode::kPing;
    int taken = take_answer(out[answered], id, op, error);
    if (taken < 0) return answered;
    if (taken > 0) {
      if (id != queued_[answered].first || op != queued_[answered].second) {
        error = Status::Corruption(mismatch_text(queued_[answered].first, queued_[answered].second,
                                                 id, op, out[answered]));
        return answered;
      }
      ++answered;
      deadline = after_ms(options_.timeout_ms);
      continue;
    }
    size_t window_end = inflight_max_ == 0 ? n : std::min<size_t>(n, answered + inflight_max_);
    size_t write_limit = ends[window_end - 1];
    if (written < write_limit) {
      ssize_t w = io_send(bytes.data() + written, write_limit - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        error = Status::Io(std::string("send: ") + std::strerror(errno));
        return answered;
      }
    }
    if (tls_ && tls_->pending()) {  // decrypted bytes wait inside OpenSSL, not in the socket
      if (error = read_more(deadline); !error.ok()) return answered;
      continue;
    }
    short events = POLLIN | (written < write_limit ? POLLOUT : 0);
    pollfd p{fd_, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      error = Status::Io(rc == 0 ? "timed out waiting for answers"
                                 : std::string("poll: ") + std::strerror(errno));
      return answered;
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (error = read_more(deadline); !error.ok()) return answered;
    }
  }
  return answered;
}

std::vector<Reply<Response>> Client::flush() {
  std::vector<Reply<Response>> out(queued_.size());
  std::string bytes = std::move(wbuf_);
  std::vector<size_t> ends = std::move(queued_ends_);
  wbuf_.clear();
  queued_ends_.clear();
  if (out.empty()) return out;
  size_t answered = 0;
  Status error;
  try {
    Reply<Response> failure;
    if (!ensure_connected(failure)) {
      std::fill(out.begin(), out.end(), failure);
      queued_.clear();
      return out;
    }
    // A frame over the server's limit would make it close the connection mid-pipeline: refuse
    // the whole batch before sending anything.
    for (size_t i = 0; i < ends.size() && error.ok(); ++i) {
      const size_t size = ends[i] - (i == 0 ? 0 : ends[i - 1]);
      if (size > frame_bytes_max_) {
        error = Status::Invalid("request " + std::to_string(i + 1) + " is too large: " +
                                std::to_string(size) + " bytes, the server accepts at most " +
                                std::to_string(frame_bytes_max_) + "; nothing was sent");
      }
    }
    if (error.ok()) answered = pump(bytes, ends, out, error);
  } catch (const std::exception& e) {
    error = Status::Io(std::string("internal error: ") + e.what());
  }
  queued_.clear();
  if (answered < out.size()) {
    drop();
    const std::string why = "pipeline to " + endpoint_text(options_) + ": " + error.message();
    for (size_t i = answered; i < out.size(); ++i) out[i] = transport_failure(why);
  }
  return out;
}

// ---- Low level ----

Status Client::send_raw(const std::string& bytes) {
  try {
    Reply<Response> failure;
    // Raw frames may be pipelined: an answer already in the socket is not the connection's
    // end (ensure_connected's check), so only a closed connection is opened again.
    if (fd_ < 0 && !ensure_connected(failure)) {
      if (!failure.transport) return Status::Io(failure.error);
      return Status::Refused(std::string(proto::status_name(failure.status)) + ": " +
                             failure.error);
    }
    return write_all(bytes, after_ms(options_.timeout_ms));
  } catch (const std::exception& e) {
    drop();
    return Status::Io(std::string("internal error: ") + e.what());
  }
}

Reply<Response> Client::receive(uint32_t& request_id, Opcode& op) {
  if (fd_ < 0) return transport_failure("not connected");
  Reply<Response> out;
  try {
    read_answer(after_ms(options_.timeout_ms), out, request_id, op);
  } catch (const std::exception& e) {
    drop();
    out = transport_failure(std::string("internal error: ") + e.what());
  }
  return out;
}

}  // namespace stockd
