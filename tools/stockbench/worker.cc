// One load thread's epoll loop. See worker.h and driver.h.
#include "worker.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "stockd/prefetch.h"

namespace stockd::bench {

namespace {

constexpr uint32_t kConnectingMax = 256;  // connects in progress at once (accept backlog)
constexpr size_t kReadChunk = 64 * 1024;  // bytes per recv
constexpr size_t kBacklogMax = 1u << 20;  // open loop: due operations waiting for a slot
constexpr int64_t kTickNs = 10'000'000;   // longest epoll wait
constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr size_t kTallyAhead = 32;  // answers whose tally slots parse() fetches first
constexpr int64_t kForever = std::numeric_limits<int64_t>::max();

}  // namespace

Worker::Worker(const Config& c, const Endpoint& ep, std::unique_ptr<Codec> codec, uint32_t index,
               uint32_t conns, uint64_t budget, Shared& shared)
    : c_(c),
      ep_(ep),
      codec_(std::move(codec)),
      shared_(shared),
      gen_(c, index, (c.rng_seed != 0 ? c.rng_seed : static_cast<uint64_t>(now_ns())) + index),
      schedule_(c, 1.0 / c.threads),
      tally_(c.skus.size()),
      conns_(conns),
      scratch_(kReadChunk),
      open_(c.open_loop()),
      budget_(budget) {
  for (uint32_t i = 0; i < conns; ++i) conns_[i].index = i;
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
}

Worker::~Worker() {
  for (Conn& k : conns_) {
    if (k.fd >= 0) ::close(k.fd);
  }
  if (epfd_ >= 0) ::close(epfd_);
}

// ---- Connect phase ----

Status Worker::connect_all(int64_t deadline_ns) {
  if (epfd_ < 0) return Status::Io(std::string("epoll_create1: ") + std::strerror(errno));
  while (ready_ < conns_.size() && error_.ok()) {
    while (opened_ < conns_.size() && opened_ - ready_ < kConnectingMax && open_next()) {
    }
    if (!error_.ok()) break;
    if (now_ns() > deadline_ns) {
      return Status::Io("timed out with " + std::to_string(ready_) + " of " +
                        std::to_string(conns_.size()) + " connections ready (--connect-timeout)");
    }
    poll(kTickNs);
  }
  return error_;
}

bool Worker::open_next() {
  Conn& k = conns_[opened_++];
  Result<int> fd = open_tcp(ep_, true, 0);
  if (!fd.ok()) {
    error_ = fd.status();
    return false;
  }
  k.fd = *fd;
  k.connecting = true;
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN;
  ev.data.u32 = k.index;
  k.want_out = true;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, k.fd, &ev) != 0) {
    error_ = Status::Io(std::string("epoll_ctl: ") + std::strerror(errno));
    return false;
  }
  return true;
}

void Worker::finish_connect(Conn& k) {
  if (Status s = connect_error(k.fd); !s.ok()) {
    kill(k, "connect to " + ep_.text + ": " + s.message());
    return;
  }
  k.connecting = false;
  if (c_.tls.enabled) {  // a blocking handshake: connections open before the clock starts
    Result<std::unique_ptr<TlsConnection>> tls =
        TlsConnection::start(k.fd, c_.tls, c_.host, c_.connect_timeout_s * 1000);
    if (!tls.ok()) {
      kill(k, "TLS to " + ep_.text + ": " + tls.status().message());
      return;
    }
    k.tls = std::move(tls).value();
  }
  Op hello;
  hello.kind = OpKind::kHello;
  send(k, hello, now_ns());
}

void Worker::hello_answered(Conn& k, const Reply& r) {
  if (r.status != kStatusOk) {
    kill(k,
         "HELLO refused: " + status_text(r.status) + (r.message.empty() ? "" : ": " + r.message));
    return;
  }
  k.ready = true;
  ++ready_;
  if (r.id != 0 && r.id < c_.pipeline && !warned_inflight_) {
    warned_inflight_ = true;
    std::fprintf(stderr,
                 "stockbench: the server keeps at most %llu requests in flight per "
                 "connection; --pipeline %u will queue behind it\n",
                 static_cast<unsigned long long>(r.id), c_.pipeline);
  }
}

// ---- The loop ----

void Worker::poll(int64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / kNsPerSecond),
              static_cast<long>(timeout_ns % kNsPerSecond)};
  int n = ::epoll_pwait2(epfd_, events_.data(), static_cast<int>(events_.size()), &ts, nullptr);
  for (int i = 0; i < n; ++i) on_event(events_[i].data.u32, events_[i].events);
  flush_dirty();
}

void Worker::on_event(uint32_t idx, uint32_t events) {
  Conn& k = conns_[idx];
  if (k.dead) return;
  if (k.connecting) {
    finish_connect(k);
    return;
  }
  if ((events & EPOLLOUT) != 0) flush_conn(k);
  if (!k.dead && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) read_conn(k);
}

void Worker::read_conn(Conn& k) {
  // epoll sees the socket, not what OpenSSL already holds: with TLS, read until it is empty.
  do {
    if (!read_once(k)) return;
  } while (k.tls && !k.dead);
}

bool Worker::read_once(Conn& k) {
  ssize_t n = k.tls ? k.tls->recv(scratch_.data(), scratch_.size())
                    : ::recv(k.fd, scratch_.data(), scratch_.size(), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  if (n <= 0) {
    kill(k, n == 0 ? "server closed the connection" : std::string("recv: ") + std::strerror(errno));
    return false;
  }
  const int64_t now = now_ns();
  const auto got = static_cast<size_t>(n);
  if (k.partial.empty()) {
    size_t used = parse(k, std::span(scratch_.data(), got), now);
    if (!k.dead && used < got) {
      k.partial.assign(reinterpret_cast<const char*>(scratch_.data()) + used, got - used);
    }
    return true;
  }
  k.partial.append(reinterpret_cast<const char*>(scratch_.data()), got);
  size_t used = parse(
      k, std::span(reinterpret_cast<const uint8_t*>(k.partial.data()), k.partial.size()), now);
  if (!k.dead) k.partial.erase(0, used);
  return true;
}

size_t Worker::parse(Conn& k, std::span<const uint8_t> in, int64_t now) {
  // Each answer is counted in its SKU's tally, over many SKUs a cache miss each: the slots of
  // the answers this read may bring are fetched first, so that the misses overlap.
  if (tally_.sold.size() > 1) {
    const size_t n = std::min(k.inflight.size(), kTallyAhead);
    for (size_t i = 0; i < n; ++i) stockd::prefetch(&tally_.sold[k.inflight[i].op.sku]);
  }
  size_t pos = 0;
  while (!k.inflight.empty() && !k.dead) {
    const Pending& front = k.inflight.front();
    Reply r;
    size_t used = 0;
    std::string why;
    Take t = codec_->take(in.subspan(pos), front.op, front.id, r, used, why);
    if (t == Take::kNeedMore) break;
    if (t == Take::kInvalid) {
      kill(k, "bad answer: " + why);
      return pos;
    }
    pos += used;
    Pending p = front;
    k.inflight.pop_front();
    --outstanding_;
    answered(k, p, r, now);
  }
  if (!k.dead && k.inflight.empty() && pos < in.size()) {
    kill(k, std::to_string(in.size() - pos) + " bytes arrived with no request in flight");
  }
  return pos;
}

void Worker::answered(Conn& k, const Pending& p, const Reply& r, int64_t now) {
  if (p.op.kind == OpKind::kHello) {
    hello_answered(k, r);
    return;
  }
  const uint64_t latency = now > p.sched_ns ? static_cast<uint64_t>(now - p.sched_ns) : 0;
  tally_.latency.record(latency);
  shared_.interval.record(latency);
  shared_.answered.fetch_add(1, std::memory_order_relaxed);
  if (r.status >= kStatusErrorMin) shared_.errors.fetch_add(1, std::memory_order_relaxed);
  last_answer_ns_ = now;
  if (auto next = account(c_, p.op, r, k.keys, tally_)) {
    send(k, *next, now);  // the chain goes on: COMMIT / RELEASE right away
    return;
  }
  chain_done(k, now);
}

// ---- Sending ----

void Worker::send(Conn& k, const Op& op, int64_t sched_ns) {
  Pending p{op, k.next_id++, sched_ns};
  codec_->encode(op, p.id, k.wbuf);
  k.inflight.push_back(p);
  ++outstanding_;
  if (op.kind != OpKind::kHello) ++tally_.sent;
  if (!k.dirty) {
    k.dirty = true;
    dirty_.push_back(k.index);
  }
}

void Worker::start_chain(Conn& k, int64_t sched_ns) {
  ++issued_;
  send(k, gen_.next(k.keys), sched_ns);
}

void Worker::chain_done(Conn& k, int64_t now) {
  if (k.dead) return;
  if (!open_) {
    if (!stopping_ && issued_ < budget_) start_chain(k, now);
    return;
  }
  if (!stopping_ && !backlog_.empty()) {
    const int64_t sched = backlog_.front();
    backlog_.pop_front();
    send(k, gen_.next(k.keys), sched);
    return;
  }
  free_.push_back(k.index);
}

Worker::Conn* Worker::take_free() {
  while (!free_.empty()) {
    Conn& k = conns_[free_.front()];
    free_.pop_front();
    if (!k.dead) return &k;
  }
  return nullptr;
}

// Open loop: starts every operation whose scheduled time has come (or backs it up).
void Worker::issue_open(int64_t now) {
  next_due_ns_ = kForever;
  while (issued_ < budget_) {
    const int64_t due = schedule_.due_ns(issued_);
    if (due < 0) return;
    if (start_ns_ + due > now) {
      next_due_ns_ = start_ns_ + due;
      return;
    }
    ++issued_;
    const int64_t sched = start_ns_ + due;
    if (Conn* k = take_free()) {
      send(*k, gen_.next(k->keys), sched);
    } else if (backlog_.size() < kBacklogMax) {
      backlog_.push_back(sched);
    } else {
      ++tally_.dropped;
    }
  }
}

void Worker::flush_dirty() {
  for (uint32_t idx : dirty_) {
    Conn& k = conns_[idx];
    k.dirty = false;
    if (!k.dead) flush_conn(k);
  }
  dirty_.clear();
}

void Worker::flush_conn(Conn& k) {
  while (k.woff < k.wbuf.size()) {
    ssize_t n = k.tls ? k.tls->send(k.wbuf.data() + k.woff, k.wbuf.size() - k.woff)
                      : ::send(k.fd, k.wbuf.data() + k.woff, k.wbuf.size() - k.woff, MSG_NOSIGNAL);
    if (n > 0) {
      k.woff += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!k.want_out) watch_out(k, true);
      return;
    } else {
      kill(k, std::string("send: ") + std::strerror(errno));
      return;
    }
  }
  k.wbuf.clear();
  k.woff = 0;
  if (k.want_out) watch_out(k, false);
}

void Worker::watch_out(Conn& k, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u32 = k.index;
  ::epoll_ctl(epfd_, EPOLL_CTL_MOD, k.fd, &ev);
  k.want_out = on;
}

void Worker::kill(Conn& k, const std::string& why) {
  if (k.dead) return;
  k.dead = true;
  k.tls.reset();
  ::close(k.fd);
  k.fd = -1;
  for (const Pending& p : k.inflight) tally_.note_lost(p.op);
  outstanding_ -= k.inflight.size();
  k.inflight.clear();
  k.wbuf.clear();
  k.partial.clear();
  if (!running_) {
    if (error_.ok()) error_ = Status::Io(why);
    return;
  }
  ++tally_.disconnects;
  --live_;
  if (tally_.first_error.empty()) tally_.first_error = why;
}

// ---- Run phase ----

void Worker::begin_stop(int64_t now) {
  stopping_ = true;
  tally_.dropped += backlog_.size();
  backlog_.clear();
  drain_deadline_ns_ = now + static_cast<int64_t>(c_.drain_s * kNsPerSecond);
}

void Worker::run() {
  running_ = true;
  live_ = static_cast<uint32_t>(conns_.size());
  start_ns_ = shared_.start_ns.load();
  int64_t end = start_ns_ + static_cast<int64_t>(c_.duration_s * kNsPerSecond);
  if (open_) end = start_ns_ + static_cast<int64_t>(schedule_.seconds() * kNsPerSecond);
  if (!open_ && c_.requests > 0) end = kForever;
  for (uint32_t slot = 0; slot < c_.pipeline; ++slot) {
    for (Conn& k : conns_) {
      if (open_) {
        free_.push_back(k.index);
      } else if (issued_ < budget_) {
        start_chain(k, now_ns());
      }
    }
  }
  flush_dirty();
  while (live_ > 0) {
    const int64_t now = now_ns();
    const bool all_issued = issued_ >= budget_ && backlog_.empty();
    if (!stopping_ && (now >= end || all_issued || shared_.abort.load())) begin_stop(now);
    if (stopping_ && (outstanding_ == 0 || now >= drain_deadline_ns_)) break;
    if (open_ && !stopping_) issue_open(now);
    flush_dirty();
    int64_t wait = std::min(kTickNs, (stopping_ ? drain_deadline_ns_ : end) - now);
    if (open_ && !stopping_) wait = std::min(wait, next_due_ns_ - now_ns());
    poll(std::max<int64_t>(wait, 0));
  }
  for (Conn& k : conns_) {
    for (const Pending& p : k.inflight) tally_.note_lost(p.op);  // the drain timed out
  }
}

}  // namespace stockd::bench
