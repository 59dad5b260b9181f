// stockd's server: one libuv loop thread owns the book; a WAL thread makes each group of
// changes durable before that group's answers are sent.
//
// Server::run() opens the store, rebuilds the book from it (refusing to start on corruption),
// listens, and serves until SIGTERM/SIGINT or stop(). Everything but stop() runs on the thread
// that called run().
#pragma once

#include <memory>

#include "stockd/config.h"
#include "stockd/store.h"

namespace stockd {

class Server {
 public:
  explicit Server(Config config, storage::StoreOptions store_options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Process exit codes (docs: README "Exit codes"; the systemd unit restarts on 1 only).
  static constexpr int kExitFault = 1;              // an I/O fault, a listener that cannot
                                                    // bind, the data dir in use, or a store
                                                    // failure the server stopped on
  static constexpr int kExitConfig = 2;             // a bad setting
  static constexpr int kExitDataNeedsOperator = 4;  // damaged store, lost log or mark, an
                                                    // earlier layout: a restart repeats it

  // Blocks until the server stops. Returns 0 after a clean stop, else one of the codes above.
  int run();

  // Asks a running server to stop as on SIGTERM. Safe from any thread at any time: before the
  // loop starts it is remembered and honoured then; after the server stopped it does nothing.
  void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockd
