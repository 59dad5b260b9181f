// Private to the server: the loop's state, shared by server.cc (lifecycle, group commit),
// conn.cc (connection I/O) and outbox.cc (the sidecar's operations).
#pragma once

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "admin_http.h"
#include "conn.h"
#include "dispatch.h"
#include "group_commit.h"
#include "metrics.h"
#include "outbox_feed.h"
#include "stockd/book.h"
#include "stockd/persist.h"
#include "stockd/server.h"
#include "stockd/store.h"

namespace stockd {

int64_t wall_ms();  // the book's clock: ms since the Unix epoch

struct Server::Impl : AdminHttp::Pages {
  Impl(Config c, storage::StoreOptions so)
      : config(std::move(c)), store_options(so), book(std::make_unique<Book>(book_limits())) {
    make_dispatcher();
  }

  BookLimits book_limits() const {
    BookLimits l;
    l.finished_hold_retention_ms = config.idem_retention_ms;
    l.holds_expected = config.holds_expected;
    l.user_live_holds_max = config.user_holds_max;
    l.live_holds_max = config.live_holds_max;
    l.finished_holds_max = config.finished_holds_max;
    return l;
  }

  Config config;
  HelloGuard hello_guard{config.hello_fail_burst, config.hello_fail_refill_ms};
  storage::StoreOptions store_options;
  uv_async_t stop_async{};
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> loop_ready{false};  // stop_async may be signalled
  std::shared_ptr<spdlog::logger> log = spdlog::default_logger();
  std::unique_ptr<Book> book;
  std::unique_ptr<Dispatcher> dispatcher;

  uv_loop_t loop{};
  uv_tcp_t listener{};
  uv_check_t turn_end{};
  uv_async_t wal_done{};
  uv_timer_t expiry_timer{};
  uv_timer_t tick_timer{};      // 1 s: idle sweep, store resume, outbox trim
  uv_timer_t shutdown_timer{};  // --shutdown-timeout-ms after a stop begins: close the rest
  uv_idle_t backlog_idle{};     // active while connections have kept frames (no blocking poll)
  uv_signal_t sigterm{}, sigint{}, sighup{};
  bool listening = false;
  Metrics metrics;
  AdminHttp admin_http{loop, config, log, metrics, *this};  // GET /metrics, /healthz

  GroupCommit commit{config};           // the store, the WAL thread, the sequence of groups
  OutboxFeed outbox_feed{config, log};  // the outbox's positions, long polls and trim

  // ---- Connections. ----
  std::vector<Conn*> conns;             // every open connection
  std::vector<Conn*> flush_list;        // connections with answers not yet written
  std::vector<Conn*> backlog;           // connections with complete frames kept for a later turn
  size_t hello_pending = 0;             // open connections that have not completed HELLO
  size_t authed = 0;                    // connections that completed HELLO, until closed
  size_t out_bytes = 0;                 // unwritten answers of all connections (Conn::out_counted)
  char read_buf[64 * 1024];             // every read lands here first (one loop thread)
  std::unique_ptr<TlsContext> tls_ctx;  // --tls-cert: the client port speaks TLS
  std::string tls_plain;                // what one TLS read decrypted (reused)
  size_t rbuf_bytes = 0;                // incomplete frames kept by all connections (Conn::rbuf)
  uint64_t accepted_total = 0;
  uint64_t rejected_total = 0;

  // ---- Stats. ----
  uint64_t requests_total = 0;
  bool stopping = false;
  bool force_stop = false;            // the shutdown deadline passed
  uint64_t accept_errors_logged = 0;  // accept errors up to here were logged (once per tick)
  static constexpr rlim_t kStoreDescriptors = 256 + 64;  // RocksDB max_open_files, WAL, misc

  int run();
  bool fit_descriptor_limit();
  bool open_and_recover();
  bool start_listening();
  void write_ready_file() const;
  std::string ready_text;  // "HOST PORT\n" of the client port, for --ready-file
  void choose_hold_id_key();
  void take_input(Conn* c, const char* data, size_t n);
  void on_eof(Conn* c);
  void begin_stop(const char* why);
  void finish_stop_if_drained();

  // conn.cc: connections.
  enum class Stop { kNeedMore, kBlocked, kQuota };  // why process() stopped framing
  void on_accept();
  void evict_oldest_pending();
  void set_state(Conn* c, Conn::State to);
  void start_reading(Conn* c);
  void stop_reading(Conn* c);
  void on_read(Conn* c, ssize_t nread, const uv_buf_t* buf);
  Stop process(Conn* c, std::span<const uint8_t> data, size_t& used);
  void process_kept(Conn* c);
  void after_process(Conn* c, Stop stop);
  void add_backlog(Conn* c);
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
  void sweep_conns(int64_t now);

  void end_of_turn();
  void on_wal_done();
  void fail_store(const std::string& why);
  void make_dispatcher();
  std::string load_book(Recovered& r);
  bool reload_book();
  void try_recover_store();
  void flush(Conn* c);
  void after_write(Conn* c);
  void flush_all();
  void mark_flush(Conn* c);
  void arm_expiry();
  void on_tick();

  DispatchOutcome loop_answer(Conn* c, const proto::FrameHeader& h, std::string& out);
  void answer_polls(bool expired_only);
  void extra_stats(std::vector<proto::Stat>& s) const;

  // AdminHttp::Pages (http.cc): what /metrics and /healthz show.
  std::string metrics_text() const override;
  std::string unhealthy() const override;
};

}  // namespace stockd
