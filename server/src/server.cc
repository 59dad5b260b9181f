// The loop: accept, read, frame, dispatch, group commit, write. One thread; libuv handles are
// freed only in their close callbacks; the WAL thread reaches us only through uv_async_send.
#include "stockd/server.h"

#include <sys/resource.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "server_impl.h"
#include "stockd/check.h"
#include "stockd/endpoint.h"
#include "stockd/persist.h"

namespace stockd {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// Start and stop.

// The exit code of a start refused for `s`: the data needs an operator (damaged, a lost log or
// mark, an earlier layout: restarting repeats the refusal), a bad setting, or a fault that may
// pass (an I/O error).
int start_refusal_code(const Status& s) {
  switch (s.code()) {
    case Status::Code::kCorruption:
    case Status::Code::kRefused:
      return Server::kExitDataNeedsOperator;
    case Status::Code::kInvalid:
      return Server::kExitConfig;
    default:
      return Server::kExitFault;
  }
}

int Server::Impl::open_and_recover() {
  if (config.durability == Durability::kOff) {
    // A store there is a sale's record: starting blank beside it would sell again what it (and
    // SQL) says is sold, and what is sold now would never reach it.
    std::error_code ec;
    for (const char* file : {"CURRENT", "ACKED"}) {
      if (config.data_dir.empty()) break;
      if (std::filesystem::exists(std::filesystem::path(config.data_dir) / file, ec)) {
        log->critical(
            "refusing to start: --durability off keeps nothing, and {} holds a store (its {}); "
            "start it with --durability sync or interval, or give off another --data-dir (or "
            "none)",
            config.data_dir, file);
        return kExitConfig;
      }
    }
    log->warn("durability off: state lives in memory only and is lost on restart");
    choose_hold_id_key();
    return 0;
  }
  auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (std::filesystem::is_directory(config.data_dir, ec)) {  // else the open below says why
    Result<std::unique_ptr<storage::DirLock>> locked = storage::DirLock::take(config.data_dir);
    if (!locked.ok()) {  // in use: it may be a server still stopping, so a retry may pass
      log->critical("refusing to start: {}", locked.status().message());
      return kExitFault;
    }
    dir_lock = std::move(locked).value();
  }
  if (Status s = commit.open(store_options); !s.ok()) {
    log->critical("{}", s.message());
    return start_refusal_code(s);
  }
  Recovered r;
  if (Status s = load_book(r); !s.ok()) {
    log->critical("refusing to start: data in {} is damaged: {}", config.data_dir, s.message());
    return start_refusal_code(s);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (r.snapshot_lsn != 0) {
    log->error(
        "{}: fell back on the snapshot at lsn {} and replayed the log after it; the state is "
        "written anew as the checkpoint and the damaged table files are gone",
        r.damaged, r.snapshot_lsn);
  }
  log->info(
      "recovered {} at lsn {} ({} skus, {} holds, {} keys, {} codes) and replayed {} "
      "decisions of {} log groups to lsn {} ({} outbox records retained) in {:.3f}s",
      r.snapshot_lsn != 0 ? "the snapshot" : "a checkpoint", r.checkpoint_lsn, r.skus, r.holds,
      r.idem, r.codes, r.replayed, r.log_groups, commit.lsn(), r.outbox, secs);
  commit.start_wal([this] { uv_async_send(&wal_done); });
  commit.start_checkpointer(book_limits());
  return 0;
}

void Server::Impl::make_dispatcher() {
  dispatcher = std::make_unique<Dispatcher>(*book, config, &hello_guard);
}

DispatchOutcome Server::Impl::answer(Conn* c, const proto::FrameHeader& h,
                                     std::span<const uint8_t> body, std::string& out) {
  DispatchOutcome o =
      dispatcher->handle(c->session, h, body, wall_ms(), !commit.failed(), commit.changes(), out);
  return o.loop ? loop_answer(c, h, out) : o;
}

// The requests the dispatcher leaves to the loop (OpInfo: they read the loop and the store):
// STATS (the book's counters and the loop's) and the outbox's operations.
DispatchOutcome Server::Impl::loop_answer(Conn* c, const proto::FrameHeader& h, std::string& out) {
  const proto::Request& req = dispatcher->request();
  if (h.opcode == static_cast<uint16_t>(proto::Opcode::kStats)) {
    proto::StatsResp r;
    book->stats(r.stats);
    extra_stats(r.stats);
    proto::encode_response(proto::Opcode::kStats, h.request_id, proto::Status::kOk,
                           proto::Response(std::move(r)), out);
    return {.status = proto::Status::kOk};
  }
  bool acked_moved = false;
  DispatchOutcome o = outbox_feed.handle(c, h, req, commit.failed(), out, acked_moved);
  if (acked_moved) book->outbox_ack(outbox_feed.acked(), wall_ms(), commit.changes());  // logged
  return o;
}

// Answers long polls that now have records (or, with expired_only, whose wait ran out; all of
// them while stopping), each on its connection, then frames what waited behind it.
void Server::Impl::answer_polls(bool expired_only) {
  const int64_t now = wall_ms();
  for (auto& p : outbox_feed.take_ready(expired_only, connections.stopping(), now)) {
    Conn* c = p.conn;
    proto::OutboxReadResp resp;
    outbox_feed.read(p.req, resp);
    uint64_t begin = c->out_base + c->out.size();
    proto::encode_response(proto::Opcode::kOutboxRead, p.header.request_id, proto::Status::kOk,
                           proto::Response(std::move(resp)), c->out);
    connections.answered_later(c, begin, p.header, commit.durable(), now);
  }
}

// Rebuilds the book, and everything the loop keeps beside it, from what the store holds: at
// start, and after a failed write. On error the current book stays and the error is returned.
Status Server::Impl::load_book(Recovered& r) {
  auto fresh = std::make_unique<Book>(book_limits());
  if (Status s = commit.recover_into(*fresh, r); !s.ok()) return s;
  book = std::move(fresh);
  // After a failed write the key waits for the store to take writes again: its entry, sealed
  // into the failed writer, would fail the store again at once (a spin, never a reopen).
  if (!commit.failed()) choose_hold_id_key();
  make_dispatcher();
  outbox_feed.reset(commit.store(), r.meta.outbox_acked, r.meta.outbox_first,
                    book->meta().next_outbox_seq - 1, std::move(r.outbox_groups));
  return Status::Ok();
}

// A book that never made a hold gets a random key, so that hold ids cannot be walked; it is
// durable with the first group (the meta row). A store that made holds keeps its key (all zero
// for data dirs older than keys, whose ids stay sequential).
void Server::Impl::choose_hold_id_key() {
  if (config.sequential_hold_ids || book->meta().next_hold_id != 1) return;
  if (!book->hold_id_key().sequential()) return;  // taken at an earlier start, before any hold
  std::random_device rd;
  HoldIdKey key;
  while (key.sequential()) {
    key.k0 = (uint64_t{rd()} << 32) | rd();
    key.k1 = (uint64_t{rd()} << 32) | rd();
  }
  (void)book->set_hold_id_key(key, wall_ms(), commit.changes());  // no hold yet: always taken
}

// After a failed write: back to what is durable. false: cannot; stopping.
bool Server::Impl::reload_book() {
  Recovered r;
  if (Status s = load_book(r); !s.ok()) {
    log->critical("cannot reload state from the store: {}; stopping", s.message());
    fault_code = kExitFault;
    begin_stop("store failure");
    return false;
  }
  return true;
}

// While the store is failed (called every second): close it and open it again, exactly as a
// restart would (RocksDB's in-place Resume() does not clear a failed WAL append in 7.8), reload
// the book from it, and prove it takes a synced write before accepting writes again.
void Server::Impl::try_recover_store() {
  outbox_feed.set_store(nullptr);
  // The data dir's path still names the directory locked at start (a symlink repointed or the
  // dir replaced meanwhile would make this open another server's store).
  Status s = dir_lock ? dir_lock->still_ours(config.data_dir) : Status::Ok();
  if (s.ok()) s = commit.reopen(store_options);
  if (!s.ok()) {
    // Refused: retrying cannot help (another server wrote to it meanwhile, or its log is gone).
    if (s.code() == Status::Code::kRefused) {
      log->critical("cannot take the store back: {}; stopping", s.message());
      fault_code = kExitFault;
      begin_stop("store refused");
      return;
    }
    log->error("store still failing: {}", s.message());
    return;
  }
  if (auto [from, to] = commit.take_voided(); from != 0) {
    log->warn(
        "the log held lsn {}..{}, whose write failed (its answers said nothing was kept): "
        "deleted",
        from, to);
  }
  if (!reload_book()) return;
  if (Status s = commit.resume([this] { uv_async_send(&wal_done); }, book_limits()); !s.ok()) {
    log->error("store still failing: {}", s.message());
    return;
  }
  choose_hold_id_key();  // a store that never made a hold (nothing if it has a key)
  log->warn("store recovered at lsn {}; accepting writes again", commit.lsn());
}

bool Server::Impl::start_listening() {
  if (!config.tls_cert.empty()) {
    Result<std::unique_ptr<TlsContext>> tls = TlsContext::create(config);
    if (!tls.ok()) {
      log->critical("cannot serve TLS: {}", tls.status().message());
      return false;
    }
    connections.set_tls(std::move(*tls));
  }
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (Status s = resolve_tcp(config.listen_host, config.listen_port, true, addr, addr_len);
      !s.ok()) {
    log->critical("cannot listen on {}:{}: {}", config.listen_host, config.listen_port,
                  s.message());
    return false;
  }
  int rc = uv_tcp_bind(&listener, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 4096, [](uv_stream_t* s, int st) {
      auto* self = static_cast<Impl*>(s->data);
      if (st == 0) return self->connections.accept(s);
      // Out of descriptors (EMFILE) or another accept failure: counted, logged at most once per
      // tick; libuv keeps a spare descriptor to refuse the peer rather than spin.
      if (self->metrics.accept_errors++ == self->accept_errors_logged) {
        self->log->error("accept failed: {} (connections {}, see --connections-max)",
                         uv_strerror(st), self->connections.size());
      }
    });
  }
  if (rc != 0) {
    log->critical("cannot listen on {}:{}: {}", config.listen_host, config.listen_port,
                  uv_strerror(rc));
    return false;
  }
  if (!is_loopback(config.listen_host) && config.client_token.empty()) {
    log->warn(
        "--insecure-no-auth: listening on {} and buyers need no token; anyone who reaches "
        "the port can buy",
        config.listen_host);
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&bound), &len);
  char host[64] = {0};
  int port = 0;
  if (bound.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&bound);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&bound);
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  log->info("listening on {}:{} (durability {}, admin {})", host, port,
            durability_name(config.durability), config.admin_token.empty() ? "off" : "on");
  ready_text = std::string(host) + " " + std::to_string(port) + "\n";
  return true;
}

// Once every listener is up (the client port and the metrics port): "HOST PORT" for whoever
// waits on --ready-file, so nothing it connects to next can be refused.
void Server::Impl::write_ready_file() const {
  if (config.ready_file.empty()) return;
  std::string tmp = config.ready_file + ".tmp";
  if (FILE* f = std::fopen(tmp.c_str(), "w")) {
    std::fputs(ready_text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), config.ready_file.c_str());
  }
}

// Descriptors for every connection the flags allow, the metrics port and the store: the soft
// limit is raised to fit, or the start is refused with what to change.
bool Server::Impl::fit_descriptor_limit() {
  const rlim_t need = rlim_t{config.connections_max} + config.hello_pending_max +
                      Connections::kRefusalsMax + config.http_connections_max +
                      AdminHttp::kRefusalsMax + kStoreDescriptors;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return true;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need) return true;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    log->critical(
        "--connections-max {} + --hello-pending-max {} + --http-connections-max {} need {} file "
        "descriptors; the hard limit is {} (raise it, e.g. LimitNOFILE= or ulimit -Hn, or lower "
        "the flags)",
        config.connections_max, config.hello_pending_max, config.http_connections_max, need,
        static_cast<unsigned long long>(rl.rlim_max));
    return false;
  }
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    log->critical("cannot raise the descriptor limit to {}: {}", need, std::strerror(errno));
    return false;
  }
  return true;
}

int Server::Impl::run() {
  // A peer that closes while an answer is being written must not end the process: writes then
  // fail with EPIPE instead of raising SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  if (!fit_descriptor_limit()) return 2;
  if (const int refused = open_and_recover(); refused != 0) {
    commit.close();
    dir_lock.reset();
    return refused;
  }
  uv_loop_init(&loop);
  loop.data = this;
  uv_tcp_init(&loop, &listener);
  listening = true;  // the handle is open (closed by begin_stop, listening or not)
  listener.data = this;
  uv_check_init(&loop, &turn_end);
  turn_end.data = this;
  uv_check_start(&turn_end, [](uv_check_t* h) { static_cast<Impl*>(h->data)->end_of_turn(); });
  uv_async_init(&loop, &wal_done,
                [](uv_async_t* h) { static_cast<Impl*>(h->data)->on_wal_done(); });
  wal_done.data = this;
  uv_timer_init(&loop, &expiry_timer);
  expiry_timer.data = this;
  uv_timer_init(&loop, &tick_timer);
  tick_timer.data = this;
  uv_timer_init(&loop, &shutdown_timer);
  shutdown_timer.data = this;
  connections.init();
  uv_timer_start(
      &tick_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_tick(); }, 1000, 1000);
  uv_async_init(&loop, &stop_async,
                [](uv_async_t* h) { static_cast<Impl*>(h->data)->begin_stop("stop requested"); });
  stop_async.data = this;
  loop_ready = true;
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sighup);
  sigterm.data = sigint.data = sighup.data = this;
  auto on_signal = [](uv_signal_t* s, int signum) {
    static_cast<Impl*>(s->data)->begin_stop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
  };
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  // SIGHUP (a closed terminal, a reflex "reload"): stockd logs to stderr and reads its flags
  // once, so there is nothing to reopen or reload; it is logged and ignored, never fatal.
  uv_signal_start(
      &sighup,
      [](uv_signal_t* s, int) {
        static_cast<Impl*>(s->data)->log->info("SIGHUP ignored (nothing to reopen or reload)");
      },
      SIGHUP);

  int code = 0;
  // A listener that cannot bind may be a moment's matter (an address not up yet at boot, a
  // port still held by a process that is stopping): a fault a restart may cure, not a setting.
  if (!start_listening() || !admin_http.start()) {
    code = kExitFault;
    begin_stop("listen failed");
  } else {
    write_ready_file();
    // Holds whose TTL ran out while we were down expire in the first turn.
    book->expire(wall_ms(), commit.changes());
    arm_expiry();
    if (stop_requested) begin_stop("stop requested");
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  commit.stop_wal();  // its thread signals the loop: joined before the loop closes
  int rc = uv_loop_close(&loop);
  if (rc != 0) log->error("loop closed with open handles: {}", uv_strerror(rc));
  commit.close();
  dir_lock.reset();  // the store is closed: the data dir is free for the next server
  log->info("stopped");
  return code != 0 ? code : fault_code;
}

// A graceful stop: no new connections and no new requests; every answer already decided is
// sent (after its group is durable); then each connection is half-closed and drained until the
// peer closes (so unread input never becomes an RST that destroys answers in flight). Peers
// that do not take their answers or close get --shutdown-timeout-ms.
void Server::Impl::begin_stop(const char* why) {
  if (connections.stopping()) return;
  connections.stop_input();
  log->info("stopping ({}): finishing {} connections", why, connections.size());
  if (listening) uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
  listening = false;
  answer_polls(true);  // every long poll is answered now (stopping)
  connections.linger_all();
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&shutdown_timer)) == 0 && loop_ready) {
    uv_timer_start(
        &shutdown_timer,
        [](uv_timer_t* t) {
          auto* self = static_cast<Impl*>(t->data);
          self->log->warn("shutdown deadline: closing {} connections that did not finish",
                          self->connections.size());
          self->force_stop = true;
          self->connections.close_all();
          self->finish_stop_if_drained();
        },
        config.shutdown_timeout_ms, 0);
  }
  finish_stop_if_drained();
}

void Server::Impl::finish_stop_if_drained() {
  if (!connections.stopping()) return;
  const bool writing = commit.pending();
  if (writing && !commit.failed()) return;
  if (!connections.empty() && !force_stop && !commit.failed()) return;
  auto close = [](auto* h) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(h)))
      uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
  };
  connections.close_all();
  admin_http.close_all();
  close(&shutdown_timer);
  connections.close_handles();
  close(&sighup);
  close(&turn_end);
  close(&wal_done);
  close(&expiry_timer);
  close(&tick_timer);
  close(&sigterm);
  close(&sigint);
  {
    // A stop asked after this (the server stopped on its own) has nothing to signal: sending
    // on a closed handle, once the loop is gone, aborts in libuv.
    std::lock_guard lock(stop_mu);
    loop_ready = false;
  }
  close(&stop_async);
}

// ---------------------------------------------------------------------------------------------
// Group commit.

void Server::Impl::end_of_turn() {
  // A stop gathers nothing: no answered client will send again.
  if (!commit.in_flight() && (commit.ready_to_seal() || connections.stopping()))
    commit.seal(*book, outbox_feed, metrics);
  connections.end_of_turn();
  arm_expiry();
  finish_stop_if_drained();
}

void Server::Impl::on_wal_done() {
  Status failure;
  (void)commit.collect(metrics, failure);
  if (failure.ok() && outbox_feed.durable(commit.synced_lsn())) answer_polls(false);
  if (!failure.ok()) fail_store(failure);
  end_of_turn();
}

// A write or sync failed: nothing of the failed group (or of the group filling behind it)
// may be acknowledged. Their answers become STORAGE_UNAVAILABLE, the book is rebuilt from what
// the store holds, and writes are refused until the store resumes.
void Server::Impl::fail_store(const Status& why) {
  log->critical("STORE FAILED: {} -- refusing writes until it recovers", why.message());
  if (Status s = commit.fail(why); !s.ok()) log->error("{}", s.message());
  connections.fail_unreleased(commit.durable());
  if (!reload_book()) return;
  commit.skip_failed();
}

void Server::Impl::arm_expiry() {
  int64_t next = book->next_deadline();
  // While the store is failed nothing may expire (it would be a write): on_tick re-arms after.
  if (next == INT64_MAX || connections.stopping() || commit.failed()) {
    uv_timer_stop(&expiry_timer);
    return;
  }
  int64_t delay = std::max<int64_t>(0, next - wall_ms());
  uv_timer_start(
      &expiry_timer,
      [](uv_timer_t* t) {
        auto* self = static_cast<Impl*>(t->data);
        if (!self->commit.failed()) self->book->expire(wall_ms(), self->commit.changes());
        self->end_of_turn();
      },
      static_cast<uint64_t>(delay), 0);
}

void Server::Impl::on_tick() {
  int64_t now = wall_ms();
  connections.sweep(now);
  admin_http.sweep(now);
  accept_errors_logged = metrics.accept_errors;
  if (commit.failed() && !commit.in_flight() && !connections.stopping()) try_recover_store();
  if (!commit.failed() && !connections.stopping()) {
    book->expire(now, commit.changes());  // also forgets keys and finished holds past retention
    check_mark();
  }
  if (Checkpointer* cp = commit.checkpointer()) {
    outbox_feed.trimmed(cp->trimmed_below(), cp->outbox_first());
    if (Status s = cp->take_error(); !s.ok()) log->error("{}", s.message());
  }
  answer_polls(true);
  end_of_turn();
}

// ACKED deleted while the server runs (taken for a stray file): the server wrote on to the
// unlinked file, and the next start refused the store as one whose mark was lost. It is written
// anew within a second, and the operator is told.
void Server::Impl::check_mark() {
  storage::Store* store = commit.store();
  if (store == nullptr) return;
  // The path names another directory now (moved, replaced, a symlink repointed): its ACKED is
  // not this server's to write.
  if (dir_lock && !dir_lock->still_ours(config.data_dir).ok()) return;
  bool restored = false;
  if (Status s = store->restore_mark(restored); !s.ok()) {
    if (!mark_error_logged) {  // once, not every second while it lasts
      log->error("{} (the next start needs it: `stockctl mark rewrite` after a stop)", s.message());
    }
    mark_error_logged = true;
  } else if (restored) {
    mark_error_logged = false;
    log->warn(
        "{}/ACKED was deleted or replaced while the server ran: written anew; never "
        "delete it (docs/storage.md)",
        config.data_dir);
  }
}

void Server::Impl::extra_stats(std::vector<proto::Stat>& s) const {
  s.push_back({"connections", connections.size()});
  s.push_back({"connections_accepted_total", connections.accepted_total()});
  s.push_back({"connections_rejected_total", connections.rejected_total()});
  s.push_back({"requests_total", connections.requests_total()});
  // Group commit totals, from the same histograms /metrics serves.
  s.push_back({"groups_written", metrics.batch_ops.count});
  s.push_back({"group_ops_total", static_cast<uint64_t>(metrics.batch_ops.sum)});
  s.push_back({"group_write_us_total", static_cast<uint64_t>(metrics.fsync_seconds.sum * 1e6)});
  s.push_back({"group_gathers_full", metrics.gathers_full});
  s.push_back({"group_gathers_timed_out", metrics.gathers_timed_out});
  s.push_back({"lsn", commit.lsn()});
  if (const Checkpointer* cp = commit.checkpointer()) {
    s.push_back({"checkpoint_lsn", cp->checkpoint_lsn()});
    s.push_back({"checkpoints_written", cp->checkpoints()});
    s.push_back({"checkpoint_last_us", static_cast<uint64_t>(cp->last_checkpoint_us())});
    s.push_back({"snapshot_lsn", cp->snapshot_lsn()});
    s.push_back({"snapshots_written", cp->snapshots()});
    s.push_back({"snapshot_last_us", static_cast<uint64_t>(cp->last_snapshot_us())});
  }
  s.push_back({"store_failed", commit.failed() ? 1u : 0u});
  s.push_back({"outbox_head", outbox_feed.head()});
  s.push_back({"outbox_acked", outbox_feed.acked()});
  // 0 when no record is retained, as OUTBOX_READ and OUTBOX_STATUS say.
  s.push_back({"outbox_first", outbox_feed.first_retained()});
}

// ---------------------------------------------------------------------------------------------

Server::Server(Config config, storage::StoreOptions store_options)
    : impl_(std::make_unique<Impl>(std::move(config), store_options)) {}

void Server::request_stop() {
  impl_->stop_requested = true;
  std::lock_guard lock(impl_->stop_mu);
  if (impl_->loop_ready) uv_async_send(&impl_->stop_async);
}
Server::~Server() = default;
int Server::run() { return impl_->run(); }

}  // namespace stockd
