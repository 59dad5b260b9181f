// Private to the server: the loop's state. server.cc keeps start, stop and the end of a turn,
// which calls the parts in order: the connections (connections.h, conn.cc), the group commit
// (group_commit.h), the outbox feed (outbox_feed.h) and the admin endpoint (admin_http.h).
#pragma once

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "admin_http.h"
#include "connections.h"
#include "dispatch.h"
#include "group_commit.h"
#include "metrics.h"
#include "outbox_feed.h"
#include "stockd/book.h"
#include "stockd/dir_lock.h"
#include "stockd/persist.h"
#include "stockd/server.h"
#include "stockd/store.h"

namespace stockd {

struct Server::Impl : AdminHttp::Pages, Connections::Host {
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
  std::mutex stop_mu;                   // request_stop()'s send against the handle's close
  std::atomic<bool> loop_ready{false};  // stop_async may be signalled (set under stop_mu)
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
  uv_signal_t sigterm{}, sigint{}, sighup{};
  bool listening = false;
  Metrics metrics;
  AdminHttp admin_http{loop, config, log, metrics, *this};  // GET /metrics, /healthz

  // Held from before the store opens until the process ends (across the reopens after a store
  // failure, which free RocksDB's LOCK): no second server takes the data dir meanwhile.
  std::unique_ptr<storage::DirLock> dir_lock;
  GroupCommit commit{config};           // the store, the WAL thread, the sequence of groups
  OutboxFeed outbox_feed{config, log};  // the outbox's positions, long polls and trim

  // The client connections: the table, reading, framing, writing, budgets and deadlines.
  Connections connections{loop, config, metrics, commit, log, *this};

  // ---- Stopping (connections.stopping() says whether a stop began). ----
  bool force_stop = false;            // the shutdown deadline passed
  int fault_code = 0;                 // 1 once a stop began for a fault (run() returns it)
  uint64_t accept_errors_logged = 0;  // accept errors up to here were logged (once per tick)
  static constexpr rlim_t kStoreDescriptors = 256 + 64;  // RocksDB max_open_files, WAL, misc

  int run();
  bool fit_descriptor_limit();
  int open_and_recover();  // 0, or the exit code of a refused start
  bool start_listening();
  void write_ready_file() const;
  std::string ready_text;  // "HOST PORT\n" of the client port, for --ready-file
  void choose_hold_id_key();
  void begin_stop(const char* why);
  void finish_stop_if_drained();

  void end_of_turn();
  void check_mark();  // ACKED deleted while running: written anew (once a second, the tick)
  bool mark_error_logged = false;
  void on_wal_done();
  void fail_store(const Status& why);
  void make_dispatcher();
  Status load_book(Recovered& r);
  bool reload_book();
  void try_recover_store();
  void arm_expiry();
  void on_tick();

  DispatchOutcome loop_answer(Conn* c, const proto::FrameHeader& h, std::string& out);
  void answer_polls(bool expired_only);
  void extra_stats(std::vector<proto::Stat>& s) const;

  // Connections::Host: what a request means (the dispatcher, then the loop's own operations).
  DispatchOutcome answer(Conn* c, const proto::FrameHeader& h, std::span<const uint8_t> body,
                         std::string& out) override;
  void prefetch(const proto::FrameHeader& h, std::span<const uint8_t> body, bool early) override {
    dispatcher->prefetch(h, body, early);
  }
  void closing(Conn* c) override { outbox_feed.forget(c); }
  void closed() override { finish_stop_if_drained(); }

  // AdminHttp::Pages (http.cc): what /metrics and /healthz show.
  std::string metrics_text() const override;
  Status health() const override;
};

}  // namespace stockd
