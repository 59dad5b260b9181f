#include "stockd/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

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

std::string validate(const Config& c) {
  if (c.listen_host.empty()) return "--listen: host is empty";
  if (c.durability != Durability::kOff && c.data_dir.empty()) return "--data-dir is required";
  if (c.wal_spin_us > 10000) return "--wal-spin-us must be at most 10000";
  if (c.fsync_interval_ms < 1 || c.fsync_interval_ms > 10000)
    return "--fsync-interval-ms must be in 1..10000";
  if (c.connections_max < 1) return "--connections-max must be at least 1";
  if (c.inflight_max < 1 || c.inflight_max > 1'000'000)
    return "--inflight-max must be in 1..1000000";
  if (c.frame_bytes_max < proto::kFrameBytesMin || c.frame_bytes_max > (64u << 20))
    return "--frame-bytes-max must be in " + std::to_string(proto::kFrameBytesMin) +
           "..67108864 (every answer must fit a frame)";
  if (c.metrics_sku_max > proto::kSkuListMax) return "--metrics-sku-max must be at most 1000";
  if (c.read_buffer_budget < 2ull * c.frame_bytes_max)
    return "--read-buffer-budget must be at least twice --frame-bytes-max";
  if (c.idle_timeout_ms < 100) return "--idle-timeout-ms must be at least 100";
  if (c.hello_timeout_ms < 100) return "--hello-timeout-ms must be at least 100";
  if (c.frame_timeout_ms < 100) return "--frame-timeout-ms must be at least 100";
  if (c.hello_pending_max < 1) return "--hello-pending-max must be at least 1";
  if (c.output_bytes_max < c.frame_bytes_max)
    return "--output-bytes-max must be at least --frame-bytes-max";
  if (c.output_budget < c.output_bytes_max)
    return "--output-budget must be at least --output-bytes-max";
  if (c.write_timeout_ms < 100) return "--write-timeout-ms must be at least 100";
  if (c.shutdown_timeout_ms > 600000) return "--shutdown-timeout-ms must be at most 600000";
  if (c.http_connections_max < 1) return "--http-connections-max must be at least 1";
  if (c.http_timeout_ms < 100) return "--http-timeout-ms must be at least 100";
  if (c.user_holds_max < 1) return "--user-holds-max must be at least 1";
  if (c.live_holds_max < 1) return "--live-holds-max must be at least 1";
  if (c.idem_retention_ms < 1000) return "--idem-retention-ms must be at least 1000";
  if (c.holds_expected > 1'000'000'000) return "--holds-expected must be at most 1000000000";
  if (c.admin_token.size() > proto::kTokenBytesMax ||
      c.outbox_token.size() > proto::kTokenBytesMax ||
      c.client_token.size() > proto::kTokenBytesMax)
    return "tokens must be at most 256 bytes";
  if (!c.admin_token.empty() && c.admin_token == c.client_token)
    return "--admin-token must differ from --client-token";
  if (!c.admin_token.empty() && c.admin_token == c.outbox_token)
    return "--outbox-token must differ from --admin-token (the sidecar must not hold the admin "
           "token)";
  return "";
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
