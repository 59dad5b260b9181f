// stockd C++ client: one TCP connection, HELLO on connect, a typed call per operation,
// pipelining, timeouts and reconnect.
//
// A Client is not thread-safe: use one per thread (or guard it). Blocking calls wait at most
// Options::timeout_ms for their answer. After a transport failure (refused, reset, timeout,
// malformed answer) the connection is closed and the next call reconnects; a call is retried
// once on a fresh connection only when repeating it cannot apply it twice (queries, COMMIT and
// RELEASE, and RESERVE/CLAIM that carry an idempotency key).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "stockd/protocol.h"
#include "stockd/tls_client.h"

namespace stockd {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 7070;
  proto::Role role = proto::Role::kBuyer;
  std::string token;
  std::string client_name = "stockd-client";
  int connect_timeout_ms = 3000;
  int timeout_ms = 10000;  // per call, from send to answer
  int reconnect_attempts = 3;
  int reconnect_backoff_ms = 50;  // doubled per attempt
  TlsOptions tls;                 // tls.enabled: speak TLS (the server runs with --tls-cert)
  // false: once a connection is lost, calls neither open a new one nor resend on it; they fail
  // until the caller connect()s or close()s. For a caller that must check each connection
  // before it relies on it (the outbox sidecar compares stockd's history with its database's).
  bool connect_in_calls = true;
};

// Parses "HOST:PORT" into options.host/port; ok or why not (Invalid).
Status parse_endpoint(const std::string& text, ClientOptions& options);

// The outcome of one call. transport_ok() false: nothing was answered (see `error`).
// Otherwise `status` is the server's answer; for error statuses `error` holds its message.
template <class T>
struct Reply {
  bool transport = false;
  proto::Status status = proto::Status::kInternal;
  T body{};
  std::string error;
  // The answer is to a resend: the first send's answer was lost (a retry-safe call, sent once
  // more on a new connection). A COMMIT or RELEASE answered ALREADY_DONE in the state it asked
  // for was then most likely done by the first send.
  bool resent = false;
  bool transport_ok() const { return transport; }
  bool ok() const { return transport && status == proto::Status::kOk; }
};

class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Connects and says HELLO. Ok, else why not: Io, or Refused when the server refused the HELLO
  // (UNAUTHORIZED etc.).
  // Calls connect by themselves when needed; a HELLO the server refuses is then reported as
  // that call's answer (transport true, status UNAUTHORIZED etc., `error` = its message).
  // With connect_in_calls false, only the first call after construction or close() connects.
  Status connect();
  bool connected() const;
  void close();

  // ---- Typed calls (blocking). ----
  Reply<proto::PingResp> ping();
  Reply<proto::ReserveResp> reserve(const proto::ReserveReq& req);
  // `user`: whose hold (a buyer must name it; admin and outbox may leave it empty = any).
  Reply<proto::HoldView> commit(uint64_t hold_id, std::string_view user = {});
  Reply<proto::HoldView> release(uint64_t hold_id, std::string_view user = {});
  Reply<proto::HoldView> hold_get(uint64_t hold_id, std::string_view user = {});
  Reply<proto::ClaimResp> claim(const proto::ClaimReq& req);
  Reply<proto::SkuView> sku_get(const std::string& sku);
  Reply<proto::SkuListResp> sku_list(const std::string& after, uint32_t limit);
  Reply<proto::StatsResp> stats();
  Reply<proto::SkuView> sku_set(const proto::SkuSetReq& req);
  Reply<proto::SkuView> restock(const std::string& sku, int64_t delta);
  Reply<proto::CodesLoadResp> codes_load(const proto::CodesLoadReq& req);
  Reply<proto::SkuView> sale_close(const std::string& sku);
  Reply<proto::OutboxReadResp> outbox_read(const proto::OutboxReadReq& req);
  Reply<proto::OutboxStatusResp> outbox_ack(uint64_t upto_seq);
  Reply<proto::OutboxStatusResp> outbox_status();

  // ---- Pipelining: queue many requests, send them in one write, read answers in order. ----
  // Returns the request id. Nothing is sent until flush().
  uint32_t queue(proto::Opcode op, const proto::Request& req);
  // Sends everything queued and waits for every answer (in order). Answers for which the
  // connection failed have transport == false. Never retried.
  std::vector<Reply<proto::Response>> flush();

  // Low level, for benchmarks: write bytes of already-encoded frames; read one answer.
  Status send_raw(const std::string& bytes);
  Reply<proto::Response> receive(uint32_t& request_id, proto::Opcode& op);

  const ClientOptions& options() const { return options_; }
  // The largest frame the server accepts, from its HELLO answer (the protocol default before
  // the first connect). Callers that batch (CODES_LOAD) size their requests with it.
  uint32_t frame_bytes_max() const { return frame_bytes_max_; }

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  template <class T>
  Reply<T> call(proto::Opcode op, const proto::Request& req);  // resent per the opcode's row
  // `reached` tells whether a connection was up when the call failed (a retry may help).
  Reply<proto::Response> call_once(proto::Opcode op, const proto::Request& req, bool& reached);
  // One TCP connect + HELLO. Ok or why not; a refused HELLO also fills `refusal`.
  Status connect_once(Reply<proto::Response>& refusal);
  // Connects when needed, up to reconnect_attempts times. false: `failure` says why.
  bool ensure_connected(Reply<proto::Response>& failure);
  Status write_all(const std::string& bytes, Deadline deadline);  // closes on failure
  Status read_more(Deadline deadline);
  // Takes one buffered answer: 1 taken, 0 need more bytes, -1 malformed (`error` says why).
  int take_answer(Reply<proto::Response>& out, uint32_t& id, proto::Opcode& op, Status& error);
  bool read_answer(Deadline deadline, Reply<proto::Response>& out, uint32_t& id, proto::Opcode& op);
  size_t pump(const std::string& bytes, const std::vector<size_t>& ends,
              std::vector<Reply<proto::Response>>& out, Status& error);

  // Closes the connection (lost, or given up on); close() also lets calls connect again.
  void drop();

  // ::send / ::recv, through TLS when it is on.
  ssize_t io_send(const char* data, size_t n);
  ssize_t io_recv(char* data, size_t n);

  ClientOptions options_;
  int fd_ = -1;
  bool may_connect_ = true;             // with connect_in_calls false: whether a call may connect
  std::unique_ptr<TlsConnection> tls_;  // set while connected with options_.tls.enabled
  uint32_t next_id_ = 1;
  uint32_t frame_bytes_max_ = 1 << 20;
  std::string rbuf_;
  size_t rpos_ = 0;
  std::string wbuf_;
  std::deque<std::pair<uint32_t, proto::Opcode>> queued_;
  std::vector<size_t> queued_ends_;  // end offset in wbuf_ of each queued frame
  uint32_t inflight_max_ = 0;        // from HELLO; 0 = no limit announced
  // While a call runs: its end, which bounds its connect, TLS handshake, HELLO, backoff and
  // resend too (a call never takes longer than its timeout). Unbounded otherwise.
  std::chrono::steady_clock::time_point call_end_ = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point bounded(std::chrono::steady_clock::time_point d) const {
    return std::min(d, call_end_);
  }
  int bounded_ms(int ms) const;  // `ms` from now, cut at call_end_ (at least 1)
};

}  // namespace stockd
