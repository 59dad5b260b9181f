// TLS on the client port (docs/protocol.md, section 1): the C++ client, stockctl and the outbox
// sidecar over TLS against the real stockd; plain clients, untrusted certificates, wrong names
// and missing client certificates refused at the handshake while the server keeps serving.
// Certificates come from the openssl command line, made fresh in a temp dir per test binary.
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <cstring>

#include "harness.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using proto::Role;
using proto::Status;

// A throwaway CA, a server certificate for localhost / 127.0.0.1 signed by it, a client
// certificate signed by it, and a second CA nobody trusts.
class Certs {
 public:
  Certs() : dir_(make_temp_dir("tls")) {
    const std::string d = dir_.string();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "set -e; cd '" + d + "'\n" +  //
        "openssl req -x509" + ec +
        " -keyout ca.key -out ca.pem -days 2 -subj /CN=stockd-test-ca\n" + "openssl req -x509" +
        ec + " -keyout other.key -out other.pem -days 2 -subj /CN=other-ca\n" + "openssl req" + ec +
        " -keyout server.key -out server.csr -subj /CN=localhost\n" +
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext\n" +
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile san.ext -out server.pem\n" +
        "openssl req" + ec + " -keyout client.key -out client.csr -subj /CN=web-1\n" +
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-out client.pem\n";
    ok_ =
        std::system(("sh -c \"$(cat <<'EOF'\n" + script + "EOF\n)\" >/dev/null 2>&1").c_str()) == 0;
  }
  ~Certs() { fs::remove_all(dir_); }
  bool ok() const { return ok_; }
  std::string path(const char* name) const { return (dir_ / name).string(); }

 private:
  fs::path dir_;
  bool ok_ = false;
};

const Certs& certs() {
  static const Certs c;
  return c;
}

std::vector<std::string> tls_flags(bool client_ca = false) {
  std::vector<std::string> f = {"--tls-cert", certs().path("server.pem"), "--tls-key",
                                certs().path("server.key")};
  if (client_ca) f.insert(f.end(), {"--tls-client-ca", certs().path("ca.pem")});
  return f;
}

ClientOptions tls_options(const StockdProcess& s, Role role) {
  ClientOptions o = s.options(role);
  o.tls.enabled = true;
  o.tls.ca_file = certs().path("ca.pem");
  o.reconnect_attempts = 1;
  o.timeout_ms = 10000;
  return o;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs().ok()) << "openssl could not make certificates"; }
};

// A server restarted (stopped cleanly) under an idle TLS client: its close_notify arrives
// before the FIN, and the client took those bytes for a live connection. The next call, sent
// on the dead connection, was lost: a RESTOCK (never resent) failed as "may have been applied"
// though the server never saw it. Anything readable on an idle connection is now its end.
TEST_F(TlsTest, AnIdleClientCarriesOnAfterARestart) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  Client admin(tls_options(server, Role::kAdmin));
  ASSERT_TRUE(admin.sku_set({"tee", proto::kSetTotal, 5, 0, 0, 0}).ok());
  ASSERT_EQ(server.stop(), 0);
  ASSERT_TRUE(server.start());
  auto r = admin.restock("tee", 1);
  EXPECT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  EXPECT_EQ(admin.sku_get("tee").body.total, 6u);
}

TEST_F(TlsTest, ClientsSpeakTlsEndToEnd) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start()) << "stockd with --tls-cert did not start";
  Client admin(tls_options(server, Role::kAdmin));
  ASSERT_EQ(admin.connect().message(), "");
  make_sku(admin, "TLS-1", 100000);
  Client buyer(tls_options(server, Role::kBuyer));
  auto r = buyer.reserve(reserve_req("tls-user", "tls-k", 600'000, {{"TLS-1", 2}}));
  ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  auto c = buyer.commit(r.body.hold_id, "tls-user");
  ASSERT_TRUE(c.ok()) << c.error;
  EXPECT_EQ(c.body.state, proto::HoldState::kCommitted);

  // A deep pipeline, so answers arrive as many TLS records in few reads (and some stay inside
  // OpenSSL after a read): every one answered, in order.
  constexpr int kRequests = 3000;
  for (int i = 0; i < kRequests; ++i) {
    buyer.queue(proto::Opcode::kReserve,
                reserve_req("tls-u" + std::to_string(i % 50), "", 0, {{"TLS-1", 1}}));
  }
  auto answers = buyer.flush();
  ASSERT_EQ(answers.size(), size_t{kRequests});
  for (const auto& a : answers) ASSERT_TRUE(a.ok()) << a.error;
  auto sku = admin.sku_get("TLS-1");
  ASSERT_TRUE(sku.ok());
  EXPECT_EQ(sku.body.sold, kRequests + 2u);

  // A large answer: a SKU list page of many views spans several records.
  for (int i = 0; i < 300; ++i) {
    admin.queue(proto::Opcode::kSkuSet,
                proto::SkuSetReq{"TLS-LIST-" + std::to_string(1000 + i), 0x01, 5, 0, 0, 0});
  }
  for (const auto& a : admin.flush()) ASSERT_TRUE(a.ok()) << a.error;
  auto page = admin.sku_list("", 1000);
  ASSERT_TRUE(page.ok()) << page.error;
  EXPECT_EQ(page.body.skus.size(), 301u);

  // stockctl over TLS (--tls-ca implies --tls).
  auto ctl =
      run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(server.port()), "--tls-ca",
                              certs().path("ca.pem"), "--json", "sku", "get", "TLS-1"});
  EXPECT_EQ(ctl.exit_code, 0) << ctl.out << ctl.err;
  EXPECT_NE(ctl.out.find("\"sold\":3002"), std::string::npos) << ctl.out;
  // Without --tls it cannot talk to this port, and says so.
  auto plain = run_tool(STOCKCTL_BIN, {"--server", "127.0.0.1:" + std::to_string(server.port()),
                                       "--timeout-ms", "3000", "sku", "get", "TLS-1"});
  EXPECT_NE(plain.exit_code, 0) << plain.out;
}

TEST_F(TlsTest, TheOutboxSidecarReadsOverTls) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  Client admin(tls_options(server, Role::kAdmin));
  make_sku(admin, "TLS-OUT", 10);
  Client buyer(tls_options(server, Role::kBuyer));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(buyer.reserve(reserve_req("o" + std::to_string(i), "", 0, {{"TLS-OUT", 1}})).ok());
  }
  const fs::path dir = make_temp_dir("tls-outbox");
  const std::string db = (dir / "orders.db").string();
  auto side =
      run_tool(STOCKD_OUTBOX_BIN, {"--server", "127.0.0.1:" + std::to_string(server.port()),
                                   "--token", StockdProcess::kOutboxToken, "--tls", "--tls-ca",
                                   certs().path("ca.pem"), "--sql", "sqlite:" + db, "--once"});
  EXPECT_EQ(side.exit_code, 0) << side.out << side.err;
  auto sql = run_tool("/usr/bin/sqlite3", {db, "SELECT COUNT(*) FROM orders;"});
  EXPECT_EQ(sql.out, "3\n") << sql.err;
  fs::remove_all(dir);
}

TEST_F(TlsTest, HandshakesThatFailAreRefusedAndTheServerKeepsServing) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  // A plain client: its HELLO is not a TLS ClientHello; the server closes.
  {
    ClientOptions o = server.options(Role::kAdmin);
    o.reconnect_attempts = 1;
    o.timeout_ms = 3000;
    Client plain(o);
    EXPECT_NE(plain.connect().message(), "");
  }
  // A CA that did not sign the server's certificate.
  {
    ClientOptions o = tls_options(server, Role::kAdmin);
    o.tls.ca_file = certs().path("other.pem");
    Client c(o);
    const stockd::Status s = c.connect();
    EXPECT_EQ(s.code(), stockd::Status::Code::kRefused) << s.message();
    EXPECT_NE(s.message().find("not trusted"), std::string::npos) << s.message();
  }
  // The right CA, the wrong name.
  {
    ClientOptions o = tls_options(server, Role::kAdmin);
    o.tls.server_name = "stockd.example.com";
    Client c(o);
    const stockd::Status s = c.connect();
    EXPECT_EQ(s.code(), stockd::Status::Code::kRefused) << s.message();
    EXPECT_NE(s.message().find("not trusted"), std::string::npos) << s.message();
  }
  // Garbage and a half handshake: closed, not crashed.
  for (const std::string& junk : {std::string(600, 'x'), std::string("\x16\x03\x01\x02\x00", 5)}) {
    RawConn raw(server.port());
    ASSERT_TRUE(raw.ok());
    raw.send(junk);
  }
  Client ok(tls_options(server, Role::kAdmin));
  EXPECT_EQ(ok.connect().message(), "");
  EXPECT_TRUE(ok.ping().ok());
}

// TLS 1.2 renegotiation is refused: a peer cannot make the loop thread do handshake after
// handshake on one connection. (openssl s_client's "R" asks for one.)
TEST_F(TlsTest, RenegotiationIsRefused) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  const std::string cmd =
      "(sleep 0.5; echo R; sleep 1.5) | timeout 10 openssl s_client -tls1_2 "
      "-connect 127.0.0.1:" +
      std::to_string(server.port()) + " -CAfile " + certs().path("ca.pem") + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    ::pclose(p);
  }
  ASSERT_NE(out.find("RENEGOTIATING"), std::string::npos) << out;
  EXPECT_NE(out.find("no renegotiation"), std::string::npos) << out;
  Client ok(tls_options(server, Role::kAdmin));
  EXPECT_TRUE(ok.ping().ok()) << "the server stopped serving after a refused renegotiation";
}

// A TLS session of our own on a non-blocking socket to `server` (the caller closes `fd`).
void raw_tls(const StockdProcess& server, int& fd, std::unique_ptr<TlsConnection>& tls) {
  fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(server.port()));
  ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  pollfd pw{fd, POLLOUT, 0};
  ASSERT_EQ(::poll(&pw, 1, 3000), 1);
  TlsOptions to;
  to.enabled = true;
  to.ca_file = certs().path("ca.pem");
  auto started = TlsConnection::start(fd, to, "127.0.0.1", 3000);
  ASSERT_TRUE(started.ok()) << started.status().message();
  tls = std::move(*started);
}

// A TLS client that never reads: the encrypted answers count against --output-bytes-max like
// plain ones (the server stops reading it), and --write-timeout-ms closes it.
TEST_F(TlsTest, AClientThatNeverReadsIsBoundedThenClosed) {
  constexpr int kWriteTimeoutMs = 1500;
  std::vector<std::string> flags = tls_flags();
  flags.insert(flags.end(), {"--output-bytes-max", "1048576", "--write-timeout-ms",
                             std::to_string(kWriteTimeoutMs)});
  StockdProcess server(flags);
  ASSERT_TRUE(server.start());
  Client admin(tls_options(server, Role::kAdmin));
  for (int i = 0; i < 300; ++i) {
    admin.queue(proto::Opcode::kSkuSet,
                proto::SkuSetReq{"NEVER-READ-" + std::string(40, 'x') + std::to_string(1000 + i),
                                 0x01, 5, 0, 0, 0});
  }
  for (const auto& a : admin.flush()) ASSERT_TRUE(a.ok()) << a.error;
  const uint64_t base_conns = stat_of(admin, "connections");
  const uint64_t base_rss = rss_bytes(server.pid());

  int fd = -1;
  std::unique_ptr<TlsConnection> tls;
  ASSERT_NO_FATAL_FAILURE(raw_tls(server, fd, tls));
  // HELLO first, then batches of 64 SKU_LISTs of ~20 KB answers each, never reading.
  std::string pending, batch;
  proto::encode_request(proto::Opcode::kHello, 1,
                        proto::HelloReq{1, Role::kAdmin, StockdProcess::kAdminToken, "never"},
                        pending);
  for (uint32_t i = 0; i < 64; ++i) {
    proto::encode_request(proto::Opcode::kSkuList, 2 + i, proto::SkuListReq{"", 1000}, batch);
  }
  const auto start = Clock::now();
  uint64_t peak = base_rss;
  bool gone = false;
  while (ms_since(start) < 3000 && !gone) {
    if (pending.empty()) pending = batch;
    ssize_t n = tls->send(pending.data(), pending.size());
    if (n > 0) {
      pending.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 20);
    } else {
      gone = true;
    }
    peak = std::max(peak, rss_bytes(server.pid()));
  }
  bool closed = eventually((kWriteTimeoutMs + 5000) * kSlow, [&] {
    peak = std::max(peak, rss_bytes(server.pid()));
    return stat_of(admin, "connections") <= base_conns;
  });
  std::printf("[ measured ] TLS client that never reads: server RSS %llu MiB -> peak %llu MiB\n",
              static_cast<unsigned long long>(base_rss >> 20),
              static_cast<unsigned long long>(peak >> 20));
  EXPECT_TRUE(closed) << "the TLS connection that never reads was not closed";
  EXPECT_LT(peak, base_rss + (64u << 20)) << "memory grew with a TLS client that never reads";
  tls.reset();
  ::close(fd);
  EXPECT_TRUE(admin.ping().ok()) << "the server stopped serving";
}

// A TLS client that pipelines more frames than a connection's share of one turn (64) and then
// says close_notify, both in one segment: it gets every answer, as a plain client that half-
// closes does. The close_notify came in the same read as the frames, and those kept for the
// next turn were dropped with the connection's input: 64 answers of 201.
// Sends `out` and a close_notify as one segment (corked: one read on the server), then reads
// until the server closes; returns what it said, as whole frames' statuses.
std::vector<proto::Status> send_then_close_notify(int fd, TlsConnection& tls,
                                                  const std::string& out) {
  std::vector<proto::Status> answers;
  int on = 1, off = 0;
  EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on), 0);
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = tls.send(out.data() + sent, out.size() - sent);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else {
      EXPECT_TRUE(n < 0 && errno == EAGAIN) << tls.last_error();
      if (n >= 0 || errno != EAGAIN) return answers;
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
    }
  }
  EXPECT_TRUE(tls.close_notify());
  EXPECT_EQ(::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off), 0);
  std::string in;
  const auto start = Clock::now();
  for (bool done = false; !done && ms_since(start) < 5000 * kSlow;) {
    char buf[16384];
    ssize_t n = tls.recv(buf, sizeof buf);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 100);
    } else {
      done = true;
    }
  }
  std::span<const uint8_t> rest(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  for (;;) {
    proto::FrameDecode f = proto::decode_frame(rest, proto::Limits{});
    if (f.kind != proto::DecodeKind::kFrame) break;
    answers.push_back(static_cast<proto::Status>(f.header.status));
    rest = rest.subspan(f.consumed);
  }
  return answers;
}

// A client pipelines more frames than one turn serves (64), then, before any answer came back,
// says close_notify, both in one segment: it gets every answer, as a plain client that half-
// closes does. The close_notify came in the same read as the frames, and those kept for the
// next turn were dropped with the connection's input: 64 answers of 201.
TEST_F(TlsTest, PipelinedFramesBeforeACloseNotifyAreAllAnswered) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  int fd = -1;
  std::unique_ptr<TlsConnection> tls;
  ASSERT_NO_FATAL_FAILURE(raw_tls(server, fd, tls));
  constexpr uint32_t kPings = 200;
  std::string out;
  proto::encode_request(proto::Opcode::kHello, 1,
                        proto::HelloReq{1, Role::kAdmin, StockdProcess::kAdminToken, "closer"},
                        out);
  for (uint32_t i = 0; i < kPings; ++i) {
    proto::encode_request(proto::Opcode::kPing, 2 + i, proto::PingReq{}, out);
  }
  EXPECT_EQ(send_then_close_notify(fd, *tls, out).size(), 1 + kPings)
      << "answers before the server closed";
  tls.reset();
  ::close(fd);
}

// A HELLO the server refuses, then close_notify in the same segment: the refusal is the
// connection's last answer, sent before it closes (as to a plain client that half-closes). The
// refusal left the connection finishing, and the close_notify closed it at once: no answer.
TEST_F(TlsTest, ARefusedHelloIsAnsweredWhenCloseNotifyFollowsIt) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  int fd = -1;
  std::unique_ptr<TlsConnection> tls;
  ASSERT_NO_FATAL_FAILURE(raw_tls(server, fd, tls));
  std::string out;
  proto::encode_request(proto::Opcode::kHello, 1,
                        proto::HelloReq{1, Role::kAdmin, "not-the-token", "closer"}, out);
  const std::vector<proto::Status> answers = send_then_close_notify(fd, *tls, out);
  ASSERT_EQ(answers.size(), 1u) << "answers before the server closed";
  EXPECT_EQ(answers[0], proto::Status::kUnauthorized);
  tls.reset();
  ::close(fd);
}

// A TLS 1.2 session whose records the test writes itself (AES-128-GCM, the client's keys derived
// from the session's master secret), to send what no TLS library sends on purpose.
struct RawTls12 {
  int fd = -1;
  uint8_t key[16] = {};
  uint8_t salt[4] = {};
  uint64_t seq = 1;  // the client's Finished was record 0 of its keys

  ~RawTls12() {
    if (fd >= 0) ::close(fd);
  }
  // The handshake through OpenSSL on a blocking socket; false if it failed.
  bool start(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return false;
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    bool ok = SSL_connect(ssl) == 1;
    if (ok) {
      uint8_t master[48], seed[13 + 64];
      ok = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof master) == 48;
      std::memcpy(seed, "key expansion", 13);
      SSL_get_server_random(ssl, seed + 13, 32);
      SSL_get_client_random(ssl, seed + 45, 32);
      uint8_t block[40];  // client key, server key, client salt, server salt
      EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "TLS1-PRF", nullptr);
      EVP_KDF_CTX* k = EVP_KDF_CTX_new(kdf);
      char digest[] = "SHA256";
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                             OSSL_PARAM_construct_octet_string("secret", master, sizeof master),
                             OSSL_PARAM_construct_octet_string("seed", seed, sizeof seed),
                             OSSL_PARAM_construct_end()};
      ok = ok && EVP_KDF_derive(k, block, sizeof block, params) == 1;
      EVP_KDF_CTX_free(k);
      EVP_KDF_free(kdf);
      std::memcpy(key, block, 16);
      std::memcpy(salt, block + 32, 4);
    }
    SSL_set_quiet_shutdown(ssl, 1);  // no close_notify: the session goes on by hand
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return ok;
  }
  // One encrypted record of `type` holding `plain`.
  std::string record(uint8_t type, const std::string& plain) {
    uint8_t be_seq[8], nonce[12], aad[13];
    for (int i = 0; i < 8; ++i) be_seq[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
    ++seq;
    std::memcpy(nonce, salt, 4);
    std::memcpy(nonce + 4, be_seq, 8);
    std::memcpy(aad, be_seq, 8);
    aad[8] = type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = static_cast<uint8_t>(plain.size() >> 8);
    aad[12] = static_cast<uint8_t>(plain.size());
    std::string out(5 + 8 + plain.size() + 16, '\0');
    const size_t body = out.size() - 5;
    out[0] = static_cast<char>(type);
    out[1] = out[2] = 3;
    out[3] = static_cast<char>(body >> 8);
    out[4] = static_cast<char>(body);
    std::memcpy(out.data() + 5, be_seq, 8);
    auto* ct = reinterpret_cast<uint8_t*>(out.data() + 13);
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    int n = 0;
    EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), nullptr, key, nonce);
    EVP_EncryptUpdate(c, nullptr, &n, aad, sizeof aad);
    EVP_EncryptUpdate(c, ct, &n, reinterpret_cast<const uint8_t*>(plain.data()),
                      static_cast<int>(plain.size()));
    EVP_EncryptFinal_ex(c, ct + n, &n);
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, ct + plain.size());
    EVP_CIPHER_CTX_free(c);
    return out;
  }
};

// A TLS 1.2 peer sends records full of empty ClientHellos (4 bytes each). Renegotiation is
// refused, and OpenSSL answers each with a warning alert and goes on: ~8 bytes out per byte in,
// outside every output limit (a peer that reads slowly grew the server by 1.7 MB/s per
// connection, and held its loop). Past TlsSession::kProvokedBytesMax of such replies the
// session is closed; the server serves on.
TEST_F(TlsTest, RecordsOfRenegotiationAttemptsCloseTheSession) {
  StockdProcess server(tls_flags());
  ASSERT_TRUE(server.start());
  RawTls12 peer;
  ASSERT_TRUE(peer.start(server.port())) << "the TLS 1.2 handshake failed";
  std::string hellos;
  for (int i = 0; i < 4096; ++i) hellos.append("\x01\x00\x00\x00", 4);
  std::string out;
  for (int i = 0; i < 8; ++i) out += peer.record(22, hellos);  // 128 KiB in
  EXPECT_EQ(::send(peer.fd, out.data(), out.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(out.size()));
  timeval tv{0, 200 * 1000};
  ASSERT_EQ(::setsockopt(peer.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  size_t got = 0;
  bool closed = false;
  for (const auto start = Clock::now(); !closed && ms_since(start) < 3000 * kSlow;) {
    char buf[65536];
    ssize_t n = ::recv(peer.fd, buf, sizeof buf, 0);
    if (n > 0) got += static_cast<size_t>(n);
    closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
  EXPECT_TRUE(closed) << "the session is still open after " << got << " bytes of alerts";
  EXPECT_LT(got, 256u * 1024) << "alerts sent before the close";
  Client admin(tls_options(server, Role::kAdmin));
  EXPECT_TRUE(admin.ping().ok()) << "the server is not serving after it";
}

TEST_F(TlsTest, ClientCertificatesWhenTheServerAsksForThem) {
  StockdProcess server(tls_flags(true));
  ASSERT_TRUE(server.start());
  {
    ClientOptions o = tls_options(server, Role::kAdmin);
    o.timeout_ms = 3000;
    Client c(o);
    EXPECT_FALSE(c.ping().ok()) << "no client certificate, yet served";
  }
  {
    ClientOptions o = tls_options(server, Role::kAdmin);
    o.tls.cert_file = certs().path("client.pem");
    o.tls.key_file = certs().path("client.key");
    Client c(o);
    EXPECT_EQ(c.connect().message(), "");
    EXPECT_TRUE(c.ping().ok());
  }
}

TEST_F(TlsTest, BadCertificateFilesStopTheStart) {
  const fs::path dir = make_temp_dir("tls-bad");
  std::ofstream(dir / "junk.pem") << "not a certificate\n";
  struct Case {
    std::vector<std::string> flags;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", (dir / "junk.pem").string(), "--tls-key", certs().path("server.key")},
       "--tls-cert"},
      {{"--tls-cert", certs().path("server.pem"), "--tls-key", certs().path("client.key")},
       "key values mismatch"},
      {{"--tls-cert", certs().path("server.pem")}, "--tls-cert and --tls-key go together"},
  };
  for (const Case& k : cases) {
    StockdProcess s(k.flags);
    const std::string log = (dir / "stockd.log").string();
    fs::remove(log);
    s.set_log_file(log);
    EXPECT_FALSE(s.start(5000)) << k.says;
    EXPECT_NE(slurp(log).find(k.says), std::string::npos) << k.says << "\n" << slurp(log);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace stockd::test
