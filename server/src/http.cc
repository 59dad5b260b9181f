// The server's pages for the operator's HTTP endpoint (admin_http.h): /metrics in the Prometheus
// text format, and /healthz.
#include <cstdio>

#include "server_impl.h"

namespace stockd {

namespace {
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

Status Server::Impl::health() const {
  if (commit.failed()) return commit.error().context("store failed");
  if (connections.stopping()) return Status::Refused("stopping");
  return Status::Ok();
}

std::string Server::Impl::metrics_text() const {
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
  render_histogram(out, "stockd_group_commit_batch_ops",
                   "Decisions (log entries) per group commit.", metrics.batch_ops);
  const BookCounters& bc = book->counters();
  line(out, "stockd_connections", "gauge", "Open client connections.", double(connections.size()));
  line(out, "stockd_connections_accepted_total", "counter", "Client connections accepted.",
       double(connections.accepted_total()));
  line(out, "stockd_connections_rejected_total", "counter",
       "Client connections refused over --connections-max.", double(connections.rejected_total()));
  line(out, "stockd_live_holds", "gauge", "Holds currently held.", double(book->live_holds()));
  line(out, "stockd_skus", "gauge", "SKUs in the book.", double(book->sku_count()));
  line(out, "stockd_hold_expiries_total", "counter", "Holds expired since start.",
       double(bc.expiries));
  line(out, "stockd_idempotent_replays_total", "counter",
       "Requests answered from an idempotency key.", double(bc.idem_hits));
  line(out, "stockd_outbox_head_seq", "gauge", "Highest durable outbox sequence number.",
       double(outbox_feed.head()));
  line(out, "stockd_outbox_acked_seq", "gauge", "Highest outbox sequence number acknowledged.",
       double(outbox_feed.acked()));
  line(out, "stockd_outbox_lag", "gauge", "Outbox records not yet acknowledged by the sidecar.",
       double(outbox_feed.head() - std::min(outbox_feed.head(), outbox_feed.acked())));
  line(out, "stockd_store_errors_total", "counter", "Failed store writes or syncs.",
       double(metrics.store_errors));
  line(out, "stockd_group_gathers_full_total", "counter",
       "Groups sealed once every client answered by the group before sent again.",
       double(metrics.gathers_full));
  line(out, "stockd_group_gathers_timed_out_total", "counter",
       "Groups sealed when --group-gather-us ran out before the answered clients sent again.",
       double(metrics.gathers_timed_out));
  line(out, "stockd_store_failed", "gauge", "1 while writes are refused after a store failure.",
       commit.failed() ? 1 : 0);
  line(out, "stockd_bad_frames_total", "counter", "Connections closed for unframeable input.",
       double(metrics.bad_frames));
  line(out, "stockd_output_bytes", "gauge",
       "Answers made and not yet written, all connections (--output-budget).",
       double(connections.out_bytes()));
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
       "Metrics connections refused, or closed half-sent to make room, over "
       "--http-connections-max.",
       double(metrics.http_rejected));
  line(out, "stockd_read_buffer_bytes", "gauge",
       "Bytes of incomplete frames held for all connections.", double(connections.rbuf_bytes()));
  line(out, "stockd_read_budget_closes_total", "counter",
       "Connections closed because incomplete frames passed --read-buffer-budget.",
       double(metrics.read_budget_closes));
  line(out, "stockd_log_sequence_number", "gauge", "Our log sequence number (batches written).",
       double(commit.lsn()));
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
