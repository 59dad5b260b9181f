#include "stockd/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

#include "stockd/protocol.h"

namespace stockd {

const char* durability_name(Durability d) {
  switch (d) {
    case Durability::kSync:
      return "sync";
    case Durability::kInterval:
      return "interval";
    case Durability::kOff:
      return "off";
  }
  return "?";
}

bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(&a6);
  }
  return false;  // a name other than localhost may resolve anywhere
}

namespace {

// Beyond loopback every role must need a token: admin and outbox are off without theirs, so
// it comes down to the buyers'.
Status check_exposure(const Config& c) {
  if (is_loopback(c.listen_host) || !c.client_token.empty() || c.insecure_no_auth)
    return Status::Ok();
  return Status::Invalid(
      "--listen " + c.listen_host +
      " is not a loopback address and buyers need no token: anyone who reaches the port "
      "could buy. Give the buyers' token (--client-token-file or STOCKD_CLIENT_TOKEN_FILE), "
      "listen on 127.0.0.1, or pass --insecure-no-auth for an experiment");
}

}  // namespace

namespace {

// --output-bytes-max at most: one write takes a connection's whole pending output, and libuv's
// buffers and write results count it in 32 bits.
constexpr uint64_t kOutputBytesMaxMax = 1ull << 30;
constexpr uint64_t kNoMax = UINT64_MAX;

// A flag within [lo, hi]: the check and its message are made from the same two numbers, so
// the message can never quote a limit other than the one enforced. Compares across signedness.
template <class T>
Status bounded(const char* flag, T value, int64_t lo, uint64_t hi = kNoMax) {
  if (!std::cmp_less(value, lo) && !std::cmp_greater(value, hi)) return Status::Ok();
  std::string m = std::string(flag) + " must be ";
  if (hi == kNoMax) {
    m += "at least " + std::to_string(lo);
  } else if (lo == 0) {
    m += "at most " + std::to_string(hi);
  } else {
    m += "in " + std::to_string(lo) + ".." + std::to_string(hi);
  }
  return Status::Invalid(std::move(m));
}

}  // namespace

Status validate(const Config& c) {
  if (c.listen_host.empty()) return Status::Invalid("--listen: host is empty");
  if (c.durability != Durability::kOff && c.data_dir.empty())
    return Status::Invalid("--data-dir is required");
  const Status bounds[] = {
      bounded("--wal-spin-us", c.wal_spin_us, 0, 10'000),
      bounded("--group-gather-us", c.group_gather_us, 0, 10'000),
      bounded("--fsync-interval-ms", c.fsync_interval_ms, 1, 10'000),
      bounded("--connections-max", c.connections_max, 1),
      bounded("--inflight-max", c.inflight_max, 1, 1'000'000),
      bounded("--frame-bytes-max", c.frame_bytes_max, proto::kFrameBytesMin, proto::kFrameBytesMax),
      bounded("--metrics-sku-max", c.metrics_sku_max, 0, proto::kSkuListMax),
      bounded("--idle-timeout-ms", c.idle_timeout_ms, 100),
      bounded("--hello-timeout-ms", c.hello_timeout_ms, 100),
      bounded("--frame-timeout-ms", c.frame_timeout_ms, 100),
      bounded("--hello-pending-max", c.hello_pending_max, 1),
      bounded("--output-bytes-max", c.output_bytes_max, 0, kOutputBytesMaxMax),
      bounded("--write-timeout-ms", c.write_timeout_ms, 100),
      bounded("--shutdown-timeout-ms", c.shutdown_timeout_ms, 0, 600'000),
      bounded("--http-connections-max", c.http_connections_max, 1),
      bounded("--http-timeout-ms", c.http_timeout_ms, 100),
      bounded("--user-holds-max", c.user_holds_max, 1),
      bounded("--live-holds-max", c.live_holds_max, 1),
      bounded("--idem-retention-ms", c.idem_retention_ms, 1000),
      bounded("--finished-holds-max", c.finished_holds_max, 1000),
      bounded("--outbox-retention-ms", c.outbox_retention_ms, 0),
      bounded("--holds-expected", c.holds_expected, 0, 1'000'000'000),
      bounded("--checkpoint-every", c.checkpoint_every, 1),
      bounded("--checkpoint-interval-ms", c.checkpoint_interval_ms, 10, 24 * 3600 * 1000LL),
      bounded("--hello-fail-burst", c.hello_fail_burst, 1),
      bounded("--hello-fail-refill-ms", c.hello_fail_refill_ms, 1),
  };
  for (const Status& s : bounds) {
    if (!s.ok()) return s;
  }
  // Between flags: a budget must hold what one peer may.
  if (c.read_buffer_budget < 2ull * c.frame_bytes_max)
    return Status::Invalid("--read-buffer-budget must be at least twice --frame-bytes-max");
  if (c.output_bytes_max < c.frame_bytes_max)
    return Status::Invalid("--output-bytes-max must be at least --frame-bytes-max");
  if (c.output_budget < c.output_bytes_max)
    return Status::Invalid("--output-budget must be at least --output-bytes-max");
  if (c.admin_token.size() > proto::kTokenBytesMax ||
      c.outbox_token.size() > proto::kTokenBytesMax ||
      c.client_token.size() > proto::kTokenBytesMax)
    return Status::Invalid("tokens must be at most " + std::to_string(proto::kTokenBytesMax) +
                           " bytes");
  if (c.tls_cert.empty() != c.tls_key.empty())
    return Status::Invalid("--tls-cert and --tls-key go together");
  if (!c.tls_client_ca.empty() && c.tls_cert.empty())
    return Status::Invalid("--tls-client-ca needs --tls-cert and --tls-key");
  if (Status s = check_exposure(c); !s.ok()) return s;
  if (!c.admin_token.empty() && c.admin_token == c.client_token)
    return Status::Invalid("--admin-token must differ from --client-token");
  if (!c.admin_token.empty() && c.admin_token == c.outbox_token)
    return Status::Invalid(
        "--outbox-token must differ from --admin-token (the sidecar must not hold the admin "
        "token)");
  return Status::Ok();
}

namespace {

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

}  // namespace

void tighten_data_dir(const std::string& dir, std::string& note) {
  namespace fs = std::filesystem;
  note.clear();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;  // the store creates it
  std::string failed;
  size_t changed = 0;
  auto tighten = [&](const std::string& p, mode_t mode) {
    if ((mode & 077) == 0) return;
    if (::chmod(p.c_str(), mode & 07700) == 0) {
      ++changed;
    } else if (failed.empty()) {
      failed = p + ": " + std::strerror(errno);
    }
  };
  const bool dir_open = (st.st_mode & 077) != 0;
  tighten(dir, st.st_mode);
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
       !ec && it != end; it.increment(ec)) {
    struct stat e {};
    if (::lstat(it->path().c_str(), &e) != 0) continue;
    if (S_ISREG(e.st_mode) || S_ISDIR(e.st_mode)) tighten(it->path().string(), e.st_mode);
  }
  if (changed > 0) {
    note = "data dir " + dir + (dir_open ? " was mode " + octal_mode(st.st_mode) : "") + ": " +
           std::to_string(changed) +
           " files and directories other local users could read (the sales log, unsold unique "
           "codes) made owner-only";
  }
  if (!failed.empty()) {
    note += std::string(note.empty() ? "" : "; ") + "cannot make " + failed +
            " owner-only: fix its permissions (chmod -R go-rwx " + dir + ")";
  }
}

}  // namespace stockd
