// The TLS flags of every tool that connects to stockd (stockctl, stockd-outbox, stockbench), so
// they read the same everywhere.
#pragma once

#include <CLI/CLI.hpp>

#include "stockd/tls_client.h"

namespace stockd {

inline void add_tls_flags(CLI::App& app, TlsOptions& t) {
  app.add_flag("--tls", t.enabled, "connect with TLS (stockd runs with --tls-cert)");
  app.add_option("--tls-ca", t.ca_file,
                 "CA file (PEM) to verify stockd's certificate (default: the system's CAs)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-cert", t.cert_file,
                 "client certificate (PEM), for a stockd started with --tls-client-ca")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", t.key_file, "key of --tls-cert (PEM)")->check(CLI::ExistingFile);
  app.add_option("--tls-server-name", t.server_name,
                 "name stockd's certificate must carry (default: the host connected to)");
}

// The TLS flags imply --tls: giving a CA or a certificate and then talking plain text would be a
// surprise.
inline void imply_tls(TlsOptions& t) {
  if (!t.ca_file.empty() || !t.cert_file.empty() || !t.server_name.empty()) t.enabled = true;
}

}  // namespace stockd
