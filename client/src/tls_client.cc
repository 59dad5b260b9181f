#include "stockd/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <climits>

namespace stockd {

namespace {

// "what: OpenSSL's reason" (the oldest error on this thread's queue, which is emptied).
std::string openssl_error(const std::string& what) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return what;
  char buf[256] = {};
  ERR_error_string_n(e, buf, sizeof buf);
  return what + ": " + buf;
}

bool is_ip(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

Result<std::unique_ptr<TlsConnection>> TlsConnection::start(int fd, const TlsOptions& o,
                                                            const std::string& host,
                                                            int timeout_ms) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Status::Io(openssl_error("TLS context"));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);  // a closed socket reads as the end
  const int ca_ok = o.ca_file.empty()
                        ? SSL_CTX_set_default_verify_paths(ctx)
                        : SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr);
  std::string bad;
  if (ca_ok != 1) bad = openssl_error("CA file " + o.ca_file);
  if (bad.empty() && !o.cert_file.empty() &&
      SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1) {
    bad = openssl_error("client certificate " + o.cert_file);
  }
  if (bad.empty() && !o.cert_file.empty() &&
      SSL_CTX_use_PrivateKey_file(ctx, (o.key_file.empty() ? o.cert_file : o.key_file).c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    bad = openssl_error("client key " + o.key_file);
  }
  SSL* ssl = bad.empty() ? SSL_new(ctx) : nullptr;
  std::unique_ptr<TlsConnection> c(ssl != nullptr ? new TlsConnection(ctx, ssl) : nullptr);
  if (!c) {
    SSL_CTX_free(ctx);
    return bad.empty() ? Status::Io(openssl_error("TLS session")) : Status::Invalid(bad);
  }
  // The name the certificate must carry: a DNS name (also sent as SNI) or an IP address.
  const std::string& name = o.server_name.empty() ? host : o.server_name;
  if (is_ip(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
  SSL_set_fd(ssl, fd);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int rc = SSL_connect(ssl);
    if (rc == 1) return c;
    int e = SSL_get_error(ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      const long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK) {
        return Status::Refused(std::string("TLS: the server's certificate is not trusted: ") +
                               X509_verify_cert_error_string(verify));
      }
      std::string error = openssl_error("TLS handshake");
      if (error == "TLS handshake") error += " failed (the server closed or is not speaking TLS)";
      return Status::Io(std::move(error));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      return Status::Io("TLS handshake timed out after " + std::to_string(timeout_ms) + " ms");
    }
    pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX))) < 0 && errno != EINTR) {
      return Status::Io("poll during the TLS handshake failed");
    }
  }
}

TlsConnection::~TlsConnection() {
  SSL_free(ssl_);
  SSL_CTX_free(ctx_);
}

ssize_t TlsConnection::fail(int rc) {
  int e = SSL_get_error(ssl_, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;            // close_notify
  if (e == SSL_ERROR_SYSCALL && errno == 0) return 0;  // EOF without close_notify
  if (e != SSL_ERROR_SYSCALL) {
    error_ = openssl_error("TLS");
    errno = EPROTO;
  }
  return -1;
}

ssize_t TlsConnection::send(const void* data, size_t n) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(n, INT_MAX)));
  return rc > 0 ? rc : fail(rc);
}

ssize_t TlsConnection::recv(void* data, size_t n) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_read(ssl_, data, static_cast<int>(std::min<size_t>(n, INT_MAX)));
  return rc > 0 ? rc : fail(rc);
}

bool TlsConnection::pending() const { return SSL_has_pending(ssl_) == 1; }

bool TlsConnection::close_notify() {
  ERR_clear_error();
  return SSL_shutdown(ssl_) >= 0;
}

}  // namespace stockd
