// TLS on the client port, on the loop thread: OpenSSL runs over two memory BIOs, so the loop
// keeps owning the socket and every byte still passes the limits of conn.cc.
//
//   socket --read--> feed() --SSL_read--> plaintext frames (the same path as a plain peer)
//   answers --encrypt()--SSL_write--> take_output() --write--> socket
//
// feed() decrypts everything it is given at once, so no plaintext is ever left inside OpenSSL
// where the loop could not see it (a connection that stops reading keeps its input in rbuf, as a
// plain one does). Handshake records, alerts and tickets accumulate in the output BIO and leave
// with the next write.
//
// After the handshake a peer's records can make OpenSSL answer by itself: an alert for each
// refused renegotiation (a TLS 1.2 record can hold thousands of empty ClientHellos: ~8 bytes out
// per byte in), a KeyUpdate for each one that asks for it. Those bytes bypass the connection's
// output limits, so a session that has sent kProvokedBytesMax of them is closed by feed().
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "stockd/config.h"
#include "stockd/status.h"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using BIO = struct bio_st;

namespace stockd {

class TlsContext {
 public:
  // Loads --tls-cert, --tls-key and (if set) --tls-client-ca. Io, naming the file and OpenSSL's
  // reason, if they do not load or do not match.
  static Result<std::unique_ptr<TlsContext>> create(const Config& c);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

class TlsSession {
 public:
  explicit TlsSession(const TlsContext& ctx);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Records OpenSSL may send in reply to the peer's after the handshake, over the session.
  static constexpr size_t kProvokedBytesMax = 16 * 1024;

  // Takes bytes read from the socket; appends the plaintext they complete to `plain`. Io on a
  // fatal error (a failed handshake, a bad record, past kProvokedBytesMax); `peer_done` when the
  // peer sent close_notify (it sends no more, like EOF).
  Status feed(std::string_view cipher, std::string& plain, bool& peer_done);
  // Encrypts `plain` (after the handshake; before it the plaintext waits inside OpenSSL).
  void encrypt(std::string_view plain);
  // Appends every byte waiting to go to the socket to `out`.
  void take_output(std::string& out);
  bool has_output() const;
  // Queues a close_notify alert (take_output() then holds it).
  void close_notify();
  bool handshake_done() const { return handshake_done_; }

 private:
  SSL* ssl_;
  BIO* in_;   // ciphertext from the socket (owned by ssl_)
  BIO* out_;  // ciphertext for the socket (owned by ssl_)
  bool handshake_done_ = false;
  size_t provoked_ = 0;  // bytes OpenSSL sent in reply to records after the handshake
};

}  // namespace stockd
