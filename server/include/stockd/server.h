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

  // Blocks until the server stops. Returns a process exit code: 0 after a clean stop,
  // 1 if the store could not be opened or recovered (at start, or after a store failure: the
  // server then stops on its own), 2 if the listener could not bind.
  int run();

  // Asks a running server to stop as on SIGTERM. Safe from any thread at any time: before the
  // loop starts it is remembered and honoured then; after the server stopped it does nothing.
  void request_stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stockd
