#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace stockd {

namespace {

// The oldest error on this thread's OpenSSL queue as text (and the queue emptied), so that one
// connection's failure never shows up as another's.
Status openssl_error(const std::string& what) {
  char buf[256] = {};
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return Status::Io(what);
  ERR_error_string_n(e, buf, sizeof buf);
  return Status::Io(what + ": " + buf);
}

}  // namespace

Result<std::unique_ptr<TlsContext>> TlsContext::create(const Config& c) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return openssl_error("TLS context");
  std::unique_ptr<TlsContext> out(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Idle connections give their 34 KiB of record buffers back; no session tickets are sent
  // (nothing to resume: clients keep their connections), so no bytes leave outside a write.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // A TLS 1.2 peer asking to renegotiate again and again would buy handshakes (the costly part)
  // on the loop thread for the price of a few bytes: refused.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, c.tls_cert.c_str()) != 1) {
    return openssl_error("--tls-cert " + c.tls_cert);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, c.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return openssl_error("--tls-key " + c.tls_key);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return openssl_error("--tls-key does not match --tls-cert");
  }
  if (!c.tls_client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, c.tls_client_ca.c_str(), nullptr) != 1) {
      return openssl_error("--tls-client-ca " + c.tls_client_ca);
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(c.tls_client_ca.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  ERR_clear_error();
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsSession::TlsSession(const TlsContext& ctx)
    : ssl_(SSL_new(ctx.get())), in_(BIO_new(BIO_s_mem())), out_(BIO_new(BIO_s_mem())) {
  // An empty memory BIO reports "retry" rather than EOF: more bytes may come from the socket.
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_accept_state(ssl_);
}

TlsSession::~TlsSession() { SSL_free(ssl_); }  // frees both BIOs

Status TlsSession::feed(std::string_view cipher, std::string& plain, bool& peer_done) {
  ERR_clear_error();
  peer_done = false;
  if (!cipher.empty() && BIO_write(in_, cipher.data(), static_cast<int>(cipher.size())) <= 0) {
    return openssl_error("TLS buffer");
  }
  if (!handshake_done_) {
    int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      int e = SSL_get_error(ssl_, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status::Ok();
      return openssl_error("TLS handshake");
    }
    handshake_done_ = true;
  }
  // Everything decryptable now, so nothing waits inside OpenSSL unseen by the loop.
  const size_t pending_before = BIO_ctrl_pending(out_);
  char buf[16384];
  Status s;
  for (;;) {
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain.append(buf, static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_ZERO_RETURN) {  // close_notify: the peer is done sending, like EOF
      peer_done = true;
    } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      s = openssl_error("TLS record");
    }
    break;
  }
  const size_t pending_after = BIO_ctrl_pending(out_);
  if (s.ok() && pending_after > pending_before) {
    provoked_ += pending_after - pending_before;
    if (provoked_ > kProvokedBytesMax) {
      return Status::Io("TLS: the peer's records made this session send " +
                        std::to_string(provoked_) +
                        " bytes of its own (renegotiation attempts, key update requests)");
    }
  }
  return s;
}

void TlsSession::encrypt(std::string_view plain) {
  ERR_clear_error();
  // A memory BIO takes everything: one SSL_write writes it all (as records of 16 KiB).
  if (!plain.empty()) SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
}

void TlsSession::take_output(std::string& out) {
  const size_t n = BIO_ctrl_pending(out_);
  if (n == 0) return;
  const size_t at = out.size();
  out.resize(at + n);
  const int got = BIO_read(out_, out.data() + at, static_cast<int>(n));
  out.resize(at + static_cast<size_t>(got > 0 ? got : 0));
}

bool TlsSession::has_output() const { return BIO_ctrl_pending(out_) > 0; }

void TlsSession::close_notify() {
  ERR_clear_error();
  if (handshake_done_) SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace stockd
