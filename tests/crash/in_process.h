// The in-process stockd the power-loss tests drive: stockd::Server on its own thread (as main()
// runs it), its log kept in a ring to print when a check fails, and what the tests need around
// it. Used from the test thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "stockd/client.h"
#include "stockd/config.h"
#include "stockd/server.h"
#include "stockd/store.h"

namespace stockd::crash {

inline constexpr const char* kAdminToken = "test-admin";

// Sends every server log line (of every Server made afterwards) to a ring; call before
// constructing servers. Idempotent.
void capture_server_log();
// The last `lines` lines the servers logged.
std::string log_tail(size_t lines = 30);

// A config for a test server on `dir`: loopback, any free port, ready file next to the dir.
Config config_for(const std::string& dir, Durability d = Durability::kSync, int interval_ms = 100);
// A client of the server on `port` (admin role with kAdminToken), already connected.
Client connect(uint16_t port, proto::Role role);
// Keeps `p` alive until the process exits (what a hung server still uses).
void leak(std::shared_ptr<void> p);

class InProcess {
 public:
  InProcess(Config c, storage::StoreOptions so);
  ~InProcess() { stop(); }
  InProcess(const InProcess&) = delete;
  InProcess& operator=(const InProcess&) = delete;

  // The port once it listens; 0 if it stopped first (rc() says why).
  uint16_t wait_ready();
  // Asks the server to stop and waits for run() to return. false if it did not within
  // `patience`: the server hung. A stuck thread can be neither joined nor safely destroyed, so
  // it and its server are leaked (and whatever they use must be, by the caller: leak()).
  bool stop(std::chrono::milliseconds patience = std::chrono::seconds(15));
  // run()'s exit code once it returned, else -1.
  int rc() const { return run_->rc; }

 private:
  struct Run {
    std::atomic<bool> done{false};
    std::atomic<int> rc{-1};
  };
  std::string ready_file_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<Run> run_ = std::make_shared<Run>();
  std::thread thread_;
  bool hung_ = false;
};

}  // namespace stockd::crash
