// The loop: accept, read, frame, dispatch, group commit, write. One thread; libuv handles are
// freed only in their close callbacks; the WAL thread reaches us only through uv_async_send.
#include "stockd/server.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>

#include "server_impl.h"
#include "stockd/persist.h"

namespace stockd {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------------------------------------
// Start and stop.

bool Server::Impl::open_and_recover() {
  if (config.durability == Durability::kOff) {
    log->warn("durability off: state lives in memory only and is lost on restart");
    return true;
  }
  auto start = std::chrono::steady_clock::now();
  std::string err;
  store = storage::Store::open(config.data_dir, store_options, err);
  if (!store) {
    log->critical("{}", err);
    return false;
  }
  Recovered r;
  err = load_book(r);
  if (!err.empty()) {
    log->critical("refusing to start: data in {} is damaged: {}", config.data_dir, err);
    return false;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log->info(
      "recovered {} skus, {} holds, {} keys, {} codes, {} outbox records at lsn {} in {:.3f}s",
      r.skus, r.holds, r.idem, r.codes, r.outbox, lsn, secs);
  make_wal();
  return true;
}

void Server::Impl::make_wal() {
  wal = std::make_unique<storage::WalWriter>(
      *store, config.durability == Durability::kSync,
      config.durability == Durability::kInterval ? config.fsync_interval_ms : 0,
      [this] { uv_async_send(&wal_done); }, static_cast<int>(config.wal_spin_us));
}

void Server::Impl::make_dispatcher() {
  dispatcher = std::make_unique<Dispatcher>(*book, config, [this](auto& s) { extra_stats(s); });
  dispatcher->set_outbox_handler([this](const proto::FrameHeader& h, const proto::Request& req,
                                        std::string& out) { return outbox(h, req, out); });
}

// Rebuilds the book, and everything the loop keeps beside it, from what the store holds: at
// start, and after a failed write. On error the current book stays and the error is returned.
std::string Server::Impl::load_book(Recovered& r) {
  auto fresh = std::make_unique<Book>(book_limits());
  std::string err = recover(*store, *fresh, r);
  if (!err.empty()) return err;
  book = std::move(fresh);
  make_dispatcher();
  lsn = r.meta.lsn;
  outbox_acked = r.meta.outbox_acked;
  outbox_first = r.meta.outbox_first;
  outbox_durable_head = outbox_inflight_head = book->meta().next_outbox_seq - 1;
  return "";
}

// After a failed write: back to what is durable. false: cannot; stopping.
bool Server::Impl::reload_book() {
  Recovered r;
  std::string err = load_book(r);
  if (!err.empty()) {
    log->critical("cannot reload state from the store: {}; stopping", err);
    begin_stop("store failure");
    return false;
  }
  return true;
}

// While the store is failed (called every second): close it and open it again, exactly as a
// restart would (RocksDB's in-place Resume() does not clear a failed WAL append in 7.8), reload
// the book from it, and prove it takes a synced write before accepting writes again.
void Server::Impl::try_recover_store() {
  wal.reset();  // a writer that saw a failure stays failed; start a fresh one
  store.reset();
  std::string err;
  store = storage::Store::open(config.data_dir, store_options, err);
  if (!store) {
    log->error("store still failing: {}", err);
    return;
  }
  if (!reload_book()) return;
  make_wal();
  storage::Status s = storage::Status::Ok();
  storage::Batch probe = store->batch();
  build_batch(probe, *book, Changes{}, lsn + 1, outbox_acked, outbox_first);
  s = store->write(probe, true);
  if (!s.ok()) {
    log->error("store still failing: {}", s.message());
    return;
  }
  ++lsn;
  store_failed = false;
  log->warn("store recovered at lsn {}; accepting writes again", lsn);
}

bool Server::Impl::start_listening() {
  sockaddr_storage addr{};
  int rc = uv_ip4_addr(config.listen_host.c_str(), config.listen_port,
                       reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    rc = uv_ip6_addr(config.listen_host.c_str(), config.listen_port,
                     reinterpret_cast<sockaddr_in6*>(&addr));
  }
  if (rc == 0) rc = uv_tcp_bind(&listener, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 4096, [](uv_stream_t* s, int st) {
      auto* self = static_cast<Impl*>(s->data);
      if (st == 0) self->on_accept();
    });
  }
  if (rc != 0) {
    log->critical("cannot listen on {}:{}: {}", config.listen_host, config.listen_port,
                  uv_strerror(rc));
    return false;
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
  listening = true;
  log->info("listening on {}:{} (durability {}, admin {})", host, port,
            durability_name(config.durability), config.admin_token.empty() ? "off" : "on");
  if (!config.ready_file.empty()) {
    std::string tmp = config.ready_file + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fprintf(f, "%s %d\n", host, port);
      std::fclose(f);
      std::rename(tmp.c_str(), config.ready_file.c_str());
    }
  }
  return true;
}

int Server::Impl::run() {
  if (!open_and_recover()) return 1;
  uv_loop_init(&loop);
  loop.data = this;
  uv_tcp_init(&loop, &listener);
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
  uv_timer_start(
      &tick_timer, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_tick(); }, 1000, 1000);
  uv_async_init(&loop, &stop_async,
                [](uv_async_t* h) { static_cast<Impl*>(h->data)->begin_stop("stop requested"); });
  stop_async.data = this;
  loop_ready = true;
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sigint);
  sigterm.data = sigint.data = this;
  auto on_signal = [](uv_signal_t* s, int signum) {
    static_cast<Impl*>(s->data)->begin_stop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
  };
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);

  int code = 0;
  if (!start_listening() || !start_metrics()) {
    code = 2;
    begin_stop("listen failed");
  } else {
    // Holds whose TTL ran out while we were down expire in the first turn.
    book->expire(wall_ms(), changes);
    arm_expiry();
    if (stop_requested) begin_stop("stop requested");
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  wal.reset();  // joins the WAL thread after it wrote what was submitted
  int rc = uv_loop_close(&loop);
  if (rc != 0) log->error("loop closed with open handles: {}", uv_strerror(rc));
  store.reset();
  log->info("stopped");
  return code;
}

void Server::Impl::begin_stop(const char* why) {
  if (stopping) return;
  stopping = true;
  log->info("stopping ({}): finishing {} connections", why, conns.size());
  if (listening) uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
  listening = false;
  for (Conn* c : conns) uv_read_stop(c->stream());
  finish_stop_if_drained();
}

void Server::Impl::finish_stop_if_drained() {
  if (!stopping) return;
  bool pending = inflight_seq != 0 || !changes.empty() || !flush_list.empty();
  for (Conn* c : conns) pending = pending || c->write_active;
  if (pending && !store_failed) return;
  auto close = [](auto* h) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(h)))
      uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
  };
  for (Conn* c : std::vector<Conn*>(conns)) close_conn(c);
  close(&turn_end);
  close(&wal_done);
  close(&expiry_timer);
  close(&tick_timer);
  close(&sigterm);
  close(&sigint);
  close(&stop_async);
  if (metrics_open) close(&metrics_listener);
}

// ---------------------------------------------------------------------------------------------
// Group commit.

void Server::Impl::end_of_turn() {
  if (inflight_seq == 0) seal_group();
  flush_all();
  arm_expiry();
  finish_stop_if_drained();
}

// Turns the filling group into a batch for the WAL thread, or, when it changed nothing and
// nothing is in flight, declares it durable at once. Called only when nothing is in flight.
void Server::Impl::seal_group() {
  assert(inflight_seq == 0);
  if (changes.empty() && extra_deletes.empty()) {
    durable_seq = fill_seq++;
    return;
  }
  if (config.durability == Durability::kOff) {  // no store, hence no outbox to advance
    changes.clear();
    durable_seq = fill_seq++;
    return;
  }
  if (!wal) return;  // the store is being reopened after a failure: keep filling
  storage::Batch b = store->batch();
  build_batch(b, *book, changes, ++lsn, outbox_acked, outbox_first);
  for (auto& k : extra_deletes) b.del(std::move(k));
  extra_deletes.clear();
  changes.clear();
  inflight_seq = fill_seq++;
  outbox_inflight_head = book->meta().next_outbox_seq - 1;
  wal->submit(std::move(b));
}

void Server::Impl::on_wal_done() {
  for (auto& d : wal->take_done()) {
    if (!d.status.ok()) {
      ++metrics.store_errors;
      fail_store(d.status.message());
      continue;
    }
    if (d.lsn == 0) continue;
    metrics.fsync_seconds.observe(static_cast<double>(d.write_us) / 1e6);
    metrics.batch_ops.observe(static_cast<double>(d.ops));
    durable_seq = inflight_seq;
    inflight_seq = 0;
    if (outbox_inflight_head > outbox_durable_head) {
      outbox_durable_head = outbox_inflight_head;
      answer_polls(false);
    }
  }
  end_of_turn();
}

// A write or sync failed: nothing of the failed group (or of the group filling behind it)
// may be acknowledged. Their answers become STORAGE_UNAVAILABLE, the book is rebuilt from what
// the store holds, and writes are refused until the store resumes.
void Server::Impl::fail_store(const std::string& why) {
  log->critical("STORE FAILED: {} -- refusing writes until it recovers", why);
  store_failed = true;
  store_error = why;
  inflight_seq = 0;
  for (Conn* c : conns) c->fail_unreleased(durable_seq);
  changes.clear();
  extra_deletes.clear();
  if (!reload_book()) return;
  durable_seq = fill_seq++;
}

void Server::Impl::arm_expiry() {
  int64_t next = book->next_deadline();
  // While the store is failed nothing may expire (it would be a write): on_tick re-arms after.
  if (next == INT64_MAX || stopping || store_failed) {
    uv_timer_stop(&expiry_timer);
    return;
  }
  int64_t delay = std::max<int64_t>(0, next - wall_ms());
  uv_timer_start(
      &expiry_timer,
      [](uv_timer_t* t) {
        auto* self = static_cast<Impl*>(t->data);
        if (!self->store_failed) self->book->expire(wall_ms(), self->changes);
        self->end_of_turn();
      },
      static_cast<uint64_t>(delay), 0);
}

void Server::Impl::on_tick() {
  int64_t now = wall_ms();
  for (Conn* c : std::vector<Conn*>(conns)) {
    if (now - c->last_active_ms > static_cast<int64_t>(config.idle_timeout_ms) &&
        !c->write_active && c->unanswered == 0) {
      close_conn(c);
    }
  }
  if (store_failed && inflight_seq == 0 && !stopping) try_recover_store();
  if (!store_failed && !stopping) {
    book->expire(now, changes);  // also forgets keys and finished holds past retention
    trim_outbox(now);
  }
  answer_polls(true);
  end_of_turn();
}

void Server::Impl::extra_stats(std::vector<proto::Stat>& s) const {
  s.push_back({"connections", conns.size()});
  s.push_back({"connections_accepted_total", accepted_total});
  s.push_back({"connections_rejected_total", rejected_total});
  s.push_back({"requests_total", requests_total});
  // Group commit totals, from the same histograms /metrics serves.
  s.push_back({"groups_written", metrics.batch_ops.count});
  s.push_back({"group_ops_total", static_cast<uint64_t>(metrics.batch_ops.sum)});
  s.push_back({"group_write_us_total", static_cast<uint64_t>(metrics.fsync_seconds.sum * 1e6)});
  s.push_back({"lsn", lsn});
  s.push_back({"store_failed", store_failed ? 1u : 0u});
  s.push_back({"outbox_head", outbox_durable_head});
  s.push_back({"outbox_acked", outbox_acked});
  s.push_back({"outbox_first", outbox_first});
}

// ---------------------------------------------------------------------------------------------

Server::Server(Config config, storage::StoreOptions store_options)
    : impl_(std::make_unique<Impl>(std::move(config), store_options)) {}

void Server::request_stop() {
  impl_->stop_requested = true;
  if (impl_->loop_ready) uv_async_send(&impl_->stop_async);
}
Server::~Server() = default;
int Server::run() { return impl_->run(); }

}  // namespace stockd
