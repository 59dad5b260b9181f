// The outbox sidecar's loop: read stockd's outbox after the cursor stored in SQL, write each
// batch and the new cursor in one SQL transaction, then acknowledge the cursor to stockd.
//
// One thread runs a Sidecar. Nothing is skipped or reordered: a batch that fails to commit is
// retried as it is, and stockd is only told (OUTBOX_ACK) what SQL has committed. The cursor in
// SQL is the truth; stockd's acked position only decides what it may trim.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "metrics.h"
#include "sink.h"
#include "stockd/client.h"

namespace stockd::outbox {

// Exit codes of stockd-outbox.
inline constexpr int kExitOk = 0;        // stopped by SIGTERM/SIGINT, or --once caught up
inline constexpr int kExitFailure = 1;   // an unexpected internal error
inline constexpr int kExitConfig = 2;    // bad configuration, or (--once) unreachable at start
inline constexpr int kExitRefused = 3;   // stockd's outbox does not continue this database
inline constexpr int kExitRejected = 4;  // the SQL database refuses the rows for good (a missing
                                         // column, a type or constraint), or a batch check failed

struct SidecarConfig {
  ClientOptions server;               // host, port and outbox token; role is set to kOutbox
  uint32_t batch = 5000;              // records per OUTBOX_READ and per SQL transaction
  uint32_t wait_ms = 1000;            // long-poll of OUTBOX_READ when caught up
  bool once = false;                  // drain until caught up, then exit 0
  bool accept_gap = false;            // continue past records trimmed before we copied them
  std::string status_file;            // JSON status written after each batch; empty = none
  MetricsServer* metrics = nullptr;   // published to after each batch and failure; not owned
  int backoff_min_ms = 100;           // first retry delay (stockd down, SQL down)
  int backoff_max_ms = 5000;          // retry delays double up to this
  int once_start_timeout_ms = 10000;  // --once: give up reaching SQL or stockd after this
  int progress_log_ms = 10000;        // an info line about progress at most this often
};

class Sidecar {
 public:
  // `stop` is set by a signal handler; the sidecar finishes its current transaction and
  // returns kExitOk.
  Sidecar(SidecarConfig config, std::unique_ptr<Sink> sink, std::shared_ptr<spdlog::logger> log,
          const std::atomic<bool>& stop);
  ~Sidecar();
  Sidecar(const Sidecar&) = delete;
  Sidecar& operator=(const Sidecar&) = delete;

  // Runs until stopped, caught up (--once) or refused; returns the process exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockd::outbox
