// stockctl inspect / verify: read a stopped server's data dir without starting a server.
// Opens the RocksDB store read-only and rebuilds the book through the same recovery code the
// server runs, so "verify OK" means "stockd would start on this data".
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "stockd/ack_mark.h"
#include "stockd/book.h"
#include "stockd/dir_lock.h"
#include "stockd/persist.h"
#include "stockd/store.h"

namespace stockd::ctl {
namespace {

struct Opened {
  std::unique_ptr<storage::DirLock> lock;  // held by a command that writes (released last)
  std::unique_ptr<storage::Store> store;
  Book book;
  Recovered rec;
  Status error;         // a recovery problem, ok if none
  std::string refusal;  // why the data dir was not opened (open_offline: kExitRefused)
};

// Whether a process holds the RocksDB LOCK of `dir` (a running server: RocksDB takes a POSIX
// record lock on it), and which (`pid`: 0 when the holder is in another PID namespace, as a
// server in another container is).
bool store_locked(const std::string& dir, pid_t& pid) {
  pid = 0;
  const int fd = ::open((std::filesystem::path(dir) / "LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_GETLK, &l) == 0 && l.l_type != F_UNLCK;
  ::close(fd);
  if (locked) pid = l.l_pid;
  return locked;
}

// A command that writes the data dir runs as the dir's owner: as anybody else (root, mostly)
// the files it writes would be theirs, and stockd, running as the owner, could not read them
// (a mark rewrite as root: the next start refused, "Permission denied"). kExitOk or kExitUsage.
int check_owner(const std::string& dir, const char* command) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || st.st_uid == ::geteuid()) return kExitOk;
  const passwd* pw = ::getpwuid(st.st_uid);
  const std::string owner = pw != nullptr ? pw->pw_name : "uid " + std::to_string(st.st_uid);
  std::cerr << dir << " belongs to " << owner << ": run " << command << " as that user (sudo -u "
            << owner << " stockctl ...), so that stockd can read what it writes\n";
  return kExitUsage;
}

// Returns an exit code; on kExitOk `o` is filled (o.error may still name a recovery problem).
// `without_mark`: a missing or damaged ACKED is not refused (mark rewrite). `writes`: the data
// dir's lock is taken and held in `o` (a command that writes), else only checked to be free.
int open_offline(const Args& a, Opened& o, bool without_mark = false, bool writes = false) {
  if (a.data_dir.empty() || !std::filesystem::is_directory(a.data_dir)) {
    std::cerr << "--data-dir: '" << a.data_dir << "' is not a directory\n";
    return kExitUsage;
  }
  if (!std::filesystem::exists(std::filesystem::path(a.data_dir) / "CURRENT")) {
    std::cerr << a.data_dir << ": not a stockd data dir (no RocksDB CURRENT file)\n";
    return kExitUsage;
  }
  // A running server's store changes under a read-only open (its logs are written, trimmed,
  // deleted): what would be read is stale, or looks damaged when it is not.
  const auto refuse = [&o](std::string why) {
    std::cerr << why << '\n';
    o.refusal = std::move(why);
    return kExitRefused;
  };
  if (pid_t pid = 0; store_locked(a.data_dir, pid)) {
    return refuse(a.data_dir + ": a server is running on this data dir (" +
                  (pid != 0 ? "pid " + std::to_string(pid)
                            : std::string("a process in another PID namespace")) +
                  " holds its LOCK); stop it first (stockctl stats reads a running one)");
  }
  // The data dir's own lock (dir_lock.h): also held by a server whose store failed and is
  // closed between two reopens, and by migrate and mark rewrite.
  if (writes) {
    Result<std::unique_ptr<storage::DirLock>> lock = storage::DirLock::take(a.data_dir);
    if (!lock.ok()) return refuse(lock.status().message());
    o.lock = std::move(lock).value();
  } else if (Status free = storage::DirLock::check_free(a.data_dir); !free.ok()) {
    return refuse(free.message());
  }
  storage::StoreOptions so;
  so.create_if_missing = false;
  so.read_only = true;
  so.without_mark = without_mark;
  Result<std::unique_ptr<storage::Store>> store = storage::Store::open(a.data_dir, so);
  if (!store.ok()) return refuse(store.status().message());
  o.store = std::move(store).value();
  o.error = recover(*o.store, o.book, o.rec);
  return kExitOk;
}

}  // namespace

int cmd_inspect(const Args& a) {
  Opened o;
  if (int rc = open_offline(a, o); rc != kExitOk) return rc;
  if (!o.error.ok()) {
    std::cerr << "cannot rebuild state: " << o.error.message() << " (run stockctl verify)\n";
    return kExitRefused;
  }
  const rec::MetaRow& m = o.rec.meta;
  std::vector<proto::Stat> stats;
  o.book.stats(stats);
  proto::SkuListResp skus;
  std::string after;
  Json js = Json::array();
  size_t shown = 0, limit = a.limit == 0 ? SIZE_MAX : a.limit;
  do {  // page through every SKU, as many as asked for
    skus.skus.clear();
    o.book.sku_list({after, proto::kSkuListMax}, skus);
    for (const auto& s : skus.skus) {
      if (shown++ < limit) js.push_back(to_json(s));
    }
    if (!skus.skus.empty()) after = skus.skus.back().sku;
  } while (!skus.skus.empty() && shown < limit);  // a page may be short while more follow
  Json out = {{"status", "OK"},
              {"data_dir", a.data_dir},
              {"lsn", m.lsn},
              {"next_hold_id", m.next_hold_id},
              {"outbox_next_seq", m.next_outbox_seq},
              {"outbox_acked", m.outbox_acked},
              {"outbox_first", m.outbox_first},
              {"checkpoint_lsn", o.rec.checkpoint_lsn},
              {"snapshots", o.store->snapshots()},
              {"checkpoint_damaged", o.rec.damaged},
              {"log", {{"groups", o.rec.log_groups}, {"replayed", o.rec.replayed}}},
              {"rows",
               {{"skus", o.rec.skus},
                {"holds", o.rec.holds},
                {"idempotency_keys", o.rec.idem},
                {"user_counts", o.rec.users},
                {"codes", o.rec.codes},
                {"outbox", o.rec.outbox}}},
              {"live_holds", o.book.live_holds()},
              {"skus", js}};
  if (a.json) {
    std::cout << dump(out) << '\n';  // bytes that are not UTF-8 (a SKU id) replaced, not thrown
    return kExitOk;
  }
  std::cout << "data dir       " << a.data_dir << "\nlast lsn       " << m.lsn
            << "\nnext hold id   " << m.next_hold_id << "\noutbox         next "
            << m.next_outbox_seq << ", acked " << m.outbox_acked << ", first retained "
            << m.outbox_first << "\nrows           " << o.rec.skus << " skus, " << o.rec.holds
            << " holds (" << o.book.live_holds() << " live), " << o.rec.idem << " keys, "
            << o.rec.codes << " codes (the checkpoint at lsn " << o.rec.checkpoint_lsn << "), "
            << o.rec.outbox << " outbox\nlog            " << o.rec.log_groups << " groups, "
            << o.rec.replayed << " decisions replayed after the checkpoint\nsnapshots      ";
  for (uint64_t lsn : o.store->snapshots()) std::cout << "lsn " << lsn << ' ';
  std::cout << (o.rec.snapshot_lsn != 0 ? "(the checkpoint is damaged: the state above comes "
                                          "from the snapshot and the log after it)"
                                        : "")
            << '\n';
  for (const auto& s : js) {
    std::cout << "  " << s["sku"].get<std::string>() << ": total=" << s["total"]
              << " available=" << s["available"] << " held=" << s["held"] << " sold=" << s["sold"]
              << '\n';
  }
  return kExitOk;
}

int cmd_verify(const Args& a) {
  Opened o;
  if (int rc = open_offline(a, o); rc != kExitOk) {
    // A script reads stdout: a data dir that does not open is an answer too (it said nothing).
    if (a.json && !o.refusal.empty()) {
      std::cout << dump(Json{{"status", "REFUSED"}, {"problem", o.refusal}}) << '\n';
    }
    return rc;
  }
  const Status problem = o.error.ok() ? o.book.check_invariants() : o.error;
  // A damaged checkpoint with a snapshot to fall back on: a start recovers (and writes the state
  // anew), so exit 0, but the damage is said.
  const bool fallback = problem.ok() && o.rec.snapshot_lsn != 0;
  if (fallback) {
    std::cerr << "WARNING: " << o.rec.damaged << "; a start falls back on the snapshot at lsn "
              << o.rec.snapshot_lsn << ", replays the log after it and writes the state anew\n";
  }
  if (a.json) {
    std::cout << dump(Json{{"status", problem.ok() ? "OK" : "DAMAGED"},
                           {"lsn", o.rec.meta.lsn},
                           {"problem", problem.message()},
                           {"checkpoint_damaged", o.rec.damaged},
                           {"fallback_snapshot_lsn", o.rec.snapshot_lsn}})
              << '\n';
  } else if (problem.ok()) {
    std::cout << "OK: " << (fallback ? "a snapshot" : "a checkpoint") << " at lsn "
              << o.rec.checkpoint_lsn << " (" << o.rec.skus << " skus, " << o.rec.holds
              << " holds), " << o.rec.replayed << " decisions replayed from " << o.rec.log_groups
              << " log groups, " << o.rec.outbox
              << " outbox records retained, invariants hold, lsn " << o.rec.meta.lsn << '\n';
  }
  if (!problem.ok()) {
    std::cerr << "DAMAGED: " << problem.message() << '\n';
    return kExitRefused;
  }
  return kExitOk;
}

// ACKED deleted or damaged on its own (taken for a stray file): the store refuses to start, since
// without it a lost log cannot be told from a small store. When the operator knows the log is
// intact, this writes the mark again at the log's last group, after checking that the store
// recovers. It cannot bring back what a log cut at the same time lost: that is why it is a
// command, not something the server does by itself.
int cmd_mark_rewrite(const Args& a) {
  if (a.data_dir.empty() || !std::filesystem::is_directory(a.data_dir)) {
    std::cerr << "--data-dir: '" << a.data_dir << "' is not a directory\n";
    return kExitUsage;
  }
  if (int rc = check_owner(a.data_dir, "mark rewrite"); rc != kExitOk) return rc;
  // A store always keeps its live log: none in wal/ means the log was deleted (or replaced by an
  // empty dir), and a mark written at what is left would accept the loss of every decision since
  // the last checkpoint.
  if (storage::log_files_in(a.data_dir + "/wal").empty()) {
    std::cerr << a.data_dir << "/wal holds no log: it was deleted, and with it every decision "
              << "since the last checkpoint; the mark is not rewritten (restore the data dir "
                 "from a backup)\n";
    return kExitRefused;
  }
  uint64_t lsn = 0;
  bool found = false;
  const Status now = storage::AckMark::read(a.data_dir, lsn, found);
  if (now.ok() && found) {
    std::cerr << a.data_dir << "/" << storage::kAckMarkFile << " is there and intact (lsn " << lsn
              << "): nothing to rewrite\n";
    return kExitRefused;
  }
  Opened o;
  if (int rc = open_offline(a, o, /*without_mark=*/true, /*writes=*/true); rc != kExitOk) {
    return rc;
  }
  if (!o.error.ok()) {
    std::cerr << "the store does not recover (" << o.error.message()
              << "); the mark is not rewritten\n";
    return kExitRefused;
  }
  const uint64_t last = o.rec.meta.lsn;
  o.store.reset();
  const std::filesystem::path mark = std::filesystem::path(a.data_dir) / storage::kAckMarkFile;
  std::error_code ec;
  if (std::filesystem::exists(mark, ec)) {  // damaged: kept for a look, out of the way
    std::filesystem::rename(mark, mark.string() + ".damaged", ec);
    if (ec) {
      std::cerr << "cannot move the damaged " << mark.string() << " aside: " << ec.message()
                << '\n';
      return kExitRefused;
    }
  }
  Status s;
  {
    Result<std::unique_ptr<storage::AckMark>> opened = storage::AckMark::open(a.data_dir, true);
    s = opened.ok() ? (*opened)->advance(last) : opened.status();
  }  // the mark is closed (fsynced)
  if (!s.ok()) {
    std::cerr << "cannot write " << mark.string() << ": " << s.message() << '\n';
    return kExitRefused;
  }
  if (a.json) {
    std::cout << dump(Json{{"status", "OK"}, {"lsn", std::to_string(last)}}) << '\n';
  } else {
    std::cout << "wrote " << mark.string() << " at lsn " << last
              << ", the last group of the log; stockd starts on it again\n";
  }
  return kExitOk;
}

int cmd_migrate(const Args& a) {
  if (a.data_dir.empty() || !std::filesystem::is_directory(a.data_dir)) {
    std::cerr << "--data-dir: '" << a.data_dir << "' is not a directory\n";
    return kExitUsage;
  }
  if (int rc = check_owner(a.data_dir, "migrate"); rc != kExitOk) return rc;
  Result<std::unique_ptr<storage::DirLock>> lock = storage::DirLock::take(a.data_dir);
  if (!lock.ok()) {
    std::cerr << "cannot migrate: " << lock.status().message() << '\n';
    return kExitRefused;
  }
  std::string report;
  if (Status s = migrate_earlier_layout(a.data_dir, report); !s.ok()) {
    std::cerr << "cannot migrate: " << s.message() << '\n';
    return kExitRefused;
  }
  if (a.json) {
    std::cout << dump(Json{{"status", "OK"}, {"report", report}}) << '\n';
  } else {
    std::cout << report << '\n';
  }
  return kExitOk;
}

}  // namespace stockd::ctl
