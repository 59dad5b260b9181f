// The client side of TLS (docs/protocol.md, section 1) over a connected non-blocking socket:
// send() and recv() behave like the syscalls (-1 with errno EAGAIN when they would block, 0 from
// recv at the end), so code written for plain sockets takes TLS by swapping two calls.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "stockd/status.h"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace stockd {

struct TlsOptions {
  bool enabled = false;
  std::string ca_file;      // CA to verify the server with; empty = the system's CAs
  std::string cert_file;    // client certificate (servers started with --tls-client-ca)
  std::string key_file;     // its key
  std::string server_name;  // name to verify instead of the host dialled (e.g. for an IP)
};

class TlsConnection {
 public:
  // Runs the handshake on `fd` (connected, non-blocking) within `timeout_ms`, verifying the
  // server's certificate against options.ca_file and the name `host` (or options.server_name).
  // Invalid (a CA, certificate or key file that does not load), Refused (the server's
  // certificate is not trusted) or Io (the handshake failed or timed out) if it fails.
  static Result<std::unique_ptr<TlsConnection>> start(int fd, const TlsOptions& options,
                                                      const std::string& host, int timeout_ms);
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  ssize_t send(const void* data, size_t n);
  ssize_t recv(void* data, size_t n);
  // Sends close_notify: this side sends no more (the socket stays open for the answers).
  bool close_notify();
  // Plaintext (or a record) already inside OpenSSL: readable without the socket being so.
  bool pending() const;
  const std::string& last_error() const { return error_; }

 private:
  TlsConnection(SSL_CTX* ctx, SSL* ssl) : ctx_(ctx), ssl_(ssl) {}
  ssize_t fail(int rc);
  SSL_CTX* ctx_;
  SSL* ssl_;
  std::string error_;
};

}  // namespace stockd
