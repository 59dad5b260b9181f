// The outbox sidecar's SQL side: a Sink stores outbox records and the sidecar's cursor in one
// SQL transaction per batch. Two implementations share one schema (schema.h): SQLite
// (sqlite_sink.cc) and PostgreSQL (pg_sink.cc).
//
// A Sink is used by one thread. It owns its database connection; after any failure it drops
// the connection and the next call reconnects, so callers simply retry the same call.
//
// Exactly-once rests on write_batch(): the rows of a batch and the new cursor commit together
// or not at all, and the cursor only moves from `expected_cursor` (a compare-and-set), so two
// sidecars on one database cannot both apply a batch. Inserts also ignore rows whose primary
// key exists (ON CONFLICT DO NOTHING), a second guard when a cursor is reset for a replay, and
// before COMMIT the batch check confirms that the tables hold every row of the batch (each was
// inserted, or is there with the same values; a read-back by seq, schema.h: kBatchCheckSql),
// so a row skipped for any reason fails the batch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "records.h"
#include "stockd/protocol.h"
#include "stockd/status.h"

namespace stockd::outbox {

struct [[nodiscard]] SinkStatus {
  enum class Code {
    kOk,
    kConfig,       // cannot work as configured (bad URL, unwritable path, wrong credentials)
    kUnavailable,  // the database failed or is unreachable; retrying the same call may work
    kCursorMoved,  // the stored cursor is not the expected one (another writer?); nothing written
    kRejected,     // the database refuses the rows for good: its tables lack a column the
                   // sidecar writes, a type or constraint rejects a value, or the batch check
                   // found rows missing after the inserts; retrying cannot help
  };
  Code code = Code::kOk;
  std::string message;

  bool ok() const { return code == Code::kOk; }
  static SinkStatus Ok() { return {}; }
  static SinkStatus Config(std::string m) { return {Code::kConfig, std::move(m)}; }
  static SinkStatus Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static SinkStatus CursorMoved(std::string m) { return {Code::kCursorMoved, std::move(m)}; }
  static SinkStatus Rejected(std::string m) { return {Code::kRejected, std::move(m)}; }
};

class Sink {
 public:
  virtual ~Sink() = default;

  // Connects if not connected, creates the schema if missing and the cursor row (seq 0) if
  // absent, and checks that the tables have every column the sidecar writes (kRejected naming
  // the table and column if not). Idempotent; every other call calls it first.
  virtual SinkStatus open() = 0;
  // The stored cursor: every record with seq <= cursor is in the database.
  virtual SinkStatus read_cursor(uint64_t& cursor) = 0;
  // In one transaction: moves the cursor from `expected_cursor` to records.back().seq
  // (kCursorMoved and nothing written if the stored cursor differs) and inserts the rows of
  // `records`, which must be non-empty, valid and contiguous (records.h: check_batch), from
  // expected_cursor + 1 (or later only when the operator accepted a gap), then checks them
  // (the batch check) before COMMIT. On any failure the transaction is rolled back; kConfig and
  // kRejected are only returned for failures retrying cannot fix, kUnavailable for the others.
  virtual SinkStatus write_batch(uint64_t expected_cursor,
                                 std::span<const proto::OutboxRecord> records, int64_t now_ms) = 0;
  // What the tables hold for the records with seq first..last (the batch check's read-back,
  // records.h: BatchTotals), outside any batch: the sidecar compares stockd's record at the
  // cursor with the rows this database holds for it.
  virtual SinkStatus totals(uint64_t first, uint64_t last, BatchTotals& found) = 0;
  // Sets the cursor unconditionally (operators' replay tool and tests). Rows are kept.
  virtual SinkStatus reset_cursor(uint64_t cursor, int64_t now_ms) = 0;
  // Drops the connection (open() reconnects).
  virtual void close() = 0;
  // What the sink writes to, safe for logs (no password).
  virtual std::string describe() const = 0;
};

// Parses a --sql URL: "sqlite:PATH" or "postgresql://..." / "postgres://..." (any libpq
// connection URI). Returns the sink (not yet connected), or Invalid (one line, for the operator).
// `timeout_ms` bounds every wait on PostgreSQL (pg_sink.cc: connect): the sidecar's
// --sql-timeout-ms.
inline constexpr int kSqlTimeoutMsDefault = 30'000;
Result<std::unique_ptr<Sink>> make_sink(const std::string& url,
                                        int timeout_ms = kSqlTimeoutMsDefault);

std::unique_ptr<Sink> make_sqlite_sink(const std::string& path);
std::unique_ptr<Sink> make_pg_sink(const std::string& conninfo, int timeout_ms);

}  // namespace stockd::outbox
