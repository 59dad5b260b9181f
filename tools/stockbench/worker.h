// One load thread: an epoll loop over its share of the connections. See driver.h for the
// model. A Worker is used by one thread only; it talks to the others through Shared.
#pragma once

#include <sys/epoll.h>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "driver.h"
#include "net.h"
#include "ops.h"
#include "schedule.h"
#include "stockd/tls_client.h"
#include "workload.h"

namespace stockd::bench {

class Worker {
 public:
  // Drives `conns` connections; `budget` operations at most (UINT64_MAX = no limit).
  Worker(const Config& c, const Endpoint& ep, std::unique_ptr<Codec> codec, uint32_t index,
         uint32_t conns, uint64_t budget, Shared& shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens every connection and says HELLO. Ok, or why not (Io; the run must not start then).
  Status connect_all(int64_t deadline_ns);
  // Runs the load from shared.start_ns until the end, then drains.
  void run();
  const Tally& tally() const { return tally_; }
  int64_t last_answer_ns() const { return last_answer_ns_; }

 private:
  struct Pending {
    Op op;
    uint32_t id = 0;
    int64_t sched_ns = 0;  // latency is measured from here
  };
  struct Conn {
    uint32_t index = 0;
    int fd = -1;
    std::unique_ptr<TlsConnection> tls;  // --tls
    bool connecting = false, ready = false, dead = false, want_out = false, dirty = false;
    std::string wbuf;     // encoded requests not yet written
    size_t woff = 0;      // bytes of wbuf already written
    std::string partial;  // an answer split across reads
    std::deque<Pending> inflight;
    uint32_t next_id = 1;
    ConnKeys keys;
  };

  bool open_next();
  void finish_connect(Conn& k);
  void poll(int64_t timeout_ns);
  void on_event(uint32_t idx, uint32_t events);
  void read_conn(Conn& k);
  bool read_once(Conn& k);  // one read; false when there is nothing more (or the conn died)
  size_t parse(Conn& k, std::span<const uint8_t> in, int64_t now);
  void answered(Conn& k, const Pending& p, const Reply& r, int64_t now);
  void hello_answered(Conn& k, const Reply& r);
  void send(Conn& k, const Op& op, int64_t sched_ns);
  void start_chain(Conn& k, int64_t sched_ns);
  void chain_done(Conn& k, int64_t now);
  void issue_open(int64_t now);
  Conn* take_free();
  void flush_dirty();
  void flush_conn(Conn& k);
  void watch_out(Conn& k, bool on);
  void kill(Conn& k, const std::string& why);
  void begin_stop(int64_t now);

  const Config& c_;
  Endpoint ep_;
  std::unique_ptr<Codec> codec_;
  Shared& shared_;
  Generator gen_;
  Schedule schedule_;
  Tally tally_;
  std::vector<Conn> conns_;
  int epfd_ = -1;
  std::array<epoll_event, 1024> events_{};
  std::vector<uint8_t> scratch_;  // one read buffer for all connections
  std::vector<uint32_t> dirty_;   // connections with bytes to write
  std::deque<uint32_t> free_;     // open loop: one entry per free pipeline slot
  std::deque<int64_t> backlog_;   // open loop: due operations waiting for a slot
  Status error_;                  // connect phase: the first failure
  const bool open_;
  const uint64_t budget_;
  uint64_t issued_ = 0;       // operations started (open loop: scheduled)
  uint64_t outstanding_ = 0;  // requests sent, not yet answered
  uint32_t opened_ = 0, ready_ = 0, live_ = 0;
  bool running_ = false, stopping_ = false, warned_inflight_ = false;
  int64_t start_ns_ = 0, next_due_ns_ = 0, last_answer_ns_ = 0, drain_deadline_ns_ = 0;
};

}  // namespace stockd::bench
