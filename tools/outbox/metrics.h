// The sidecar's /metrics (Prometheus text format) and /healthz on their own small thread.
//
// The sidecar's loop publishes a snapshot after every batch and every failure; the HTTP thread
// only ever serves the latest snapshot (under a mutex), so it never touches the loop's state.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "stockd/status.h"

namespace stockd::outbox {

struct SidecarGauges {
  uint64_t cursor = 0;  // highest sequence number committed to SQL
  uint64_t head = 0;    // stockd's durable outbox head, as last seen
  bool sql_up = false;
  bool stockd_up = false;
  uint64_t copied_total = 0;        // records committed to SQL since start
  uint64_t sql_failures_total = 0;  // failed SQL transactions (each retried)
  uint64_t stockd_failures_total = 0;
};

class MetricsServer {
 public:
  MetricsServer() = default;
  ~MetricsServer();  // stops and joins the thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds HOST:PORT and starts serving. Ok, or why not (Invalid: not an IPv4 address; Io).
  Status start(const std::string& host, uint16_t port);
  void publish(const SidecarGauges& g);

 private:
  void serve();
  std::string render() const;
  std::string answer(const std::string& request) const;  // the whole HTTP answer to a request
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  SidecarGauges gauges_;
};

}  // namespace stockd::outbox
