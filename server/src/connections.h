// The loop's client connections: the table and its slots, reading and framing under each
// connection's share of a turn, answers written in order once their group is durable, the
// budgets a peer draws on (incomplete frames, unwritten answers) and the deadlines. What a
// request means is the server's (Host); everything a socket does is here. Loop thread only.
#pragma once

#include <spdlog/spdlog.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "conn.h"
#include "dispatch.h"
#include "group_commit.h"
#include "metrics.h"
#include "stockd/config.h"
#include "tls.h"

namespace stockd {

int64_t wall_ms();  // the book's clock: ms since the Unix epoch (server.cc)

class Connections {
 public:
  // Peers ended before HELLO (refused over the socket cap, the oldest of those still to say it,
  // or a bad first frame) get their error frame and linger like any finished connection, so
  // that they can read why; at most this many at a time, apart from the slots. Past it such a
  // peer is closed without a word: a flood of them cannot hold descriptors, or keep newcomers
  // out, for as long as each lingers.
  static constexpr size_t kRefusalsMax = 64;

  // What connections ask of the server.
  class Host {
   public:
    virtual ~Host() = default;
    // The answer to one request frame of `c`, appended to `out`.
    virtual DispatchOutcome answer(Conn* c, const proto::FrameHeader& h,
                                   std::span<const uint8_t> body, std::string& out) = 0;
    // A hint about a frame to be answered soon (see Dispatcher::prefetch).
    virtual void prefetch(const proto::FrameHeader& h, std::span<const uint8_t> body,
                          bool early) = 0;
    // `c` begins to close: what the server keeps for it (a long poll) goes.
    virtual void closing(Conn* c) = 0;
    // A connection was freed: a stop may be complete.
    virtual void closed() = 0;
  };

  Connections(uv_loop_t& loop, const Config& config, Metrics& metrics, GroupCommit& commit,
              std::shared_ptr<spdlog::logger> log, Host& host)
      : loop_(loop),
        config_(config),
        metrics_(metrics),
        commit_(commit),
        log_(std::move(log)),
        host_(host) {}
  Connections(const Connections&) = delete;
  Connections& operator=(const Connections&) = delete;

  void init();  // after uv_loop_init: the idle handle that runs the backlog
  void set_tls(std::unique_ptr<TlsContext> tls) { tls_ctx_ = std::move(tls); }
  void accept(uv_stream_t* listener);

  // A graceful stop: no more input is framed (stop_input); then each connection lingers once
  // its answers are out (linger_all). close_all() closes every one now; close_handles() the
  // idle handle, last.
  void stop_input() { stopping_ = true; }
  bool stopping() const { return stopping_; }  // the server's stop began
  void linger_all();
  void close_all();
  void close_handles();

  // The end of a loop turn: writes what became durable; the backlog's idle handle stops once
  // nothing waits in it.
  void end_of_turn();
  // Answers waiting on a group after `durable` become STORAGE_UNAVAILABLE.
  void fail_unreleased(uint64_t durable);
  // Deadlines, once per tick.
  void sweep(int64_t now);
  // A deferred answer (a long poll) was appended to c->out at stream offset `begin`, waiting on
  // group `tag` (or on the group of the answer before it, if later): send it, then frame what
  // waited behind it.
  void answered_later(Conn* c, uint64_t begin, const proto::FrameHeader& h, uint64_t tag,
                      int64_t now);

  size_t size() const { return conns_.size(); }
  bool empty() const { return conns_.empty(); }
  uint64_t accepted_total() const { return accepted_total_; }
  uint64_t rejected_total() const { return rejected_total_; }
  uint64_t requests_total() const { return requests_total_; }
  size_t out_bytes() const { return out_bytes_; }
  size_t rbuf_bytes() const { return rbuf_bytes_; }

 private:
  enum class Stop { kNeedMore, kBlocked, kQuota };  // why process() stopped framing

  void evict_oldest_pending();
  void link_pending(Conn* c);
  void unlink_pending(Conn* c);
  void set_state(Conn* c, Conn::State to);
  void start_reading(Conn* c);
  void stop_reading(Conn* c);
  void on_read(Conn* c, ssize_t nread, const uv_buf_t* buf);
  void on_eof(Conn* c);
  void take_input(Conn* c, const char* data, size_t n);
  Stop process(Conn* c, std::span<const uint8_t> data, size_t& used);
  size_t decode_ahead(const Conn* c, std::span<const uint8_t> data);
  void process_kept(Conn* c);
  void after_process(Conn* c, Stop stop);
  void add_backlog(Conn* c);
  void start_backlog_idle();
  void run_backlog();
  void account_rbuf(Conn* c);
  static bool hog_before(const Conn& a, const Conn& b);
  bool output_full(const Conn* c) const;
  void account_out(Conn* c);
  void answer_then_close(Conn* c, uint32_t request_id, proto::Status st, const std::string& why);
  void answer_frame(Conn* c, const proto::FrameHeader& h, std::span<const uint8_t> body);
  void finish_conn(Conn* c);
  void linger_if_done(Conn* c);
  void close_conn(Conn* c);
  void conn_closed(Conn* c);
  void flush(Conn* c);
  // c->mark_answer, and tells group commit where c's newest answer waits (its gathering).
  void mark(Conn* c, uint64_t tag, uint64_t begin, uint16_t opcode, uint32_t request_id);
  void after_write(Conn* c);
  void flush_all();
  void mark_flush(Conn* c);

  uv_loop_t& loop_;
  const Config& config_;
  Metrics& metrics_;
  GroupCommit& commit_;
  std::shared_ptr<spdlog::logger> log_;
  Host& host_;

  std::vector<Conn*> conns_;        // every open connection (Conn::slot; unordered)
  Conn* pending_oldest_ = nullptr;  // the list of Conn::in_pending, oldest first
  Conn* pending_newest_ = nullptr;
  std::vector<Conn*> flush_list_;  // connections with answers not yet written
  std::vector<Conn*> backlog_;     // connections with complete frames kept for a later turn
  uv_idle_t backlog_idle_{};       // active while backlog_ is not (no blocking poll)
  bool stopping_ = false;
  size_t hello_pending_ = 0;  // open connections that have not completed HELLO
  size_t refusals_ = 0;       // connections of conns_ with `refusal` set
  size_t authed_ = 0;         // connections that completed HELLO, until closed
  size_t out_bytes_ = 0;      // unwritten answers of all connections (Conn::out_counted)
  size_t rbuf_bytes_ = 0;     // incomplete frames kept by all connections (Conn::rbuf)
  char read_buf_[64 * 1024];  // every read lands here first
  // Frames one connection may answer in a loop turn (its share, so that the others get theirs).
  static constexpr size_t kTurnFramesMax = 64;
  struct Framed {  // a frame of process()'s input, decoded ahead (views into that input)
    proto::FrameHeader header;
    std::span<const uint8_t> body;
    size_t consumed = 0;
  };
  std::array<Framed, kTurnFramesMax> ahead_;
  std::unique_ptr<TlsContext> tls_ctx_;  // --tls-cert: the client port speaks TLS
  std::string tls_plain_;                // what one TLS read decrypted (reused)
  uint64_t accepted_total_ = 0;
  uint64_t rejected_total_ = 0;
  uint64_t requests_total_ = 0;
};

}  // namespace stockd
