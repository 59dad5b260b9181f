// The operator's HTTP endpoint: GET /metrics (Prometheus text) and GET /healthz, on the loop.
// A tiny HTTP/1.x responder: one request per connection, then FIN and close (linger.h). At most
// --http-connections-max are open; each must be read and answered within --http-timeout-ms
// (sweep), so half-sent requests cannot pile up. What the pages say is the server's (Pages).
#pragma once

#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metrics.h"
#include "stockd/config.h"

namespace stockd {

struct HttpConn;

class AdminHttp {
 public:
  // Over --http-connections-max the oldest peer without a whole request is closed to make
  // room; if every slot has its request, the newcomer gets a 503 and lingers like any answered
  // connection: at most this many at a time, apart from the slots. Past it one is closed
  // without an answer.
  static constexpr size_t kRefusalsMax = 16;

  struct Pages {
    virtual ~Pages() = default;
    virtual std::string metrics_text() const = 0;  // GET /metrics
    virtual Status health() const = 0;             // GET /healthz: ok = 200, else 503 and why
  };

  AdminHttp(uv_loop_t& loop, const Config& config, std::shared_ptr<spdlog::logger> log,
            Metrics& metrics, const Pages& pages)
      : loop_(loop), config_(config), log_(std::move(log)), metrics_(metrics), pages_(pages) {}
  AdminHttp(const AdminHttp&) = delete;
  AdminHttp& operator=(const AdminHttp&) = delete;

  // Listens on --metrics-listen when it is set. false: it cannot (logged).
  bool start();
  void sweep(int64_t now);  // closes those past --http-timeout-ms, and lingering ones (linger.h)
  void close_all();         // stopping: the listener and every connection

 private:
  void on_accept();
  void answer(HttpConn* h);

  uv_loop_t& loop_;
  const Config& config_;
  std::shared_ptr<spdlog::logger> log_;
  Metrics& metrics_;
  const Pages& pages_;
  uv_tcp_t listener_{};
  bool listening_ = false;
  std::vector<HttpConn*> conns_;
  size_t refusals_ = 0;  // connections of conns_ refused with a 503 (HttpConn::refusals set)
  char read_buf_[4096];
};

}  // namespace stockd
