#include "admin_http.h"

#include <cstdio>

#include "linger.h"
#include "stockd/endpoint.h"

namespace stockd {

int64_t wall_ms();  // server.cc

struct HttpConn {
  uv_tcp_t tcp{};
  std::string request;
  std::string response;
  uv_write_t wreq{};
  uv_shutdown_t sreq{};
  bool answered = false;
  bool lingering = false;  // the answer is out, FIN sent: input is dropped until the peer closes
  bool peer_done = false;  // the peer half-closed: it sends no more
  bool head_only = false;  // a HEAD request: the answer's head without its body
  Linger linger;
  int64_t accepted_ms = 0;
  std::vector<HttpConn*>* open = nullptr;  // AdminHttp::conns_, left in the close callback
  size_t* refusals = nullptr;              // AdminHttp::refusals_ if refused, counted down then
  AdminHttp* owner = nullptr;
};

namespace {

constexpr size_t kHttpRequestBytesMax = 8192;

void close_http(HttpConn* h) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&h->tcp))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->tcp), [](uv_handle_t* t) {
    auto* h = static_cast<HttpConn*>(t->data);
    std::erase(*h->open, h);
    if (h->refusals != nullptr) --*h->refusals;
    delete h;
  });
}

// After the answer: FIN, and what the peer still sends is read and dropped (linger.h).
void linger(HttpConn* h) {
  h->lingering = true;
  h->linger.start(wall_ms());
  h->sreq.data = h;
  if (uv_shutdown(&h->sreq, reinterpret_cast<uv_stream_t*>(&h->tcp), [](uv_shutdown_t* r, int st) {
        if (st < 0) close_http(static_cast<HttpConn*>(r->data));
      }) != 0) {
    close_http(h);
  }
}

// The one answer of a connection (input after it is dropped); then it lingers. An answer to HEAD
// has the head a GET's would have (its Content-Length too) and no body (RFC 9110 9.3.2).
void respond(HttpConn* h, int code, const char* reason, const char* type, const std::string& body) {
  h->answered = true;
  char head[256];
  std::snprintf(head, sizeof head,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                "Connection: close\r\n\r\n",
                code, reason, type, body.size(), code == 405 ? "Allow: GET, HEAD\r\n" : "");
  h->response = head;
  if (!h->head_only) h->response += body;
  uv_buf_t b = uv_buf_init(h->response.data(), static_cast<unsigned>(h->response.size()));
  h->wreq.data = h;
  uv_write(&h->wreq, reinterpret_cast<uv_stream_t*>(&h->tcp), &b, 1, [](uv_write_t* w, int st) {
    auto* h = static_cast<HttpConn*>(w->data);
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&h->tcp))) return;
    if (st < 0 || h->peer_done) return close_http(h);  // nothing unread: no reset
    linger(h);
  });
}

}  // namespace

bool AdminHttp::start() {
  if (!config_.metrics_enabled) return true;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (Status s = resolve_tcp(config_.metrics_host, config_.metrics_port, true, addr, addr_len);
      !s.ok()) {
    log_->critical("cannot listen for metrics on {}:{}: {}", config_.metrics_host,
                   config_.metrics_port, s.message());
    return false;
  }
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  listening_ = true;
  int rc = uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, [](uv_stream_t* s, int st) {
      auto* self = static_cast<AdminHttp*>(s->data);
      if (st == 0) return self->on_accept();
      ++self->metrics_.accept_errors;  // logged once per tick with the client port's
    });
  }
  if (rc != 0) {
    log_->critical("cannot listen for metrics on {}:{}: {}", config_.metrics_host,
                   config_.metrics_port, uv_strerror(rc));
    return false;
  }
  const bool v6 = config_.metrics_host.find(':') != std::string::npos;
  log_->info("metrics on http://{}{}{}:{}/metrics", v6 ? "[" : "", config_.metrics_host,
             v6 ? "]" : "", config_.metrics_port);
  return true;
}

void AdminHttp::on_accept() {
  auto* h = new HttpConn();
  uv_tcp_init(&loop_, &h->tcp);
  h->tcp.data = h;
  h->accepted_ms = wall_ms();
  h->open = &conns_;
  h->owner = this;
  conns_.push_back(h);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_),
                reinterpret_cast<uv_stream_t*>(&h->tcp)) != 0) {
    close_http(h);
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&h->tcp),
      [](uv_handle_t* t, size_t, uv_buf_t* buf) {
        AdminHttp* self = static_cast<HttpConn*>(t->data)->owner;
        buf->base = self->read_buf_;
        buf->len = sizeof self->read_buf_;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* h = static_cast<HttpConn*>(s->data);
        if (n == UV_EOF && h->answered && !h->lingering) {  // the answer is still being written
          h->peer_done = true;
          uv_read_stop(s);
          return;
        }
        if (n < 0) return close_http(h);
        if (h->answered) return;  // after the answer, input is dropped
        h->request.append(buf->base, static_cast<size_t>(n));
        if (h->request.size() > kHttpRequestBytesMax) {
          return respond(h, 431, "Request Header Fields Too Large", "text/plain", "too large\n");
        }
        if (h->request.find("\r\n\r\n") == std::string::npos) return;
        h->owner->answer(h);
      });
  // Over the cap the slowest request gives way: the connection that has held a slot longest
  // without a whole request is closed, so that peers trickling half requests cannot keep a
  // health probe or a scrape out (a probe sends its request at once and is answered). Only when
  // every slot has its request (answers being written) is the newcomer refused.
  // Next, a connection lingering after its answer, which the peer's kernel has taken whole:
  // closing it loses nothing (peers that read their answers and never close held their slots
  // for the linger's 2 s, and ~70 probes a second kept every newcomer out).
  size_t busy = 0;
  HttpConn* slowest = nullptr;
  HttpConn* done = nullptr;
  for (HttpConn* c : conns_) {
    if (c == h || c->refusals != nullptr || uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp)))
      continue;
    ++busy;
    if (!c->answered && (slowest == nullptr || c->accepted_ms < slowest->accepted_ms)) slowest = c;
    if (done == nullptr && c->lingering &&
        Linger::drained(reinterpret_cast<uv_stream_t*>(&c->tcp))) {
      done = c;
    }
  }
  if (busy < config_.http_connections_max) return;
  ++metrics_.http_rejected;
  if (slowest != nullptr) return close_http(slowest);
  if (done != nullptr) return close_http(done);
  if (refusals_ >= kRefusalsMax) return close_http(h);
  h->refusals = &refusals_;
  ++refusals_;
  respond(h, 503, "Service Unavailable", "text/plain",
          "too many metrics connections (--http-connections-max)\n");
}

void AdminHttp::answer(HttpConn* h) {
  const std::string& req = h->request;
  auto sp1 = req.find(' ');
  auto sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
  if (sp2 == std::string::npos)
    return respond(h, 400, "Bad Request", "text/plain", "bad request\n");
  std::string method = req.substr(0, sp1);
  std::string path = req.substr(sp1 + 1, sp2 - sp1 - 1);
  if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
  if (method != "GET" && method != "HEAD") {
    return respond(h, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n");
  }
  h->head_only = method == "HEAD";
  if (path == "/metrics") {
    return respond(h, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", pages_.metrics_text());
  }
  if (path == "/healthz") {
    const Status health = pages_.health();
    if (!health.ok()) {
      return respond(h, 503, "Service Unavailable", "text/plain", health.message() + "\n");
    }
    return respond(h, 200, "OK", "text/plain", "ok\n");
  }
  respond(h, 404, "Not Found", "text/plain", "try /metrics or /healthz\n");
}

void AdminHttp::sweep(int64_t now) {
  for (HttpConn* h : std::vector<HttpConn*>(conns_)) {
    if (h->lingering
            ? h->linger.over(reinterpret_cast<uv_stream_t*>(&h->tcp), now, config_.http_timeout_ms)
            : now - h->accepted_ms >= static_cast<int64_t>(config_.http_timeout_ms)) {
      close_http(h);
    }
  }
}

void AdminHttp::close_all() {
  for (HttpConn* h : std::vector<HttpConn*>(conns_)) close_http(h);
  auto* l = reinterpret_cast<uv_handle_t*>(&listener_);
  if (listening_ && !uv_is_closing(l)) uv_close(l, nullptr);
}

}  // namespace stockd
