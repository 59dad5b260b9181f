// stockctl top: a live view of a running stockd for the operator on sale day.
//
// Every refresh reads STATS (one request) and every SKU (SKU_LIST, page by page, at most
// kSkuScanMax), and with --metrics also GET /metrics from stockd's --metrics-listen, for the
// request latency histogram. Rates and means are deltas between two refreshes; the first block
// is printed one interval after a first (baseline) sample, so every block has them. Top's own
// requests (its STATS, SKU_LIST pages and HELLOs) are taken out of requests/s.
//
// Output: on a terminal, the screen is cleared and redrawn (plain ANSI codes); otherwise one
// block per refresh, separated by a blank line; with --json one object per refresh, one line
// each. It runs until SIGINT/SIGTERM (exit 0) or --iterations blocks. A refresh that gets no
// answer is shown as an error and the next one tries again; the exit code is 3 (1 for a refusal)
// if the very first sample or the last refresh failed.
#include <netdb.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "commands.h"
#include "format.h"
#include "seed.h"

namespace stockd::ctl {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kSkuScanMax = 100'000;                // SKUs read per refresh (100 pages)
constexpr size_t kMetricsResponseBytesMax = 16 << 20;  // a /metrics answer larger is refused
constexpr int kMetricsTimeoutMs = 2000;                // connect, send and each read
constexpr uint32_t kRowsDefault = 10;                  // table rows when not on a terminal
constexpr int kFixedScreenLines = 12;                  // head lines + table titles and headers
constexpr size_t kSkuColumnBytesMax = 32;              // longer SKU ids are cut in the tables
constexpr const char* kLatencyBucket = "stockd_request_duration_seconds_bucket{";

volatile std::sig_atomic_t g_stop = 0;
void on_stop_signal(int) { g_stop = 1; }

// ---- The latency histogram from /metrics ----

struct Bucket {
  double le = 0;     // upper bound, seconds (+inf for the last)
  double count = 0;  // cumulative
};
using Buckets = std::vector<Bucket>;

// GET `path` from host:port over a plain socket: the body of a 200 answer; Io when it cannot be
// fetched, Invalid when the answer is no HTTP or too big, Refused for another HTTP status.
Result<std::string> http_get(const ClientOptions& at, const std::string& path) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(at.port);
  if (int rc = getaddrinfo(at.host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    return Status::Io(at.host + ": " + gai_strerror(rc));
  }
  int fd = -1;
  std::string error = "no address";
  for (addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    timeval tv{kMetricsTimeoutMs / 1000, (kMetricsTimeoutMs % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // Linux: bounds connect() too
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      error = std::string("connect: ") + std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(list);
  if (fd < 0) return Status::Io(error);
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + at.host + ":" + port +
                          "\r\nConnection: close\r\n\r\n";
  std::string resp;
  bool sent = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  char chunk[65536];
  while (sent && resp.size() <= kMetricsResponseBytesMax) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = std::string("read: ") + std::strerror(errno);
    if (n <= 0) break;
    resp.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!sent) return Status::Io("send failed");
  if (resp.size() > kMetricsResponseBytesMax) {
    return Status::Invalid("answer over " + std::to_string(kMetricsResponseBytesMax) + " bytes");
  }
  size_t head_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) {
    return resp.empty() ? Status::Io(error) : Status::Invalid("not an HTTP answer");
  }
  if (resp.compare(8, 5, " 200 ") != 0) {
    return Status::Refused("HTTP" + resp.substr(8, resp.find('\r') - 8));
  }
  return resp.substr(head_end + 4);
}

// The request latency buckets out of a Prometheus text body, or Invalid saying why not.
Result<Buckets> parse_latency(const std::string& body) {
  Buckets out;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(kLatencyBucket, 0) != 0) continue;
    size_t le = line.find("le=\"");
    size_t close = line.find("\"}", le);
    if (le == std::string::npos || close == std::string::npos) {
      return Status::Invalid("bad line: " + line);
    }
    Bucket b;
    b.le = std::strtod(line.c_str() + le + 4, nullptr);  // "+Inf" reads as infinity
    b.count = std::strtod(line.c_str() + close + 2, nullptr);
    out.push_back(b);
  }
  if (out.empty() || !std::isinf(out.back().le)) {
    return Status::Invalid("no stockd_request_duration_seconds");
  }
  std::sort(out.begin(), out.end(), [](const Bucket& x, const Bucket& y) { return x.le < y.le; });
  return out;
}

// cur - prev, bucket by bucket; cur itself when the server restarted in between.
Buckets bucket_delta(const Buckets& cur, const Buckets& prev) {
  if (prev.size() != cur.size()) return cur;
  Buckets d = cur;
  for (size_t i = 0; i < cur.size(); ++i) {
    if (prev[i].le != cur[i].le || prev[i].count > cur[i].count) return cur;
    d[i].count -= prev[i].count;
  }
  return d;
}

// As PromQL histogram_quantile: linear within the bucket holding the rank; a rank in the +Inf
// bucket answers the highest finite bound (`above_max` set).
struct Quantile {
  double seconds = 0;
  bool above_max = false;
};
std::optional<Quantile> quantile(double q, const Buckets& b) {
  if (b.empty() || b.back().count <= 0) return std::nullopt;
  const double rank = q * b.back().count;
  double lower = 0, below = 0;
  for (const Bucket& x : b) {
    if (x.count >= rank) {
      if (std::isinf(x.le)) return Quantile{lower, true};
      const double in = x.count - below;
      return Quantile{lower + (x.le - lower) * (in > 0 ? (rank - below) / in : 1.0), false};
    }
    lower = x.le;
    below = x.count;
  }
  return std::nullopt;
}

// ---- Samples ----

struct Sample {
  std::string error;  // "" = the sample is good
  bool refused = false;
  Clock::time_point at;
  int64_t wall_ms = 0;
  uint64_t own_requests = 0;  // requests top sent, up to and including this STATS
  std::map<std::string, uint64_t> stats;
  size_t skus = 0;
  bool skus_truncated = false;           // more than kSkuScanMax SKUs
  size_t sold_out_skus = 0;              // total > 0 and available == 0
  std::vector<proto::SkuView> sold_out;  // the first `rows` of them, most sold first
  std::vector<proto::SkuView> top_sold;  // the `rows` SKUs with most units sold
  bool has_metrics = false;
  Buckets latency;
  std::string metrics_error;
  uint64_t stat(const char* name) const {
    auto it = stats.find(name);
    return it == stats.end() ? 0 : it->second;
  }
};

bool by_sold(const proto::SkuView& x, const proto::SkuView& y) {
  return x.sold != y.sold ? x.sold > y.sold : x.sku < y.sku;
}
// Keeps the `rows` SKUs with most sold (trimming in batches, so a scan stays O(n log rows)).
void keep_top(std::vector<proto::SkuView>& v, size_t rows, bool final) {
  if (!final && v.size() < 4 * rows + 64) return;
  const size_t keep = std::min(rows, v.size());
  std::partial_sort(v.begin(), v.begin() + static_cast<ptrdiff_t>(keep), v.end(), by_sold);
  v.resize(keep);
}

class Sampler {
 public:
  Sampler(const Args& a, std::optional<ClientOptions> metrics)
      : client_(a.client), metrics_(std::move(metrics)) {}

  Sample take(size_t rows) {
    Sample s;
    own_ += client_.connected() ? 1 : 2;  // + HELLO when (re)connecting
    auto r = client_.stats();
    s.at = Clock::now();
    s.wall_ms = wall_clock_ms();
    s.own_requests = own_;
    if (!r.ok()) return failed(s, r);
    for (const auto& st : r.body.stats) s.stats[st.name] = st.value;
    if (Status e = scan_skus(s, rows); !e.ok()) s.error = e.message();
    if (metrics_) fetch_metrics(s);
    return s;
  }

 private:
  template <class T>
  static Sample& failed(Sample& s, const Reply<T>& r) {
    s.refused = r.transport_ok();
    s.error = r.transport_ok() ? std::string(proto::status_name(r.status)) + ": " + r.error
                               : "no answer: " + r.error;
    return s;
  }

  // Reads every SKU (up to kSkuScanMax) into `s`. Refused or Io (as failed() says) on a failed
  // page.
  Status scan_skus(Sample& s, size_t rows) {
    std::string after;
    while (s.skus < kSkuScanMax) {
      own_ += client_.connected() ? 1 : 2;
      auto page = client_.sku_list(after, proto::kSkuListMax);
      if (!page.ok()) {
        failed(s, page);
        return s.refused ? Status::Refused(s.error) : Status::Io(s.error);
      }
      auto& skus = page.body.skus;
      if (skus.empty() || skus.back().sku <= after) break;  // done (or no progress)
      after = skus.back().sku;
      for (auto& v : skus) {
        ++s.skus;
        if (v.total > 0 && v.available == 0) {
          ++s.sold_out_skus;
          s.sold_out.push_back(v);
        }
        if (v.sold > 0) s.top_sold.push_back(std::move(v));
      }
      keep_top(s.sold_out, rows, false);
      keep_top(s.top_sold, rows, false);
    }
    s.skus_truncated = s.skus >= kSkuScanMax;
    keep_top(s.sold_out, rows, true);
    keep_top(s.top_sold, rows, true);
    return Status::Ok();
  }

  void fetch_metrics(Sample& s) {
    Result<std::string> body = http_get(*metrics_, "/metrics");
    Result<Buckets> latency = body.ok() ? parse_latency(*body) : Result<Buckets>(body.status());
    s.has_metrics = latency.ok();
    if (latency.ok()) {
      s.latency = std::move(latency).value();
    } else {
      s.metrics_error = "/metrics: " + latency.status().message();
    }
  }

  Client client_;
  std::optional<ClientOptions> metrics_;
  uint64_t own_ = 0;
};

// ---- What a refresh shows: deltas between two good samples ----

struct View {
  double seconds = 0;
  std::optional<double> requests, reserves_ok, sold_out, commits, expiries;  // per second
  std::optional<double> group_size, group_write_ms;                          // means
  std::optional<Quantile> p99;
};

std::optional<double> delta(const Sample& cur, const Sample& prev, const char* name) {
  uint64_t c = cur.stat(name), p = prev.stat(name);
  if (c < p) return std::nullopt;  // the server restarted (or reloaded its book)
  return static_cast<double>(c - p);
}

View make_view(const Sample& prev, const Sample& cur) {
  View v;
  v.seconds = std::chrono::duration<double>(cur.at - prev.at).count();
  auto rate = [&](const char* name) -> std::optional<double> {
    auto d = delta(cur, prev, name);
    if (!d || v.seconds <= 0) return std::nullopt;
    return *d / v.seconds;
  };
  if (auto d = delta(cur, prev, "requests_total"); d && v.seconds > 0) {
    const double own = static_cast<double>(cur.own_requests - prev.own_requests);
    v.requests = std::max(0.0, *d - own) / v.seconds;
  }
  v.reserves_ok = rate("reserves_ok");
  v.sold_out = rate("sold_out");
  v.commits = rate("commits");
  v.expiries = rate("expiries");
  auto groups = delta(cur, prev, "groups_written");
  auto ops = delta(cur, prev, "group_ops_total");
  auto us = delta(cur, prev, "group_write_us_total");
  if (groups && *groups > 0) {
    if (ops) v.group_size = *ops / *groups;
    if (us) v.group_write_ms = *us / *groups / 1000.0;
  }
  if (cur.has_metrics) {
    v.p99 =
        quantile(0.99, prev.has_metrics ? bucket_delta(cur.latency, prev.latency) : cur.latency);
  }
  return v;
}

// ---- Rendering ----

Json opt_json(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

Json skus_json(const std::vector<proto::SkuView>& skus) {
  Json a = Json::array();
  for (const auto& s : skus) {
    a.push_back(Json{{"sku", s.sku},
                     {"total", s.total},
                     {"available", s.available},
                     {"held", s.held},
                     {"sold", s.sold}});
  }
  return a;
}

Json view_json(const Sample& s, const View& v) {
  const uint64_t head = s.stat("outbox_head"), acked = s.stat("outbox_acked");
  Json j{{"time", format_time(s.wall_ms)},
         {"time_ms", s.wall_ms},
         {"interval_ms", std::llround(v.seconds * 1000)},
         {"store", s.stat("store_failed") != 0 ? "failed" : "ok"},
         {"requests_per_s", opt_json(v.requests)},
         {"reserves_ok_per_s", opt_json(v.reserves_ok)},
         {"sold_out_per_s", opt_json(v.sold_out)},
         {"commits_per_s", opt_json(v.commits)},
         {"expiries_per_s", opt_json(v.expiries)},
         {"group_size_mean", opt_json(v.group_size)},
         {"group_write_ms_mean", opt_json(v.group_write_ms)},
         {"p99_ms", v.p99 ? Json(v.p99->seconds * 1000) : Json(nullptr)},
         {"p99_above_max", v.p99 && v.p99->above_max},
         {"live_holds", s.stat("live_holds")},
         {"connections", s.stat("connections")},
         {"outbox_head", head},
         {"outbox_acked", acked},
         {"outbox_lag", head - std::min(head, acked)},
         {"skus", s.skus},
         {"skus_truncated", s.skus_truncated},
         {"sold_out_skus", s.sold_out_skus},
         {"sold_out", skus_json(s.sold_out)},
         {"top_sold", skus_json(s.top_sold)}};
  if (!s.metrics_error.empty()) j["metrics_error"] = s.metrics_error;
  return j;
}

std::string num(const std::optional<double>& v, int decimals = 1, const char* unit = "") {
  if (!v) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, *v, unit);
  return buf;
}

// A SKU id fit for a terminal: bytes that are not printable ASCII as \xNN, cut if long.
std::string printable(const std::string& sku) {
  std::string out;
  for (unsigned char c : sku) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
  }
  return out.size() > kSkuColumnBytesMax ? out.substr(0, kSkuColumnBytesMax - 3) + "..." : out;
}

void sku_rows(std::ostringstream& out, const std::vector<proto::SkuView>& skus) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %-32s %12s %12s %12s %12s\n", "SKU", "SOLD", "AVAILABLE",
                "HELD", "TOTAL");
  out << buf;
  for (const auto& s : skus) {
    std::snprintf(
        buf, sizeof buf, "  %-32s %12llu %12llu %12llu %12llu\n", printable(s.sku).c_str(),
        static_cast<unsigned long long>(s.sold), static_cast<unsigned long long>(s.available),
        static_cast<unsigned long long>(s.held), static_cast<unsigned long long>(s.total));
    out << buf;
  }
}

std::string view_text(const Args& a, const Sample& s, const View& v, bool metrics) {
  const uint64_t head = s.stat("outbox_head"), acked = s.stat("outbox_acked");
  std::string p99 = !metrics ? "- (needs --metrics)"
                    : v.p99  ? (v.p99->above_max ? "> " : "") + num(v.p99->seconds * 1000, 2, " ms")
                             : "-";
  char buf[512];
  std::ostringstream out;
  std::snprintf(buf, sizeof buf, "stockd %s:%u  %s  store %s  (%.1f s)\n", a.client.host.c_str(),
                a.client.port, format_time(s.wall_ms).c_str(),
                s.stat("store_failed") != 0 ? "FAILED: writes refused" : "ok", v.seconds);
  out << buf;
  std::snprintf(
      buf, sizeof buf,
      "requests/s %10s   OK reserves/s %10s   sold-out/s %10s\n"
      "commits/s  %10s   expiries/s    %10s   p99 latency %s\n"
      "group size %10s   write+fsync   %10s\n"
      "live holds %10llu   connections   %10llu   outbox lag %llu (head %llu, acked %llu)\n",
      num(v.requests).c_str(), num(v.reserves_ok).c_str(), num(v.sold_out).c_str(),
      num(v.commits).c_str(), num(v.expiries).c_str(), p99.c_str(), num(v.group_size).c_str(),
      num(v.group_write_ms, 2, " ms").c_str(),
      static_cast<unsigned long long>(s.stat("live_holds")),
      static_cast<unsigned long long>(s.stat("connections")),
      static_cast<unsigned long long>(head - std::min(head, acked)),
      static_cast<unsigned long long>(head), static_cast<unsigned long long>(acked));
  out << buf;
  if (!s.metrics_error.empty()) out << s.metrics_error << '\n';
  out << "\nsold out: " << s.sold_out_skus << " of " << s.skus << (s.skus_truncated ? "+" : "")
      << " SKUs\n";
  sku_rows(out, s.sold_out);
  out << "top by units sold\n";
  sku_rows(out, s.top_sold);
  return out.str();
}

// ---- The loop ----

// Table rows that fit: --rows, else the terminal's height, else kRowsDefault.
size_t table_rows(const Args& a, bool tty) {
  if (a.rows != 0) return a.rows;
  winsize ws{};
  if (!tty || ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return kRowsDefault;
  return static_cast<size_t>(std::max(1, (ws.ws_row - kFixedScreenLines) / 2));
}

void show(const Args& a, bool tty, const Sample& prev, const Sample& cur, bool metrics) {
  if (a.json) {
    Json j = cur.error.empty() ? view_json(cur, make_view(prev, cur))
                               : Json{{"time", format_time(cur.wall_ms)},
                                      {"time_ms", cur.wall_ms},
                                      {"error", cur.error}};
    std::cout << dump(j) << '\n' << std::flush;
    return;
  }
  std::string text = cur.error.empty()
                         ? view_text(a, cur, make_view(prev, cur), metrics)
                         : "stockd " + a.client.host + ":" + std::to_string(a.client.port) + "  " +
                               format_time(cur.wall_ms) + "  " + cur.error + "\n";
  std::cout << (tty ? "\x1b[H\x1b[2J" : "") << text << (tty ? "" : "\n") << std::flush;
}

// Sleeps until `t` or a stop signal.
void sleep_until(Clock::time_point t) {
  while (!g_stop && Clock::now() < t) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now());
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(50)));
  }
}

}  // namespace

int cmd_top(const Args& a) {
  std::optional<ClientOptions> metrics;
  if (!a.metrics.empty()) {
    std::string text = a.metrics;
    if (text.rfind("http://", 0) == 0) text = text.substr(7);
    if (size_t slash = text.find('/'); slash != std::string::npos) text.resize(slash);
    metrics.emplace();
    if (Status e = parse_endpoint(text, *metrics); !e.ok()) {
      std::cerr << "--metrics: " << e.message() << '\n';
      return kExitUsage;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C stops at once, even mid-request
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const bool tty = !a.json && ::isatty(STDOUT_FILENO) == 1;
  Sampler sampler(a, metrics);
  Sample prev = sampler.take(table_rows(a, tty));
  if (!prev.error.empty()) {
    std::cerr << prev.error << '\n';
    return prev.refused ? kExitRefused : kExitTransport;
  }
  const auto interval = std::chrono::milliseconds(a.interval_ms);
  auto next = prev.at + interval;
  bool last_failed = false, last_refused = false;  // the last refresh's outcome
  for (uint32_t shown = 0; !g_stop && (a.iterations == 0 || shown < a.iterations); ++shown) {
    sleep_until(next);
    if (g_stop) break;
    Sample cur = sampler.take(table_rows(a, tty));
    next += interval;
    if (next < Clock::now()) next = Clock::now() + interval;  // slow refresh: skip, do not race
    show(a, tty, prev, cur, metrics.has_value());
    last_failed = !cur.error.empty();
    last_refused = cur.refused;
    if (cur.error.empty()) prev = std::move(cur);  // a failed refresh keeps the last good baseline
  }
  if (!last_failed) return kExitOk;
  return last_refused ? kExitRefused : kExitTransport;
}

}  // namespace stockd::ctl
