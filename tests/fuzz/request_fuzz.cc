// Fuzz target for the whole request path: a client's bytes -> decode_frame -> Dispatcher ->
// Book -> answer frames, with group commits into a RocksDB store that lives in memory
// (rocksdb::NewMemEnv) and recovery from it.
//
// Input = a prelude, then the raw byte stream of one client connection:
//   byte 0        flags: bits 0-2 number of prelude SKUs (0-7); bit 3 also 600 SKUs with 64-byte
//                 ids (SKU_LIST pages); bits 4-5 group commit every {1, 4, 16, end only}
//                 requests; bit 6 expire at most 2 holds per call; bit 7 finished holds are kept
//                 1 s instead of 1 h.
//   3 bytes/SKU   a SKU set up by an admin before the client connects (seed_sku() below).
//   the rest      request frames as a client sends them, framed by decode_frame with a frame
//                 limit of 65536 bytes (at most kFramesMax per input).
// The prelude runs through the dispatcher on an admin connection; its answers are checked like
// the rest, the book's invariants once at its end (it is committed, so the shadow starts there).
// A request's `status` header field (ignored by the server) drives the harness: bits 0-9 an
// amount and bits 10-11 a unit (ms, s, min, h) by which the clock moves before the request;
// bit 12 a timer tick (Book::expire) before it; bit 13 a group commit after it; bit 14 a restart
// after it (group commit, the store closed and opened again so that its WAL is replayed, the book
// recovered from it, the connection dropped); bit 15 a store failure before it: the uncommitted
// changes are dropped, the book is reloaded from the store and the request is handled with
// writes refused, as the server does until its store recovers.
//
// Checked after every request (a violation aborts with what and where):
//   - book.check_invariants() is "" (the shadow's: at each group commit);
//   - exactly one answer: one well-formed response frame of at most 65536 bytes, with the
//     request's opcode and id, whose body decodes (decode_response);
//   - requests refused before the book (UNAUTHORIZED, UNKNOWN_OPCODE, STORAGE_UNAVAILABLE),
//     queries and every request while writes are refused change nothing;
//   - a shadow book, recovered from the store at the last group commit and fed the same requests
//     since, answers byte for byte the same (STATS: the same status; its counters are not
//     stored) and closes the same connections: recovery keeps everything the book acts on.
// At each group commit (build_batch into the store), restart and at the end: the store recovers
// into a fresh book without error, and that book, the shadow and the live book agree on every row
// the input touched, on idempotency answers, SKU_LIST pages, state counts and the meta row.
//
// The store: opening RocksDB costs far more than a whole input (options files, thread pools), so
// one store in memory serves many inputs. Each input starts from an empty one: what the previous
// input wrote is deleted (and the deletion checked) before it; after kFreshStoreOps writes the
// store is replaced by a new one, which keeps its memtables, and so its scans, small.
//
// Not covered: the outbox operations (the loop's, not the dispatcher's: Node::handle answers
// them INTERNAL), connection-level limits (conn.cc), and the network.
//
// Two builds (tests/fuzz/CMakeLists.txt): `request_fuzz`, with clang and libFuzzer, and a
// structure-aware mutator (LLVMFuzzerCustomMutator below); and `request_fuzz_replay`, with the
// project's compiler and the main() at the end (STOCKD_FUZZ_REPLAY), which runs the committed
// corpus tests/fuzz/corpus/request/, the hand-made scenarios (one per operation and outcome) and
// seeded mutations of them. `request_fuzz_replay --write-seeds DIR` writes the scenarios as
// files. docs/fuzzing.md: how to run a campaign, and the last one's figures.
#include <rocksdb/env.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dispatch.h"
#include "stockd/book.h"
#include "stockd/config.h"
#include "stockd/persist.h"
#include "stockd/protocol.h"
#include "stockd/records.h"
#include "stockd/store.h"

namespace {

using namespace stockd;
using proto::Opcode;
using proto::Status;

constexpr uint32_t kFrameLimit = 65536;  // the smallest frame a server may be configured with
constexpr size_t kFramesMax = 256;       // client requests per input
constexpr size_t kCommitsMax = 8;        // group commits per input (besides the prelude's and end)
constexpr int64_t kT0 = 1'800'000'000'000;  // 2027-01-15: the clock at the start of every input
constexpr size_t kBulkSkus = 600;           // prelude flag bit 3
constexpr size_t kFreshStoreOps = 300;      // store writes (rows) before a new store is made
constexpr size_t kRestartsMax = 4;          // restarts per input
const char kAdminToken[] = "a";
const char kOutboxToken[] = "o";

// Harness control bits in a request's status field.
constexpr uint16_t kCtlAmount = 0x03FF;
constexpr uint16_t kCtlTick = 0x1000;
constexpr uint16_t kCtlCommit = 0x2000;
constexpr uint16_t kCtlRestart = 0x4000;
constexpr uint16_t kCtlFail = 0x8000;
constexpr int64_t kCtlUnitMs[] = {1, 1000, 60'000, 3'600'000};

struct Counts {  // what the inputs exercised, reported by the replay
  size_t inputs = 0, requests = 0, ok = 0, refused = 0, errors = 0, commits = 0, failures = 0;
  size_t restarts = 0, bad_streams = 0, max_answer = 0;
} counts;

std::span<const uint8_t> g_input;  // the input being run, saved by fail() in the replay build

#ifdef STOCKD_FUZZ_REPLAY
std::string& replay_input_name();  // the replay's (below)
#endif

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzz: %s\n", what.c_str());
#ifdef STOCKD_FUZZ_REPLAY
  std::fprintf(stderr, "request_fuzz: input: %s\n", replay_input_name().c_str());
  const char* path = "request_fuzz_failure.bin";
  if (FILE* f = std::fopen(path, "wb")) {
    std::fwrite(g_input.data(), 1, g_input.size(), f);
    std::fclose(f);
    std::fprintf(stderr, "request_fuzz: the failing input (%zu bytes) is in %s\n", g_input.size(),
                 path);
  }
#endif
  std::abort();
}

std::string op_name(uint16_t op) {
  return proto::opcode_known(op) ? proto::opcode_name(static_cast<Opcode>(op))
                                 : "opcode " + std::to_string(op);
}

// ---- Comparing two books. ----

struct Touched {  // every row key a Changes named during this input
  std::set<std::string> skus;
  std::set<uint64_t> holds;
  std::set<std::pair<std::string, std::string>> users;
  std::set<std::pair<std::string, uint32_t>> codes;
  void add(const Changes& ch) {
    skus.insert(ch.skus.begin(), ch.skus.end());
    holds.insert(ch.holds.begin(), ch.holds.end());
    users.insert(ch.users.begin(), ch.users.end());
    codes.insert(ch.codes.begin(), ch.codes.end());
  }
};

std::string describe(const std::optional<rec::SkuRow>& r) {
  if (!r) return "absent";
  return "total " + std::to_string(r->total) + " available " + std::to_string(r->available) +
         " held " + std::to_string(r->held) + " sold " + std::to_string(r->sold) + " limit " +
         std::to_string(r->per_user_limit) + (r->closed ? " closed" : "") +
         (r->code_pool ? " pool" : "");
}
std::string describe(const std::optional<rec::HoldRow>& r) {
  if (!r) return "absent";
  const proto::HoldView& h = r->hold;
  return "state " + std::string(proto::hold_state_name(h.state)) + " user '" + h.user + "' key '" +
         h.key + "' expires " + std::to_string(h.expires_at_ms - kT0) + " finished " +
         std::to_string(r->finished_at_ms - kT0) + " lines " + std::to_string(h.lines.size()) +
         " codes " + std::to_string(h.codes.size());
}
std::string describe(const std::optional<rec::UserRow>& r) {
  return r ? "units " + std::to_string(r->units) : "absent";
}
std::string describe(const std::optional<rec::CodeRow>& r) {
  return r ? "code '" + r->code + "' owner " + std::to_string(r->owner) : "absent";
}

template <class Row>
void same_row(const std::optional<Row>& a, const std::optional<Row>& b, const std::string& key,
              const char* an, const char* bn) {
  if (a == b) return;
  fail("row " + key + " differs: " + an + " has " + describe(a) + "; " + bn + " has " +
       describe(b));
}

// The stats that are state (kept in the store), not counters since start.
bool is_state_stat(const std::string& name) {
  static const std::set<std::string> kState = {"skus",         "live_holds",     "finished_holds",
                                               "idem_keys",    "codes",          "units_total",
                                               "units_held",   "units_sold",     "units_available",
                                               "next_hold_id", "outbox_next_seq"};
  return kState.count(name) != 0;
}

void same_books(const Book& a, const Book& b, const Touched& t, const char* an, const char* bn) {
  const std::string pair = std::string(an) + " and " + bn;
  if (!(a.meta() == b.meta())) {
    fail("meta differs between " + pair + ": next_hold_id " +
         std::to_string(a.meta().next_hold_id) + "/" + std::to_string(b.meta().next_hold_id) +
         ", next_outbox_seq " + std::to_string(a.meta().next_outbox_seq) + "/" +
         std::to_string(b.meta().next_outbox_seq));
  }
  for (const std::string& s : t.skus)
    same_row(a.sku_row(s), b.sku_row(s), "sku '" + s + "'", an, bn);
  for (uint64_t id : t.holds) {
    auto ha = a.hold_row(id);
    same_row(ha, b.hold_row(id), "hold " + std::to_string(id), an, bn);
    if (ha && !ha->hold.key.empty() && a.idem_answer(ha->hold.key) != b.idem_answer(ha->hold.key)) {
      fail("first answer under key '" + ha->hold.key + "' differs between " + pair);
    }
  }
  for (const auto& [s, u] : t.users) {
    same_row(a.user_row(s, u), b.user_row(s, u), "user '" + s + "'/'" + u + "'", an, bn);
  }
  for (const auto& [s, i] : t.codes) {
    same_row(a.code_row(s, i), b.code_row(s, i), "code '" + s + "'#" + std::to_string(i), an, bn);
  }
  proto::SkuListReq page{"", proto::kSkuListMax};
  for (;;) {
    proto::SkuListResp pa, pb;
    a.sku_list(page, pa);
    b.sku_list(page, pb);
    if (pa != pb) fail("SKU_LIST page after '" + page.after + "' differs between " + pair);
    if (pa.skus.empty()) break;
    page.after = pa.skus.back().sku;
  }
  std::vector<proto::Stat> sa, sb;
  a.stats(sa);
  b.stats(sb);
  for (const proto::Stat& x : sa) {
    if (!is_state_stat(x.name)) continue;
    for (const proto::Stat& y : sb) {
      if (y.name == x.name && y.value != x.value) {
        fail("stat " + x.name + " differs: " + an + " " + std::to_string(x.value) + ", " + bn +
             " " + std::to_string(y.value));
      }
    }
  }
}

// ---- The harness: one input. ----

struct Node {  // a book and its dispatcher
  std::unique_ptr<Book> book;
  std::unique_ptr<Dispatcher> dispatcher;
  Changes ch;

  // Handles one frame as the loop does: what the dispatcher leaves to the loop (`loop`) is
  // answered here like Server::Impl::loop_answer, STATS from the book (the loop's own counters
  // are not modelled) and the outbox operations INTERNAL (not modelled either).
  DispatchOutcome handle(Session& s, const proto::FrameHeader& h, std::span<const uint8_t> body,
                         int64_t now, bool writes_allowed, std::string& out) {
    DispatchOutcome o = dispatcher->handle(s, h, body, now, writes_allowed, ch, out);
    if (!o.loop) return o;
    if (h.opcode == static_cast<uint16_t>(Opcode::kStats)) {
      proto::StatsResp r;
      book->stats(r.stats);
      proto::encode_response(Opcode::kStats, h.request_id, Status::kOk,
                             proto::Response(std::move(r)), out);
      return {.status = Status::kOk};
    }
    Dispatcher::encode_error(h.opcode, h.request_id, Status::kInternal, "outbox is not modelled",
                             out);
    return {.status = Status::kInternal};
  }
};

size_t changes_size(const Changes& c) {
  return c.skus.size() + c.holds.size() + c.users.size() + c.codes.size() + c.outbox.size() +
         (c.meta ? 1 : 0);
}

void check_invariants(const Book& b, const char* which, const std::string& after) {
  if (stockd::Status s = b.check_invariants(); !s.ok())
    fail(std::string(which) + " book breaks an invariant after " + after + ": " + s.message());
}

// Checks `bytes` is exactly one answer to (opcode, id) within the frame limit; its status.
Status check_answer(uint16_t opcode, uint32_t id, std::span<const uint8_t> bytes) {
  const std::string what = "the answer to " + op_name(opcode) + " id " + std::to_string(id);
  if (bytes.empty()) fail("no answer to " + op_name(opcode) + " id " + std::to_string(id));
  proto::FrameDecode d = proto::decode_frame(bytes, proto::Limits{kFrameLimit});
  if (d.kind == proto::DecodeKind::kInvalid) {
    fail(what + " (" + std::to_string(bytes.size()) + " bytes) cannot be framed: " + d.reason);
  }
  if (d.kind == proto::DecodeKind::kNeedMore) fail(what + " is cut short");
  if (d.consumed != bytes.size()) {
    fail(what + " is followed by " + std::to_string(bytes.size() - d.consumed) + " more bytes");
  }
  if (!d.header.is_response()) fail(what + " has no response flag");
  if (d.header.opcode != opcode || d.header.request_id != id) {
    fail(what + " carries " + op_name(d.header.opcode) + " id " +
         std::to_string(d.header.request_id));
  }
  const auto st = static_cast<Status>(d.header.status);
  if (auto r = proto::decode_response(static_cast<Opcode>(opcode), st, d.body); !r.ok()) {
    fail(what + " (status " + proto::status_name(st) +
         ") does not decode: " + r.status().message());
  }
  counts.max_answer = std::max(counts.max_answer, bytes.size());
  ++(st == Status::kOk ? counts.ok : proto::is_error_status(st) ? counts.errors : counts.refused);
  return st;
}

bool is_query(uint16_t op) {
  switch (static_cast<Opcode>(op)) {
    case Opcode::kHello:
    case Opcode::kPing:
    case Opcode::kHoldGet:
    case Opcode::kSkuGet:
    case Opcode::kSkuList:
    case Opcode::kStats:
      return true;
    default:
      return !proto::opcode_known(op);
  }
}

// Prelude parameters (see seed_sku()).
constexpr uint32_t kLimits[] = {0, 1, 2, 5};
constexpr int64_t kOpens[] = {0, kT0 - 1000, kT0 + 60'000, kT0 + 3'600'000};
constexpr int64_t kCloses[] = {0, kT0 + 600'000, kT0 + 86'400'000, kT0 - 1};
constexpr uint32_t kPoolSizes[] = {1, 2, 3, 8, 40, 257, 1000, 3000};
constexpr size_t kCodeLengths[] = {0, 16, 64, 128};  // 0: as short as it comes
constexpr size_t kPeriods[] = {1, 4, 16, 0};         // 0: at the end only

// RocksDB in memory (rocksdb::NewMemEnv), opened through storage::Store::open as the server
// opens it, and shared by the inputs of a process.
class MemStore {
 public:
  // An empty store for the next input.
  storage::Store& next() {
    if (store_ && ops_ < kFreshStoreOps) {
      wipe();
    } else {
      store_.reset();  // before the env that holds its files
      std::error_code ec;
      std::filesystem::remove_all(dir(), ec);  // anything the store keeps beside RocksDB's files
      env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
      // The store's directory and its log directory (RocksDB logs an error for a missing one).
      if (!env_->CreateDirIfMissing(dir()).ok() || !env_->CreateDirIfMissing(dir() + "/wal").ok()) {
        fail("cannot create the in-memory store's directories");
      }
      open();
      ops_ = 0;
    }
    return *store_;
  }
  // Closed and opened again: the rows come back from the WAL (and whatever RocksDB flushed).
  storage::Store& reopen() {
    store_.reset();
    open();
    return *store_;
  }
  void wrote(size_t ops) { ops_ += ops; }

 private:
  void open() {
    storage::StoreOptions o;
    o.env = env_.get();
    auto opened = storage::Store::open(dir(), o);
    if (!opened.ok()) fail("cannot open the in-memory store: " + opened.status().message());
    store_ = std::move(*opened);
  }

  // Every key of every table, deleted in one batch; then nothing may be left.
  void wipe() {
    storage::Batch b = store_->batch();
    auto each_key = [this](auto&& fn) {
      for (const char* prefix : {"", "h", "l"}) {  // the default family (s/ u/ c/ m), holds, log
        stockd::Status s = store_->scan(prefix, [&](std::string_view k, std::string_view) {
          fn(k);
          return true;
        });
        if (!s.ok()) fail("cannot scan the store to empty it: " + s.message());
      }
    };
    each_key([&b](std::string_view k) { b.del(k); });
    if (b.empty()) return;
    ops_ += b.size();
    if (stockd::Status s = store_->write(b, false); !s.ok())
      fail("cannot empty the store: " + s.message());
    each_key([](std::string_view k) {
      fail("the store keeps key '" + std::string(k) + "' after it was deleted");
    });
  }

  static const std::string& dir() {
    // RocksDB's files live in the MemEnv; Store::open creates this real directory and may keep
    // files of its own there (a new store starts with it removed). On /dev/shm when there is
    // one: what the store fsyncs there costs nothing.
    static const std::string d = [] {
      std::error_code ec;
      std::filesystem::path base = "/dev/shm";
      if (!std::filesystem::is_directory(base, ec)) base = std::filesystem::temp_directory_path();
      return (base / ("stockd-request-fuzz-" + std::to_string(getpid()))).string();
    }();
    static const bool cleanup = [] {
      std::atexit([] {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      });
      return true;
    }();
    (void)cleanup;
    return d;
  }

  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<storage::Store> store_;
  size_t ops_ = 0;
};

MemStore& mem_store() {
  static MemStore* s = new MemStore;  // never destroyed: RocksDB's threads may outlive main()
  return *s;
}

class Harness {
 public:
  explicit Harness(uint8_t flags) {
    config_.admin_token = kAdminToken;
    config_.outbox_token = kOutboxToken;
    config_.frame_bytes_max = kFrameLimit;
    limits_.holds_expected = 0;
    limits_.expire_per_call_max = (flags & 0x40) != 0 ? 2 : 1024;
    limits_.finished_hold_retention_ms = (flags & 0x80) != 0 ? 1000 : 3'600'000;
    config_.idem_retention_ms = limits_.finished_hold_retention_ms;
    period_ = kPeriods[(flags >> 4) & 3];
    store_ = &mem_store().next();
    live_ = recovered("the empty store");
    if (live_.book->sku_count() != 0 || !(live_.book->meta() == rec::MetaRow{})) {
      fail("the store is not empty at the start of an input");
    }
    shadow_ = recovered("the empty store");
  }

  // The admin's set-up: SKU `i` from 3 prelude bytes.
  //   b0: total (counted SKUs)
  //   b1: bits 0-1 per-user limit {0,1,2,5}; bits 2-3 opens_at {unset, T0-1s, T0+1min, T0+1h};
  //       bits 4-5 closes_at {unset, T0+10min, T0+1day, T0-1ms}; bit 6 SALE_CLOSE afterwards;
  //       bit 7 a code pool (loaded with CODES_LOAD, in frames under the limit)
  //   b2: bits 0-2 pool size {1,2,3,8,40,257,1000,3000}; bits 3-4 code length {short,16,64,128};
  //       bit 7 a 64-byte SKU id (else one letter)
  void seed_sku(Session& admin, size_t i, uint8_t b0, uint8_t b1, uint8_t b2) {
    std::string sku(1, static_cast<char>('A' + i));
    if ((b2 & 0x80) != 0) sku.resize(proto::kSkuBytesMax, 'x');
    const bool pool = (b1 & 0x80) != 0;
    proto::SkuSetReq set{sku,
                         proto::kSetTotal,
                         pool ? 0u : b0,
                         kLimits[b1 & 3],
                         kOpens[(b1 >> 2) & 3],
                         kCloses[(b1 >> 4) & 3]};
    set.mask |= set.per_user_limit != 0 ? proto::kSetPerUserLimit : 0;
    set.mask |= set.opens_at_ms != 0 ? proto::kSetOpensAt : 0;
    set.mask |= set.closes_at_ms != 0 ? proto::kSetClosesAt : 0;
    send(admin, Opcode::kSkuSet, set);
    if (pool) {
      const uint32_t n = kPoolSizes[b2 & 7];
      const size_t len = kCodeLengths[(b2 >> 3) & 3];
      proto::CodesLoadReq load{sku, {}};
      size_t bytes = 64 + sku.size();
      for (uint32_t c = 0; c < n; ++c) {
        std::string code = sku.substr(0, 1) + "-" + std::to_string(c);
        if (code.size() < len) code.resize(len, '.');
        if (bytes + 2 + code.size() > kFrameLimit - 64) {
          send(admin, Opcode::kCodesLoad, load);
          load.codes.clear();
          bytes = 64 + sku.size();
        }
        bytes += 2 + code.size();
        load.codes.push_back(std::move(code));
      }
      send(admin, Opcode::kCodesLoad, load);
    }
    if ((b1 & 0x40) != 0) send(admin, Opcode::kSaleClose, proto::SkuReq{sku});
  }

  void run(std::span<const uint8_t> in) {
    const uint8_t flags = in.empty() ? 0 : in[0];
    in = in.subspan(in.empty() ? 0 : 1);
    Session admin;
    send(admin, Opcode::kHello,
         proto::HelloReq{proto::kProtocolVersion, proto::Role::kAdmin, kAdminToken, "prelude"});
    for (size_t i = 0; i < (flags & 7u) && in.size() >= 3; ++i) {
      seed_sku(admin, i, in[0], in[1], in[2]);
      in = in.subspan(3);
    }
    if ((flags & 0x08) != 0) {
      for (size_t i = 0; i < kBulkSkus; ++i) {
        std::string sku = "Z" + std::to_string(10000 + i);
        sku.resize(proto::kSkuBytesMax, 'z');
        send(admin, Opcode::kSkuSet, proto::SkuSetReq{sku, proto::kSetTotal, i % 7});
      }
    }
    check_invariants(*live_.book, "the live", "the prelude");
    group_commit("the prelude", false);

    Session session;
    size_t frames = 0, commits = 0, restarts = 0;
    while (!in.empty() && frames < kFramesMax) {
      proto::FrameDecode d = proto::decode_frame(in, proto::Limits{kFrameLimit});
      if (d.kind == proto::DecodeKind::kNeedMore) break;
      if (d.kind == proto::DecodeKind::kInvalid) {
        // As the server does: one error frame (opcode 0, the header's id), then close.
        std::string e;
        Dispatcher::encode_error(0, d.header.request_id, d.error, d.reason, e);
        (void)check_answer(0, d.header.request_id,  // checked inside; the status is not needed
                           std::span(reinterpret_cast<const uint8_t*>(e.data()), e.size()));
        ++counts.bad_streams;
        break;
      }
      in = in.subspan(d.consumed);
      ++frames;
      const uint16_t ctl = d.header.status;
      now_ += (ctl & kCtlAmount) * kCtlUnitMs[(ctl >> 10) & 3];
      const bool failed = (ctl & kCtlFail) != 0;
      if (failed) {
        store_failure();
      } else if ((ctl & kCtlTick) != 0) {
        tick();
      }
      if (handle(session, d.header, d.body, !failed).close) session = Session{};
      if (failed) resume_store();
      if ((ctl & kCtlRestart) != 0 && restarts < kRestartsMax) {
        ++restarts;
        restart("request " + std::to_string(frames));
        session = Session{};
        continue;
      }
      const bool due = period_ != 0 && frames % period_ == 0;
      if (((ctl & kCtlCommit) != 0 || due) && commits < kCommitsMax) {
        ++commits;
        group_commit("request " + std::to_string(frames));
      }
    }
    group_commit("the end of the input");
  }

 private:
  template <class Req>
  void send(Session& s, Opcode op, const Req& req) {
    std::string frame;
    proto::encode_request(op, ++prelude_id_, proto::Request(req), frame);
    proto::FrameDecode d =
        proto::decode_frame(std::span(reinterpret_cast<const uint8_t*>(frame.data()), frame.size()),
                            proto::Limits{kFrameLimit});
    if (d.kind != proto::DecodeKind::kFrame) fail("prelude frame does not frame: " + d.reason);
    ++counts.requests;
    std::string out;
    const DispatchOutcome o = live_.handle(s, d.header, d.body, now_, true, out);
    if (o.deferred || o.close) fail("the prelude's " + op_name(d.header.opcode) + " closed");
    (void)check_answer(d.header.opcode, d.header.request_id,  // checked inside
                       std::span(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  }

  DispatchOutcome handle(Session& s, const proto::FrameHeader& h, std::span<const uint8_t> body,
                         bool writes_allowed) {
    ++counts.requests;
    Session shadow_session = s;
    const size_t before = changes_size(live_.ch);
    std::string out, shadow_out;
    DispatchOutcome o = live_.handle(s, h, body, now_, writes_allowed, out);
    const std::string what = op_name(h.opcode) + " id " + std::to_string(h.request_id);
    if (o.deferred) fail(what + " was deferred, but no outbox handler is registered");
    const Status st =
        check_answer(h.opcode, h.request_id,
                     std::span(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
    check_invariants(*live_.book, "the live", what);
    const bool unchanged = changes_size(live_.ch) == before;
    if (!unchanged && (!writes_allowed || is_query(h.opcode) || st == Status::kUnauthorized ||
                       st == Status::kUnknownOpcode || st == Status::kStorageUnavailable)) {
      fail(what + " answered " + proto::status_name(st) +
           (writes_allowed ? "" : " (writes refused)") + " but changed the book");
    }
    DispatchOutcome so = shadow_.handle(shadow_session, h, body, now_, writes_allowed, shadow_out);
    const bool stats = h.opcode == static_cast<uint16_t>(Opcode::kStats);
    const bool same = stats ? shadow_out.size() >= 12 && shadow_out.compare(10, 2, out, 10, 2) == 0
                            : shadow_out == out;
    if (!same || so.close != o.close || shadow_session.hello_done != s.hello_done ||
        shadow_session.role != s.role) {
      std::string why;
      proto::FrameDecode d = proto::decode_frame(
          std::span(reinterpret_cast<const uint8_t*>(shadow_out.data()), shadow_out.size()),
          proto::Limits{kFrameLimit});
      if (d.kind == proto::DecodeKind::kFrame) {
        why = proto::status_name(static_cast<Status>(d.header.status));
        if (proto::is_error_status(static_cast<Status>(d.header.status))) {
          if (auto resp = proto::decode_response(static_cast<Opcode>(h.opcode),
                                                 static_cast<Status>(d.header.status), d.body);
              resp.ok()) {
            why += " '" + std::get<proto::ErrorResp>(*resp).message + "'";
          }
        }
      }
      fail(what + ": the book recovered at the last group commit answers differently: live " +
           proto::status_name(st) + " (" + std::to_string(out.size()) + " bytes), recovered " +
           why + " (" + std::to_string(shadow_out.size()) + " bytes)");
    }
    return o;
  }

  void tick() {  // the server's timer: expire what is due
    size_t a = live_.book->expire(now_, live_.ch);
    size_t b = shadow_.book->expire(now_, shadow_.ch);
    check_invariants(*live_.book, "the live", "a timer tick");
    if (a != b) {
      fail("a timer tick expired " + std::to_string(a) + " holds in the live book, " +
           std::to_string(b) + " in the recovered one");
    }
  }

  // A book recovered from the store, checked.
  Node recovered(const std::string& when) {
    Node n;
    n.book = std::make_unique<Book>(limits_);
    Recovered r;
    if (stockd::Status s = recover(*store_, *n.book, r); !s.ok()) {
      fail("recovery after " + when + " failed: " + s.message());
    }
    check_invariants(*n.book, "the recovered", "recovery after " + when);
    if (r.meta.lsn != lsn_) {
      fail("recovery after " + when + " found lsn " + std::to_string(r.meta.lsn) + ", wrote " +
           std::to_string(lsn_));
    }
    n.dispatcher = std::make_unique<Dispatcher>(*n.book, config_);
    return n;
  }

  void write(const Changes& ch, const std::string& when) {
    storage::Batch b = store_->batch();
    build_batch(b, *live_.book, ch, ++lsn_, 0, 1);
    mem_store().wrote(b.size());
    stockd::Status s = store_->write(b, false);
    if (!s.ok()) fail("store write after " + when + " failed: " + s.message());
  }

  // `shadowed`: the shadow saw the requests since the last commit (not the prelude's).
  void group_commit(const std::string& when, bool shadowed = true) {
    ++counts.commits;
    touched_.add(live_.ch);
    if (shadowed) {
      touched_.add(shadow_.ch);
      check_invariants(*shadow_.book, "the shadow (recovered)", when);
      same_books(*live_.book, *shadow_.book, touched_, "live", "shadow");
      if (live_.ch.outbox != shadow_.ch.outbox) {
        fail("outbox records before the group commit after " + when + " differ from the shadow's");
      }
    }
    write(live_.ch, when);
    live_.ch.clear();
    shadow_ = recovered(when);
    same_books(*live_.book, *shadow_.book, touched_, "live", "recovered");
  }

  // As Server::Impl::fail_store: what was not written is lost; back to what the store holds.
  void store_failure() {
    ++counts.failures;
    touched_.add(live_.ch);
    touched_.add(shadow_.ch);
    check_invariants(*shadow_.book, "the shadow (recovered)",
                     "the requests before a store failure");
    same_books(*live_.book, *shadow_.book, touched_, "live", "shadow");
    live_ = recovered("a store failure");
    shadow_ = recovered("a store failure");
  }
  // As try_recover_store: a synced probe batch (meta only) before writes are taken again.
  void resume_store() { write(Changes{}, "the store recovered"); }

  // A restart of the server: what is written stays (group commit), the store is closed and
  // opened again (its WAL replayed), and the server goes on with the book recovered from it.
  void restart(const std::string& when) {
    ++counts.restarts;
    group_commit(when);
    store_ = &mem_store().reopen();
    live_ = recovered("a restart after " + when);
    same_books(*live_.book, *shadow_.book, touched_, "restarted", "recovered before the restart");
    shadow_ = recovered("a restart after " + when);
  }

  Config config_;
  BookLimits limits_;
  size_t period_ = 4;
  storage::Store* store_ = nullptr;  // mem_store()'s
  Node live_, shadow_;
  Touched touched_;
  uint64_t lsn_ = 0;
  uint32_t prelude_id_ = 0;
  int64_t now_ = kT0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::warn);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  g_input = std::span<const uint8_t>(data, size);
  ++counts.inputs;
  Harness h(size == 0 ? 0 : data[0]);
  h.run(g_input);
  return 0;
}

#ifndef STOCKD_FUZZ_REPLAY

// A structure-aware mutator for libFuzzer. Byte-level edits rarely keep a stream of frames
// meaningful (a string's length, its body_len and the next frame's start must change together),
// so most mutations work on whole frames: a request decoded, a field changed (SKU ids of any
// length, users, keys, quantities, TTLs, times, masks, codes), encoded again; frames inserted,
// dropped, repeated (a retry) or swapped; a frame's harness control bits (clock, tick, commit,
// restart, store failure) or a prelude byte changed. The rest are libFuzzer's own byte edits.

#include <random>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using Rng = std::minstd_rand;

size_t pick(Rng& rng, size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); }

struct Stream {  // an input cut where the harness cuts it
  std::string prelude;
  std::vector<std::string> frames;  // whole frames, header and body
  std::string tail;                 // what does not frame
};

Stream parse(const uint8_t* data, size_t size) {
  Stream st;
  const size_t n = std::min<size_t>(size, size == 0 ? 0 : 1 + 3 * (data[0] & 7u));
  st.prelude.assign(reinterpret_cast<const char*>(data), n);
  std::span<const uint8_t> in(data + n, size - n);
  while (!in.empty()) {
    proto::FrameDecode d = proto::decode_frame(in, proto::Limits{kFrameLimit});
    if (d.kind != proto::DecodeKind::kFrame) break;
    st.frames.emplace_back(reinterpret_cast<const char*>(in.data()), d.consumed);
    in = in.subspan(d.consumed);
  }
  st.tail.assign(reinterpret_cast<const char*>(in.data()), in.size());
  return st;
}

std::string join(const Stream& st) {
  std::string out = st.prelude;
  for (const std::string& f : st.frames) out += f;
  return out + st.tail;
}

uint16_t get16(const std::string& f, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(f[at]) | static_cast<uint8_t>(f[at + 1]) << 8);
}
uint32_t get32(const std::string& f, size_t at) {
  return get16(f, at) | static_cast<uint32_t>(get16(f, at + 2)) << 16;
}
void put16(std::string& f, size_t at, uint16_t v) {
  f[at] = static_cast<char>(v & 0xFF);
  f[at + 1] = static_cast<char>(v >> 8);
}
void put32(std::string& f, size_t at, uint32_t v) {
  put16(f, at, static_cast<uint16_t>(v & 0xFFFF));
  put16(f, at + 2, static_cast<uint16_t>(v >> 16));
}

std::string some_sku(Rng& rng) {
  std::string s(1, static_cast<char>('A' + pick(rng, 7)));
  switch (rng() % 6) {
    case 0:
    case 1:
      return s;  // a prelude SKU
    case 2:
      s.resize(proto::kSkuBytesMax, 'x');  // a prelude SKU with a long id
      return s;
    case 3:
      s = "Z" + std::to_string(10000 + pick(rng, kBulkSkus));  // one of the 600
      s.resize(proto::kSkuBytesMax, 'z');
      return s;
    default:  // any length, now and then one over the limit
      s.resize(1 + pick(rng, proto::kSkuBytesMax + (rng() % 8 == 0 ? 2 : 0)), 'n');
      return s;
  }
}
std::string some_name(Rng& rng, char first, size_t max) {
  switch (rng() % 5) {
    case 0:
      return "";
    case 1:
      return std::string(pick(rng, max + 2), first);
    default:
      return first + std::to_string(pick(rng, 4));
  }
}
uint32_t some_u32(Rng& rng) {
  static const uint32_t kValues[] = {0,   1,   2,    3,     5,     7,          64,        255,
                                     256, 257, 1000, 65535, 65536, 0x7FFFFFFF, 0xFFFFFFFF};
  return rng() % 4 == 0 ? static_cast<uint32_t>(rng()) : kValues[pick(rng, std::size(kValues))];
}
int64_t some_time(Rng& rng) {
  static const int64_t kDeltas[] = {0, -1, 1, -1000, 1000, 60'000, 600'000, 3'600'000, 86'400'000};
  switch (rng() % 6) {
    case 0:
      return 0;
    case 1:
      return rng() % 2 == 0 ? INT64_MAX : INT64_MIN;
    default:
      return kT0 + kDeltas[pick(rng, std::size(kDeltas))];
  }
}
uint32_t some_ttl(Rng& rng) {
  static const uint32_t kValues[] = {0, 1, 1000, 5000, 60'000, 86'400'000, 86'400'001};
  return rng() % 5 == 0 ? some_u32(rng) : kValues[pick(rng, std::size(kValues))];
}

void mutate_line(proto::Line& l, Rng& rng) {
  if (rng() % 2 == 0) {
    l.sku = some_sku(rng);
  } else {
    l.qty = rng() % 2 == 0 ? 1 + static_cast<uint32_t>(pick(rng, 4)) : some_u32(rng);
  }
}

// One field of a request changed.
void mutate(proto::Request& req, Rng& rng) {
  if (auto* m = std::get_if<proto::HelloReq>(&req)) {
    switch (rng() % 4) {
      case 0:
        m->role = static_cast<proto::Role>(pick(rng, 5));
        break;
      case 1: {
        static const char* kTokens[] = {"", kAdminToken, kOutboxToken, "x"};
        m->token = kTokens[pick(rng, 4)];
        break;
      }
      case 2:
        m->version = static_cast<uint16_t>(pick(rng, 3));
        break;
      default:
        m->client_name = some_name(rng, 'c', proto::kClientNameBytesMax);
        break;
    }
  } else if (auto* r = std::get_if<proto::ReserveReq>(&req)) {
    switch (rng() % 7) {
      case 0:
        r->user = some_name(rng, 'u', proto::kUserBytesMax);
        break;
      case 1:
        r->key = some_name(rng, 'k', proto::kKeyBytesMax);
        break;
      case 2:
        r->ttl_ms = some_ttl(rng);
        break;
      case 3:
        if (r->lines.size() <= proto::kReserveLinesMax) r->lines.push_back({some_sku(rng), 1});
        break;
      case 4:
        if (!r->lines.empty()) r->lines.erase(r->lines.begin() + pick(rng, r->lines.size()));
        break;
      default:
        if (!r->lines.empty()) mutate_line(r->lines[pick(rng, r->lines.size())], rng);
        break;
    }
  } else if (auto* h = std::get_if<proto::HoldReq>(&req)) {
    if (rng() % 2 == 0) {
      h->hold_id = rng() % 8 == 0 ? some_u32(rng) : 1 + pick(rng, 12);
    } else {  // whose hold: nobody (any, or BAD_REQUEST for a buyer), an owner, a stranger
      h->user = rng() % 3 == 0 ? std::string() : "u" + std::to_string(pick(rng, 4));
    }
  } else if (auto* c = std::get_if<proto::ClaimReq>(&req)) {
    switch (rng() % 3) {
      case 0:
        c->sku = some_sku(rng);
        break;
      case 1:
        c->user = some_name(rng, 'u', proto::kUserBytesMax);
        break;
      default:
        c->key = some_name(rng, 'k', proto::kKeyBytesMax);
        break;
    }
  } else if (auto* k = std::get_if<proto::SkuReq>(&req)) {
    k->sku = some_sku(rng);
  } else if (auto* l = std::get_if<proto::SkuListReq>(&req)) {
    if (rng() % 2 == 0) {
      l->after = rng() % 3 == 0 ? "" : some_sku(rng);
    } else {
      l->limit = rng() % 2 == 0 ? proto::kSkuListMax : some_u32(rng);
    }
  } else if (auto* set = std::get_if<proto::SkuSetReq>(&req)) {
    switch (rng() % 6) {
      case 0:
        set->sku = some_sku(rng);
        break;
      case 1:
        set->mask = static_cast<uint8_t>(rng() % 8 == 0 ? rng() : rng() % 16);
        break;
      case 2:
        set->total = rng() % 4 == 0 ? UINT64_MAX - pick(rng, 2) : some_u32(rng);
        break;
      case 3:
        set->per_user_limit = rng() % 2 == 0 ? static_cast<uint32_t>(pick(rng, 4)) : some_u32(rng);
        break;
      case 4:
        set->opens_at_ms = some_time(rng);
        break;
      default:
        set->closes_at_ms = some_time(rng);
        break;
    }
  } else if (auto* rs = std::get_if<proto::RestockReq>(&req)) {
    static const int64_t kDeltas[] = {-1, 1, -3, 3, -1000, 1000, INT64_MIN, INT64_MAX};
    if (rng() % 3 == 0) {
      rs->sku = some_sku(rng);
    } else {
      rs->delta = kDeltas[pick(rng, std::size(kDeltas))];
    }
  } else if (auto* cl = std::get_if<proto::CodesLoadReq>(&req)) {
    switch (rng() % 4) {
      case 0:
        cl->sku = some_sku(rng);
        break;
      case 1:
        if (!cl->codes.empty()) cl->codes.push_back(cl->codes[pick(rng, cl->codes.size())]);
        break;
      case 2:
        if (!cl->codes.empty()) cl->codes.erase(cl->codes.begin() + pick(rng, cl->codes.size()));
        break;
      default:
        for (size_t i = 1 + pick(rng, rng() % 4 == 0 ? 300 : 4); i > 0; --i) {
          std::string code = "m" + std::to_string(rng() % 100000);
          if (rng() % 4 == 0) code.resize(1 + pick(rng, proto::kCodeBytesMax + 1), '.');
          cl->codes.push_back(std::move(code));
        }
        break;
    }
  } else if (auto* rd = std::get_if<proto::OutboxReadReq>(&req)) {
    rd->after_seq = pick(rng, 4);
    rd->max_records = some_u32(rng);
    rd->wait_ms = rng() % 2 == 0 ? 0 : some_u32(rng);
  } else if (auto* ack = std::get_if<proto::OutboxAckReq>(&req)) {
    ack->upto_seq = pick(rng, 6);
  }
}

constexpr Opcode kOps[] = {
    Opcode::kHello,        Opcode::kPing,      Opcode::kReserve,    Opcode::kCommit,
    Opcode::kRelease,      Opcode::kClaim,     Opcode::kHoldGet,    Opcode::kSkuGet,
    Opcode::kSkuList,      Opcode::kStats,     Opcode::kSkuSet,     Opcode::kRestock,
    Opcode::kCodesLoad,    Opcode::kSaleClose, Opcode::kOutboxRead, Opcode::kOutboxAck,
    Opcode::kOutboxStatus,
};

// A plausible request for `op`.
proto::Request fresh(Opcode op, Rng& rng) {
  switch (op) {
    case Opcode::kHello: {
      static const proto::Role kRoles[] = {proto::Role::kBuyer, proto::Role::kAdmin,
                                           proto::Role::kOutbox};
      const proto::Role role = kRoles[pick(rng, 3)];
      return proto::HelloReq{proto::kProtocolVersion, role,
                             role == proto::Role::kAdmin    ? kAdminToken
                             : role == proto::Role::kOutbox ? kOutboxToken
                                                            : "",
                             "m"};
    }
    case Opcode::kPing:
      return proto::PingReq{};
    case Opcode::kReserve:
      return proto::ReserveReq{"u" + std::to_string(pick(rng, 4)),
                               "",
                               some_ttl(rng),
                               {{some_sku(rng), 1 + static_cast<uint32_t>(pick(rng, 3))}}};
    case Opcode::kCommit:
    case Opcode::kRelease:
    case Opcode::kHoldGet:
      return proto::HoldReq{1 + pick(rng, 8),
                            rng() % 4 == 0 ? std::string() : "u" + std::to_string(pick(rng, 4))};
    case Opcode::kClaim:
      return proto::ClaimReq{some_sku(rng), "u" + std::to_string(pick(rng, 4)), ""};
    case Opcode::kSkuGet:
    case Opcode::kSaleClose:
      return proto::SkuReq{some_sku(rng)};
    case Opcode::kSkuList:
      return proto::SkuListReq{"", proto::kSkuListMax};
    case Opcode::kStats:
      return proto::StatsReq{};
    case Opcode::kSkuSet:
      return proto::SkuSetReq{some_sku(rng), proto::kSetTotal, pick(rng, 12)};
    case Opcode::kRestock:
      return proto::RestockReq{some_sku(rng), rng() % 2 == 0 ? 5 : -5};
    case Opcode::kCodesLoad:
      return proto::CodesLoadReq{some_sku(rng), {"m" + std::to_string(rng() % 100000)}};
    case Opcode::kOutboxRead:
      return proto::OutboxReadReq{0, 10, 0};
    case Opcode::kOutboxAck:
      return proto::OutboxAckReq{1};
    case Opcode::kOutboxStatus:
      return proto::OutboxStatusReq{};
  }
  return proto::PingReq{};
}

std::string frame_of(Opcode op, uint32_t id, uint16_t ctl, const proto::Request& req) {
  std::string f;
  proto::encode_request(op, id, req, f);
  put16(f, 10, ctl);
  return f;
}

uint16_t some_ctl(Rng& rng) {
  uint16_t ctl = static_cast<uint16_t>(pick(rng, 1024) | pick(rng, 4) << 10);
  if (rng() % 4 == 0) ctl = static_cast<uint16_t>(ctl | kCtlTick);
  if (rng() % 6 == 0) ctl = static_cast<uint16_t>(ctl | kCtlCommit);
  if (rng() % 10 == 0) ctl = static_cast<uint16_t>(ctl | kCtlRestart);
  if (rng() % 10 == 0) ctl = static_cast<uint16_t>(ctl | kCtlFail);
  return rng() % 3 == 0 ? ctl : 0;
}

// The body of `f` through libFuzzer's own byte edits; body_len follows.
void mutate_body(std::string& f) {
  std::string body = f.substr(proto::kHeaderBytes);
  const size_t size = body.size();
  body.resize(size + 64);
  body.resize(LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(body.data()), size, body.size()));
  f.resize(proto::kHeaderBytes);
  put32(f, 4, static_cast<uint32_t>(body.size()));
  f += body;
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  Rng rng(seed);
  const unsigned how = rng() % 12;
  if (how < 3) return LLVMFuzzerMutate(data, size, max_size);
  Stream st = parse(data, size);
  if (st.prelude.empty()) st.prelude.assign(1, static_cast<char>(rng()));
  uint32_t next_id = 1;
  for (const std::string& f : st.frames) next_id = std::max(next_id, get32(f, 12) + 1);
  const bool none = st.frames.empty();
  const size_t at = pick(rng, st.frames.size());
  switch (how) {
    case 3:  // a prelude byte: flags, or a SKU's parameters
      st.prelude[pick(rng, st.prelude.size())] = static_cast<char>(rng());
      break;
    case 4:  // the harness control bits of a request
      if (!none) put16(st.frames[at], 10, some_ctl(rng));
      break;
    case 5:
    case 6: {  // a field of a request
      if (none) break;
      std::string& f = st.frames[at];
      const uint16_t op = get16(f, 8);
      proto::Request req;
      const std::span<const uint8_t> body(
          reinterpret_cast<const uint8_t*>(f.data()) + proto::kHeaderBytes,
          f.size() - proto::kHeaderBytes);
      if (!proto::opcode_known(op) ||
          !proto::decode_request(static_cast<Opcode>(op), body, req).ok()) {
        mutate_body(f);
        break;
      }
      for (size_t n = 1 + pick(rng, 3); n > 0; --n) mutate(req, rng);
      f = frame_of(static_cast<Opcode>(op), get32(f, 12), get16(f, 10), req);
      break;
    }
    case 7: {  // a new request
      const Opcode op = kOps[pick(rng, std::size(kOps))];
      proto::Request req = fresh(op, rng);
      for (size_t n = pick(rng, 3); n > 0; --n) mutate(req, rng);
      auto pos = st.frames.begin() +
                 static_cast<std::ptrdiff_t>(none ? 0 : pick(rng, st.frames.size() + 1));
      if (none)
        pos = st.frames.insert(pos,
                               frame_of(Opcode::kHello, next_id++, 0, fresh(Opcode::kHello, rng))) +
              1;
      st.frames.insert(pos, frame_of(op, next_id, some_ctl(rng), req));
      break;
    }
    case 8:  // a request dropped, or sent again (a retry, same id)
      if (none) break;
      if (rng() % 2 == 0) {
        st.frames.erase(st.frames.begin() + static_cast<std::ptrdiff_t>(at));
      } else {
        st.frames.insert(
            st.frames.begin() + static_cast<std::ptrdiff_t>(pick(rng, st.frames.size() + 1)),
            st.frames[at]);
      }
      break;
    case 9:  // two requests swapped
      if (!none) std::swap(st.frames[at], st.frames[pick(rng, st.frames.size())]);
      break;
    case 10:  // a request's body through byte edits
      if (!none) mutate_body(st.frames[at]);
      break;
    default:  // a request of another opcode in its place (same id and control bits)
      if (!none) {
        const Opcode op = kOps[pick(rng, std::size(kOps))];
        st.frames[at] =
            frame_of(op, get32(st.frames[at], 12), get16(st.frames[at], 10), fresh(op, rng));
      }
      break;
  }
  std::string out = join(st);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::copy(out.begin(), out.end(), data);
  return out.size();
}

#endif  // !STOCKD_FUZZ_REPLAY

#ifdef STOCKD_FUZZ_REPLAY

#include <array>
#include <chrono>
#include <fstream>

#include "replay.h"

namespace {

using proto::Role;

std::string& replay_input_name() { return stockd::fuzz::current_input(); }

// Prelude flags (byte 0).
constexpr uint8_t kBulk = 0x08, kEvery1 = 0x00, kEvery4 = 0x10, kEvery16 = 0x20, kEndOnly = 0x30;
constexpr uint8_t kExpire2 = 0x40, kShortRetention = 0x80;
// Prelude SKUs (3 bytes each, see Harness::seed_sku).
using SkuSpec = std::array<uint8_t, 3>;
constexpr SkuSpec kCounted10{10, 0x00, 0x00};
constexpr SkuSpec kLimit2{5, 0x02, 0x00};
constexpr SkuSpec kPool8{0, 0x80, 0x03};
constexpr SkuSpec kPool3Long{0, 0x80, 0x80 | 0x18 | 0x02};    // 64-byte id, 128-byte codes
constexpr SkuSpec kPool257Long{0, 0x80, 0x80 | 0x18 | 0x05};  // the same, 257 codes
constexpr SkuSpec kOpensIn1Min{3, 0x08, 0x00};
constexpr SkuSpec kClosesIn10Min{3, 0x10, 0x00};
constexpr SkuSpec kClosed{3, 0x40, 0x00};
// Harness control in a request's status field.
constexpr uint16_t after_ms(uint16_t n) { return n; }
constexpr uint16_t after_s(uint16_t n) { return static_cast<uint16_t>(0x0400 | n); }
constexpr uint16_t after_min(uint16_t n) { return static_cast<uint16_t>(0x0800 | n); }
constexpr uint16_t after_h(uint16_t n) { return static_cast<uint16_t>(0x0C00 | n); }

std::string sku_id(size_t i, bool long_id = false) {
  std::string s(1, static_cast<char>('A' + i));
  if (long_id) s.resize(proto::kSkuBytesMax, 'x');
  return s;
}

// One scenario: the prelude, then requests, as the bytes of an input.
class Script {
 public:
  Script(std::string name, uint8_t flags, std::vector<SkuSpec> skus) : name_(std::move(name)) {
    bytes_.push_back(static_cast<char>((flags & ~7u) | skus.size()));
    for (const SkuSpec& s : skus) bytes_.append(reinterpret_cast<const char*>(s.data()), 3);
  }
  Script& req(Opcode op, const proto::Request& r, uint16_t ctl = 0) {
    const size_t at = bytes_.size();
    proto::encode_request(op, ++id_, r, bytes_);
    bytes_[at + 10] = static_cast<char>(ctl & 0xFF);
    bytes_[at + 11] = static_cast<char>(ctl >> 8);
    return *this;
  }
  Script& raw(const std::string& b) {
    bytes_ += b;
    return *this;
  }
  Script& hello(Role role, std::string token = "", uint16_t version = proto::kProtocolVersion) {
    return req(Opcode::kHello, proto::HelloReq{version, role, std::move(token), "seed"});
  }
  Script& reserve(std::string user, std::string key, uint32_t ttl, std::vector<proto::Line> lines,
                  uint16_t ctl = 0) {
    return req(Opcode::kReserve,
               proto::ReserveReq{std::move(user), std::move(key), ttl, std::move(lines)}, ctl);
  }
  Script& hold(Opcode op, uint64_t id, uint16_t ctl = 0, std::string user = "u1") {
    return req(op, proto::HoldReq{id, std::move(user)}, ctl);
  }
  Script& claim(std::string sku, std::string user, std::string key = "", uint16_t ctl = 0) {
    return req(Opcode::kClaim, proto::ClaimReq{std::move(sku), std::move(user), std::move(key)},
               ctl);
  }
  Script& sku(Opcode op, std::string sku, uint16_t ctl = 0) {
    return req(op, proto::SkuReq{std::move(sku)}, ctl);
  }
  Script& ping(uint16_t ctl) { return req(Opcode::kPing, proto::PingReq{}, ctl); }
  std::pair<std::string, std::string> done() const { return {name_, bytes_}; }

 private:
  std::string name_;
  std::string bytes_;
  uint32_t id_ = 0;
};

std::vector<std::pair<std::string, std::string>> scenarios() {
  const std::string A = sku_id(0), B = sku_id(1), C = sku_id(2), D = sku_id(3), E = sku_id(4);
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&out](const Script& s) { out.push_back(s.done()); };

  add(Script("seed-reserve-commit", kEvery4, {kCounted10, kLimit2, kPool8})
          .hello(Role::kBuyer)
          .reserve("u1", "k1", 60000, {{A, 2}})
          .hold(Opcode::kCommit, 1)
          .hold(Opcode::kHoldGet, 1)
          .sku(Opcode::kSkuGet, A)
          .reserve("u1", "k1", 60000, {{A, 2}})    // a retry: the first answer
          .reserve("u1", "k1", 60000, {{A, 3}}));  // another request: KEY_CONFLICT
  add(Script("seed-expiry", kEvery4, {kCounted10})
          .hello(Role::kBuyer)
          .reserve("u1", "", 1000, {{A, 1}})
          .hold(Opcode::kHoldGet, 1, after_s(2) | kCtlTick)
          .hold(Opcode::kCommit, 1)
          .reserve("u2", "", 0, {{A, 10}}));
  add(Script("seed-release-claim", kEvery1, {kCounted10, kLimit2, kPool8})
          .hello(Role::kBuyer)
          .reserve("u1", "r", 60000, {{C, 2}})
          .hold(Opcode::kRelease, 1)
          .hold(Opcode::kRelease, 1)
          .hold(Opcode::kCommit, 1)
          .claim(C, "u2", "c1")
          .claim(C, "u2", "c1")
          .claim(C, "u3")
          .claim(C, "u4")
          .claim(C, "u5")
          .claim(C, "u6")
          .claim(C, "u7")
          .claim(C, "u8")
          .claim(C, "u9")
          .claim(C, "u10"));
  add(Script("seed-limit", kEvery4, {kCounted10, kLimit2})
          .hello(Role::kBuyer)
          .reserve("u1", "", 60000, {{B, 2}})
          .reserve("u1", "", 60000, {{B, 1}})
          .hold(Opcode::kRelease, 1)
          .reserve("u1", "", 0, {{B, 1}, {A, 1}})
          .claim(A, "u1"));
  add(Script("seed-admin", kEvery4, {kCounted10, kLimit2, kPool8})
          .hello(Role::kAdmin, kAdminToken)
          .req(Opcode::kSkuSet, proto::SkuSetReq{"N", proto::kSetTotal, 5})
          .req(Opcode::kRestock, proto::RestockReq{"N", 3})
          .req(Opcode::kRestock, proto::RestockReq{"N", -100})
          .req(Opcode::kCodesLoad, proto::CodesLoadReq{C, {"C-1"}})
          .req(Opcode::kCodesLoad, proto::CodesLoadReq{"P", {"p1", "p2", "p2"}})
          .req(Opcode::kCodesLoad, proto::CodesLoadReq{"P", {"p1", "p2", "p3"}})
          .sku(Opcode::kSaleClose, A)
          .reserve("admin", "", 0, {{A, 1}})
          .reserve("admin", "", 0, {{"P", 2}})
          .req(Opcode::kSkuList, proto::SkuListReq{"", 1000})
          .req(Opcode::kSkuList, proto::SkuListReq{"B", 1})
          .req(Opcode::kStats, proto::StatsReq{})
          .req(Opcode::kSkuSet, proto::SkuSetReq{"N", proto::kSetPerUserLimit | proto::kSetClosesAt,
                                                 0, 1, 0, kT0 + 1000}));
  add(Script("seed-opens-later", kEvery4, {kCounted10, kLimit2, kPool8, kOpensIn1Min})
          .hello(Role::kBuyer)
          .reserve("u1", "", 60000, {{D, 1}})
          .reserve("u1", "", 60000, {{D, 1}}, after_min(2))
          .sku(Opcode::kSkuGet, D));
  add(Script("seed-store-failure", kEndOnly, {kCounted10})
          .hello(Role::kBuyer)
          .reserve("u1", "k", 60000, {{A, 1}}, kCtlCommit)
          .reserve("u2", "", 60000, {{A, 2}})
          .reserve("u3", "", 60000, {{A, 1}}, kCtlFail)
          .hold(Opcode::kHoldGet, 2)
          .reserve("u1", "k", 60000, {{A, 1}})
          .hold(Opcode::kCommit, 1));
  add(Script("seed-restart", kEvery4, {kCounted10, kLimit2, kPool8})
          .hello(Role::kBuyer)
          .reserve("u1", "k", 60000, {{A, 1}, {C, 2}})
          .reserve("u2", "", 1000, {{B, 2}}, kCtlRestart)
          .reserve("u1", "k", 60000, {{A, 1}, {C, 2}})  // closed by the restart: UNAUTHORIZED
          .hello(Role::kBuyer)
          .reserve("u1", "k", 60000, {{A, 1}, {C, 2}})  // the first answer, from the store
          .hold(Opcode::kCommit, 1, after_s(3) | kCtlRestart)
          .hello(Role::kBuyer)
          .hold(Opcode::kCommit, 2)
          .claim(C, "u3", "c", kCtlTick)
          .hold(Opcode::kHoldGet, 3, kCtlRestart));
  add(Script("seed-retention", kShortRetention | kEvery4, {kCounted10})
          .hello(Role::kBuyer)
          .reserve("u1", "k", 0, {{A, 1}})
          .ping(after_s(2) | kCtlTick)
          .reserve("u1", "k", 0, {{A, 1}})
          .hold(Opcode::kHoldGet, 1));
  add(Script("seed-bulk-list", kBulk | kEndOnly, {kCounted10})
          .hello(Role::kBuyer)
          .req(Opcode::kSkuList, proto::SkuListReq{"", 1000})
          .req(Opcode::kSkuList, proto::SkuListReq{"Z10500", 1000}));
  add(Script("seed-bad-requests", kEvery4, {kCounted10})
          .req(Opcode::kPing, proto::PingReq{})  // before HELLO: UNAUTHORIZED, closed
          .hello(Role::kBuyer, "", 2)            // unsupported version, closed
          .hello(Role::kAdmin, "wrong")          // closed
          .hello(Role::kBuyer)
          .req(Opcode::kSkuSet, proto::SkuSetReq{"X", proto::kSetTotal, 1})  // not for buyers
          .req(Opcode::kOutboxStatus, proto::OutboxStatusReq{})
          .raw(std::string("\x53\x4b\x01\x00\x00\x00\x00\x00\x99\x00\x00\x00\x63\x00\x00\x00", 16))
          .raw(std::string("\x53\x4b\x01\x01\x00\x00\x00\x00\x02\x00\x00\x00\x64\x00\x00\x00", 16))
          .raw(std::string("\x53\x4b\x01\x00\x01\x00\x00\x00\x10\x00\x00\x00\x65\x00\x00\x00\x00",
                           17))
          .reserve("u1", "", 0, {{A, 0}})
          .reserve("", "", 0, {{A, 1}})
          .raw(
              std::string("\x53\x4b\x02\x00\x00\x00\x00\x00\x02\x00\x00\x00\x66\x00\x00\x00", 16)));
  add(Script("seed-outbox", kEvery4, {kCounted10})
          .hello(Role::kOutbox, kOutboxToken)
          .req(Opcode::kOutboxStatus, proto::OutboxStatusReq{})
          .req(Opcode::kOutboxRead, proto::OutboxReadReq{0, 10, 0})
          .req(Opcode::kOutboxAck, proto::OutboxAckReq{1})
          .req(Opcode::kStats, proto::StatsReq{}));
  add(Script("seed-big-hold", kEvery4, {kPool257Long})
          .hello(Role::kBuyer)
          .reserve("u1", "", 60000, {{sku_id(0, true), 257}})
          .reserve("u1", "", 60000, {{sku_id(0, true), 256}})
          .hold(Opcode::kHoldGet, 1)
          .hold(Opcode::kRelease, 1));
  add(Script("seed-multi-line", kExpire2 | kEvery16,
             {kCounted10, kLimit2, kPool8, kPool3Long, kClosesIn10Min})
          .hello(Role::kBuyer)
          .reserve("u1", "m", 30000, {{A, 1}, {B, 1}, {C, 1}, {sku_id(3, true), 1}, {E, 1}})
          .hold(Opcode::kCommit, 1)
          .reserve("u2", "", 1000, {{A, 1}})
          .reserve("u3", "", 1000, {{C, 1}})
          .reserve("u4", "", 1000, {{sku_id(3, true), 1}})
          .reserve("u5", "", 1000, {{E, 1}})
          .reserve("u6", "", 1000, {{B, 1}, {A, 1}})
          .ping(after_s(5) | kCtlTick)
          .ping(kCtlTick)
          .req(Opcode::kStats, proto::StatsReq{}, kCtlTick));
  add(Script("seed-sale-closes", kEvery4,
             {kCounted10, kLimit2, kPool8, kOpensIn1Min, kClosesIn10Min})
          .hello(Role::kBuyer)
          .reserve("u1", "", 3600000, {{E, 1}})
          .reserve("u2", "", 0, {{E, 1}})
          .hold(Opcode::kCommit, 1, after_min(11))
          .reserve("u3", "", 0, {{E, 1}}));
  add(Script("seed-closed", kEvery4,
             {kCounted10, kLimit2, kPool8, kOpensIn1Min, kClosesIn10Min, kClosed})
          .hello(Role::kBuyer)
          .reserve("u1", "", 0, {{sku_id(5), 1}})
          .claim(C, "u1", "", after_h(25))
          .hold(Opcode::kHoldGet, 1));
  add(Script("seed-below-committed", kEvery1, {kCounted10})
          .hello(Role::kAdmin, kAdminToken)
          .reserve("u1", "", 60000, {{A, 5}})
          .reserve("u2", "", 0, {{A, 2}})
          .req(Opcode::kRestock, proto::RestockReq{A, -8})
          .req(Opcode::kRestock, proto::RestockReq{A, -3})
          .req(Opcode::kSkuSet, proto::SkuSetReq{A, proto::kSetTotal, 4})
          .req(Opcode::kSkuSet, proto::SkuSetReq{A, proto::kSetTotal, 7})
          .req(Opcode::kSkuSet, proto::SkuSetReq{A, proto::kSetPerUserLimit, 0, 3})
          .reserve("u1", "", 0, {{A, 1}}));
  Script many("seed-many-holds", kEvery16, {kCounted10, kLimit2, kPool8});
  many.hello(Role::kAdmin, kAdminToken).req(Opcode::kRestock, proto::RestockReq{A, 200});
  for (int i = 0; i < 110; ++i) many.reserve("u1", "", 60000, {{A, 1}}, after_ms(7));
  many.ping(after_min(1) | kCtlTick).req(Opcode::kStats, proto::StatsReq{});
  add(many);
  return out;
}

int write_seeds(const std::string& dir) {
  std::filesystem::create_directories(dir);
  auto seeds = scenarios();
  for (const auto& [name, bytes] : seeds)
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  std::string dir = STOCKD_REQUEST_CORPUS;
  size_t mutations = 4000;
  double seconds = 15;
  uint64_t seed = 20260101;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--write-seeds" && i + 1 < argc) return write_seeds(argv[++i]);
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::strtod(argv[++i], nullptr);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      dir = arg;
    }
  }
  auto inputs = stockd::fuzz::read_corpus(dir);
  if (inputs.empty()) {
    std::fprintf(stderr, "request_fuzz_replay: no inputs in %s\n", dir.c_str());
    return 1;
  }
  const size_t files = inputs.size();
  for (auto& s : scenarios()) inputs.push_back(std::move(s));
  auto r = stockd::fuzz::replay(inputs, mutations, seconds, seed);
  std::printf(
      "request_fuzz_replay: %zu corpus files of %s, %zu scenarios and %zu mutations (seed %llu) "
      "in %.1f s, no failure: %zu requests (%zu OK, %zu refused, %zu errors), %zu group commits, "
      "%zu store failures, %zu restarts, %zu unframeable streams, largest answer %zu bytes\n",
      files, dir.c_str(), inputs.size() - files, r.mutations, static_cast<unsigned long long>(seed),
      r.seconds, counts.requests, counts.ok, counts.refused, counts.errors, counts.commits,
      counts.failures, counts.restarts, counts.bad_streams, counts.max_answer);
  return 0;
}

#endif  // STOCKD_FUZZ_REPLAY
