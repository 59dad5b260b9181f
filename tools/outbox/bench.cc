// stockd-outbox-bench: how many outbox records per second a Sink commits, without stockd.
// Writes synthetic ORDER records (1-2 lines, every 4th with a unique code; every 20th record a
// RELEASED event) after the database's cursor, in batches, exactly as the sidecar does.
//   stockd-outbox-bench --sql sqlite:/tmp/bench.db --records 500000 --batch 5000
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "records.h"
#include "sink.h"

namespace {

stockd::proto::OutboxRecord make_record(uint64_t seq, int64_t now_ms) {
  using stockd::proto::OutboxKind;
  stockd::proto::OutboxRecord r;
  r.seq = seq;
  r.kind = seq % 20 == 0 ? OutboxKind::kReleased : OutboxKind::kOrder;
  r.order_id = 1000000 + seq;
  r.user = "user-" + std::to_string(seq % 50000);
  r.key = seq % 2 == 0 ? "key-" + std::to_string(seq) : "";
  r.created_at_ms = now_ms - 1000;
  r.at_ms = now_ms;
  r.lines.push_back({"SKU-" + std::to_string(seq % 10), 1});
  if (seq % 3 == 0) r.lines.push_back({"MUG", 2});
  if (seq % 4 == 0) r.codes.push_back({r.lines[0].sku, "CODE-" + std::to_string(seq)});
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stockd-outbox-bench: outbox records per second into a Sink"};
  std::string sql = "sqlite:./outbox-bench.db";
  uint64_t count = 200000;
  uint32_t batch = 5000;
  app.add_option("--sql", sql, "sqlite:PATH or postgresql://...")->capture_default_str();
  app.add_option("--records", count, "records to write")->capture_default_str();
  app.add_option("--batch", batch, "records per transaction")
      ->check(CLI::Range(1u, stockd::proto::kOutboxReadMax))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  stockd::Result<std::unique_ptr<stockd::outbox::Sink>> made = stockd::outbox::make_sink(sql);
  if (!made.ok()) {
    std::fprintf(stderr, "stockd-outbox-bench: %s\n", made.status().message().c_str());
    return 2;
  }
  std::unique_ptr<stockd::outbox::Sink> sink = std::move(made).value();
  uint64_t cursor = 0;
  if (stockd::outbox::SinkStatus s = sink->read_cursor(cursor); !s.ok()) {
    std::fprintf(stderr, "stockd-outbox-bench: %s\n", s.message.c_str());
    return 2;
  }
  // A record's times are fixed, so that a replay (--reset-cursor 0, then the bench again) writes
  // the same rows and passes the batch check.
  const int64_t now_ms = 1700000000000;
  uint64_t orders = 0;
  double busy = 0;  // seconds inside write_batch (record generation excluded)
  std::vector<stockd::proto::OutboxRecord> records;
  for (uint64_t done = 0; done < count;) {
    records.clear();
    for (uint64_t i = 0; i < batch && done + i < count; ++i) {
      records.push_back(make_record(cursor + 1 + i, now_ms));
      orders += records.back().kind == stockd::proto::OutboxKind::kOrder;
    }
    auto t0 = std::chrono::steady_clock::now();
    stockd::outbox::SinkStatus s = sink->write_batch(cursor, records, now_ms);
    busy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!s.ok()) {
      std::fprintf(stderr, "stockd-outbox-bench: %s\n", s.message.c_str());
      return 1;
    }
    cursor = records.back().seq;
    done += records.size();
  }
  std::printf(
      "%s: %llu records (%llu orders) in %.3f s: %.0f records/s, %.0f orders/s, "
      "batch %u\n",
      sink->describe().c_str(), static_cast<unsigned long long>(count),
      static_cast<unsigned long long>(orders), busy, static_cast<double>(count) / busy,
      static_cast<double>(orders) / busy, batch);
  return 0;
}
