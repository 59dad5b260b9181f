// make_sink: the --sql URL to a Sink.
#include "sink.h"

#include <libpq-fe.h>

namespace stockd::outbox {

Result<std::unique_ptr<Sink>> make_sink(const std::string& url, int timeout_ms) {
  if (url.rfind("sqlite:", 0) == 0) {
    std::string path = url.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // sqlite://PATH, as some tools write
    if (path.empty()) {
      return Status::Invalid("--sql " + url +
                             ": no file after 'sqlite:' (e.g. sqlite:./data/orders.db)");
    }
    return make_sqlite_sink(path);
  }
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
    if (opts == nullptr) {
      std::string why = err != nullptr ? err : "out of memory";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      PQfreemem(err);
      return Status::Invalid("--sql: not a valid PostgreSQL URL: " + why);
    }
    PQconninfoFree(opts);
    return make_pg_sink(url, timeout_ms);
  }
  return Status::Invalid("--sql " + url +
                         ": expected sqlite:PATH, postgresql://... or postgres://...");
}

}  // namespace stockd::outbox
