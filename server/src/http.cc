// The operator's HTTP listener: GET /metrics (Prometheus text format) and GET /healthz.
// A tiny HTTP/1.x responder on the same loop: one request per connection, then close.
#include <cstdio>

#include "server_impl.h"
#include "stockd/endpoint.h"

namespace stockd {

// One metrics connection. At most --http-connections-max are open; each must be read and
// answered within --http-timeout-ms (sweep_http), so half-sent requests cannot pile up.
struct HttpConn {
  uv_tcp_t tcp{};
  std::string request;
  std::string response;
  uv_write_t wreq{};
  bool answered = false;
  int64_t accepted_ms = 0;
  std::vector<HttpConn*>* open = nullptr;  // the loop's list of open metrics connections
};

namespace {

constexpr size_t kHttpRequestBytesMax = 8192;

void close_http(HttpConn* h) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&h->tcp))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->tcp), [](uv_handle_t* t) {
    auto* h = static_cast<HttpConn*>(t->data);
    std::erase(*h->open, h);
    delete h;
  });
}

void respond(HttpConn* h, int code, const char* reason, const char* type, const std::string& body) {
  h->answered = true;
  char head[256];
  std::snprintf(head, sizeof head,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n",
                code, reason, type, body.size());
  h->response = head;
  h->response += body;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&h->tcp));
  uv_buf_t b = uv_buf_init(h->response.data(), static_cast<unsigned>(h->response.size()));
  h->wreq.data = h;
  uv_write(&h->wreq, reinterpret_cast<uv_stream_t*>(&h->tcp), &b, 1,
           [](uv_write_t* w, int) { close_http(static_cast<HttpConn*>(w->data)); });
}

// Prometheus label values must be valid UTF-8; SKU ids are bytes. Only plain printable ASCII
// ids are exported (others are skipped); quotes and backslashes are escaped.
bool label_value(std::string_view in, std::string& out) {
  out.clear();
  for (char ch : in) {
    if (ch < 0x20 || ch > 0x7e) return false;
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return true;
}

void line(std::string& out, const char* name, const char* type, const char* help, double v) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type,
                name, v);
  out += buf;
}

}  // namespace

bool Server::Impl::start_metrics() {
  if (!config.metrics_enabled) return true;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (std::string e = resolve_tcp(config.metrics_host, config.metrics_port, true, addr, addr_len);
      !e.empty()) {
    log->critical("cannot listen for metrics on {}:{}: {}", config.metrics_host,
                  config.metrics_port, e);
    return false;
  }
  uv_tcp_init(&loop, &metrics_listener);
  metrics_listener.data = this;
  metrics_open = true;
  int rc = uv_tcp_bind(&metrics_listener, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&metrics_listener), 128,
                   [](uv_stream_t* s, int st) {
                     auto* self = static_cast<Impl*>(s->data);
                     if (st == 0) return self->on_metrics_accept();
                     ++self->metrics.accept_errors;  // logged once per tick with the client port's
                   });
  }
  if (rc != 0) {
    log->critical("cannot listen for metrics on {}:{}: {}", config.metrics_host,
                  config.metrics_port, uv_strerror(rc));
    return false;
  }
  const bool v6 = config.metrics_host.find(':') != std::string::npos;
  log->info("metrics on http://{}{}{}:{}/metrics", v6 ? "[" : "", config.metrics_host,
            v6 ? "]" : "", config.metrics_port);
  return true;
}

void Server::Impl::on_metrics_accept() {
  auto* h = new HttpConn();
  uv_tcp_init(&loop, &h->tcp);
  h->tcp.data = h;
  h->accepted_ms = wall_ms();
  h->open = &http_conns;
  http_conns.push_back(h);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&metrics_listener),
                reinterpret_cast<uv_stream_t*>(&h->tcp)) != 0) {
    close_http(h);
    return;
  }
  if (http_conns.size() > config.http_connections_max) {
    ++metrics.http_rejected;
    respond(h, 503, "Service Unavailable", "text/plain",
            "too many metrics connections (--http-connections-max)\n");
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&h->tcp),
      [](uv_handle_t* t, size_t, uv_buf_t* buf) {
        auto* self = static_cast<Impl*>(t->loop->data);
        buf->base = self->read_buf;
        buf->len = sizeof self->read_buf;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* h = static_cast<HttpConn*>(s->data);
        if (n < 0) return close_http(h);
        if (h->answered) return;
        h->request.append(buf->base, static_cast<size_t>(n));
        if (h->request.size() > kHttpRequestBytesMax) {
          return respond(h, 431, "Request Header Fields Too Large", "text/plain", "too large\n");
        }
        if (h->request.find("\r\n\r\n") == std::string::npos) return;
        static_cast<Impl*>(s->loop->data)
            ->http_answer(h->request, [h](int c, const char* r, const char* t,
                                          const std::string& b) { respond(h, c, r, t, b); });
      });
}

void Server::Impl::sweep_http(int64_t now) {
  for (HttpConn* h : std::vector<HttpConn*>(http_conns)) {
    if (now - h->accepted_ms >= static_cast<int64_t>(config.http_timeout_ms)) close_http(h);
  }
}

void Server::Impl::close_http_all() {
  for (HttpConn* h : std::vector<HttpConn*>(http_conns)) close_http(h);
}

void Server::Impl::http_answer(
    const std::string& req,
    const std::function<void(int, const char*, const char*, const std::string&)>& reply) {
  auto sp1 = req.find(' ');
  auto sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
  if (sp2 == std::string::npos) return reply(400, "Bad Request", "text/plain", "bad request\n");
  std::string method = req.substr(0, sp1);
  std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  if (method != "GET" && method != "HEAD") {
    return reply(405, "Method Not Allowed", "text/plain", "only GET\n");
  }
  if (path == "/metrics") {
    return reply(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_metrics());
  }
  if (path == "/healthz") {
    if (store_failed)
      return reply(503, "Service Unavailable", "text/plain", "store failed: " + store_error + "\n");
    if (stopping) return reply(503, "Service Unavailable", "text/plain", "stopping\n");
    return reply(200, "OK", "text/plain", "ok\n");
  }
  reply(404, "Not Found", "text/plain", "try /metrics or /healthz\n");
}

std::string Server::Impl::render_metrics() const {
  std::string out;
  out.reserve(16384);
  out += "# HELP stockd_requests_total Requests answered, by operation and status.\n";
  out += "# TYPE stockd_requests_total counter\n";
  char buf[256];
  for (size_t op = 0; op < kOpSlots; ++op) {
    for (size_t st = 0; st < kStatusSlots; ++st) {
      uint64_t n = metrics.answers[op][st];
      if (n == 0) continue;
      const char* opn = proto::opcode_known(static_cast<uint16_t>(op))
                            ? proto::opcode_name(static_cast<proto::Opcode>(op))
                            : "UNKNOWN";
      std::snprintf(buf, sizeof buf, "stockd_requests_total{op=\"%s\",status=\"%s\"} %llu\n", opn,
                    proto::status_name(static_cast<proto::Status>(st)),
                    static_cast<unsigned long long>(n));
      out += buf;
    }
  }
  render_histogram(out, "stockd_request_duration_seconds",
                   "From reading a request to writing its answer, durability wait included.",
                   metrics.request_seconds);
  render_histogram(out, "stockd_group_commit_write_seconds",
                   "Time to write (and fsync, in sync mode) one group commit batch.",
                   metrics.fsync_seconds);
  render_histogram(out, "stockd_group_commit_batch_ops", "Store operations per group commit batch.",
                   metrics.batch_ops);
  const BookCounters& bc = book->counters();
  line(out, "stockd_connections", "gauge", "Open client connections.", double(conns.size()));
  line(out, "stockd_connections_accepted_total", "counter", "Client connections accepted.",
       double(accepted_total));
  line(out, "stockd_connections_rejected_total", "counter",
       "Client connections refused over --connections-max.", double(rejected_total));
  line(out, "stockd_live_holds", "gauge", "Holds currently held.", double(book->live_holds()));
  line(out, "stockd_skus", "gauge", "SKUs in the book.", double(book->sku_count()));
  line(out, "stockd_hold_expiries_total", "counter", "Holds expired since start.",
       double(bc.expiries));
  line(out, "stockd_idempotent_replays_total", "counter",
       "Requests answered from an idempotency key.", double(bc.idem_hits));
  line(out, "stockd_outbox_head_seq", "gauge", "Highest durable outbox sequence number.",
       double(outbox_durable_head));
  line(out, "stockd_outbox_acked_seq", "gauge", "Highest outbox sequence number acknowledged.",
       double(outbox_acked));
  line(out, "stockd_outbox_lag", "gauge", "Outbox records not yet acknowledged by the sidecar.",
       double(outbox_durable_head - std::min(outbox_durable_head, outbox_acked)));
  line(out, "stockd_store_errors_total", "counter", "Failed store writes or syncs.",
       double(metrics.store_errors));
  line(out, "stockd_store_failed", "gauge", "1 while writes are refused after a store failure.",
       store_failed ? 1 : 0);
  line(out, "stockd_bad_frames_total", "counter", "Connections closed for unframeable input.",
       double(metrics.bad_frames));
  line(out, "stockd_output_bytes", "gauge",
       "Answers made and not yet written, all connections (--output-budget).", double(out_bytes));
  const std::pair<const char*, uint64_t> closes[] = {
      {"hello_timeout", metrics.hello_timeouts},      {"frame_timeout", metrics.frame_timeouts},
      {"write_timeout", metrics.write_timeouts},      {"idle_timeout", metrics.idle_timeouts},
      {"hello_pending_max", metrics.hello_evictions}, {"tls_error", metrics.tls_errors},
  };
  out += "# HELP stockd_connection_closes_total Connections closed by a deadline or a cap.\n";
  out += "# TYPE stockd_connection_closes_total counter\n";
  for (const auto& [reason, n] : closes) {
    std::snprintf(buf, sizeof buf, "stockd_connection_closes_total{reason=\"%s\"} %llu\n", reason,
                  static_cast<unsigned long long>(n));
    out += buf;
  }
  line(out, "stockd_output_stalls_total", "counter",
       "Times a connection was not read because its answers passed --output-bytes-max or "
       "--output-budget.",
       double(metrics.output_stalls));
  line(out, "stockd_accept_errors_total", "counter",
       "Failed accepts on the client port (EMFILE: out of file descriptors).",
       double(metrics.accept_errors));
  line(out, "stockd_http_rejected_total", "counter",
       "Metrics connections refused over --http-connections-max.", double(metrics.http_rejected));
  line(out, "stockd_read_buffer_bytes", "gauge",
       "Bytes of incomplete frames held for all connections.", double(rbuf_bytes));
  line(out, "stockd_read_budget_closes_total", "counter",
       "Connections closed because incomplete frames passed --read-buffer-budget.",
       double(metrics.read_budget_closes));
  line(out, "stockd_log_sequence_number", "gauge", "Our log sequence number (batches written).",
       double(lsn));
  // SKU-level gauges for a bounded set only (the first metrics_sku_max ids in byte order).
  proto::SkuListResp skus;
  if (config.metrics_sku_max > 0) book->sku_list({"", config.metrics_sku_max}, skus);
  if (!skus.skus.empty()) {
    out += "# HELP stockd_sku_units Units of a SKU by state (first --metrics-sku-max SKUs).\n";
    out += "# TYPE stockd_sku_units gauge\n";
    std::string label;
    for (const auto& s : skus.skus) {
      if (!label_value(s.sku, label)) continue;
      for (auto [state, v] : {std::pair{"available", s.available}, std::pair{"held", s.held},
                              std::pair{"sold", s.sold}}) {
        std::snprintf(buf, sizeof buf, "stockd_sku_units{sku=\"%s\",state=\"%s\"} %llu\n",
                      label.c_str(), state, static_cast<unsigned long long>(v));
        out += buf;
      }
    }
  }
  return out;
}

}  // namespace stockd
