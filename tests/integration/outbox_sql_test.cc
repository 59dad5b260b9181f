// The outbox sidecar end to end: real stockd, real stockd-outbox processes, SQLite files and a
// throwaway PostgreSQL cluster. Checks that every order the buyers were told OK reaches SQL
// exactly once, through sidecar kill -9s and a PostgreSQL outage, that a replay gives the same
// rows, and that the sidecar refuses what would resell (exit 3) or cannot work (exit 2).
//
// The sinks are also tested directly (no stockd): rows, cursor compare-and-set, idempotent
// re-apply, a writer killed mid-transaction.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "records.h"
#include "sink.h"
#include "support/process.h"

namespace stockd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Exit code of a waitpid status; 128 + signal if killed.
int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// fork + exec `args` with stdout and stderr appended to `log` (if set), optionally as `uid`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log, uid_t uid = 0,
            gid_t gid = 0) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  if (!log.empty()) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
  }
  if (uid != 0 && (setgid(gid) != 0 || setuid(uid) != 0)) _exit(126);
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it: no orphans if we die
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

// Waits up to `timeout` for `pid`; kills it (and fails) if it does not exit. Returns the code.
int wait_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (waitpid(pid, &status, WNOHANG) == pid) return exit_code(status);
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  ADD_FAILURE() << "process " << pid << " did not exit within " << timeout.count() << " ms";
  return -1;
}

// ---------------------------------------------------------------------------------------------
// A throwaway PostgreSQL cluster: initdb into a temp dir, postgres on a free loopback port with
// its socket in that dir, trust auth (plus one password user), stopped by PID.

fs::path pg_bindir() {
  if (const char* env = std::getenv("STOCKD_PG_BINDIR")) return env;
  if (FILE* p = popen("pg_config --bindir 2>/dev/null", "r")) {
    char buf[512] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    pclose(p);
    std::string dir(buf, n);
    while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
    if (!dir.empty() && fs::exists(fs::path(dir) / "postgres")) return dir;
  }
  std::error_code ec;
  fs::path best;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres") && e.path() > best) best = e.path();
  }
  return best.empty() ? fs::path() : best / "bin";
}

class PgCluster {
 public:
  static constexpr const char* kPasswordUser = "pwuser";
  static constexpr const char* kPassword = "right-password";

  ~PgCluster() {
    stop();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // "" when running, else why not (the caller skips).
  std::string start() {
    bin_ = pg_bindir();
    if (bin_.empty() || !fs::exists(bin_ / "initdb")) {
      return "PostgreSQL server binaries (initdb, postgres) not found; set STOCKD_PG_BINDIR";
    }
    if (getuid() == 0) {
      const passwd* pw = getpwnam("postgres");
      if (pw == nullptr) return "running as root and there is no 'postgres' user to run postgres";
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
    }
    dir_ = make_temp_dir("pg");
    if (uid_ != 0 && chown(dir_.c_str(), uid_, gid_) != 0) return "cannot chown " + dir_.string();
    port_ = free_port();
    std::string log = (dir_ / "initdb.log").string();
    pid_t pid =
        spawn({(bin_ / "initdb").string(), "-D", (dir_ / "data").string(), "-A", "trust", "-U",
               "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"},
              log, uid_, gid_);
    if (wait_for(pid, 60s) != 0) return "initdb failed: " + slurp(log);
    std::ofstream hba(dir_ / "data" / "pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\n"
        << "host all " << kPasswordUser << " 127.0.0.1/32 scram-sha-256\n"
        << "host all all 127.0.0.1/32 trust\n";
    hba.close();
    if (std::string err = start_server(); !err.empty()) return err;
    std::string err = exec("postgres", std::string("CREATE ROLE ") + kPasswordUser +
                                           " LOGIN PASSWORD '" + kPassword + "'");
    if (err.empty())
      err = exec("postgres", std::string("CREATE DATABASE pwdb OWNER ") + kPasswordUser);
    return err;
  }

  // (Re)starts postgres on the same port and data; waits until it accepts connections.
  std::string start_server() {
    std::string log = (dir_ / "postgres.log").string();
    pid_ = spawn({(bin_ / "postgres").string(), "-D", (dir_ / "data").string(), "-p",
                  std::to_string(port_), "-k", dir_.string(), "-c", "listen_addresses=127.0.0.1",
                  "-c", "max_connections=50", "-c", "shared_buffers=64MB"},
                 log, uid_, gid_);
    const std::string ping = url("postgres");
    for (int i = 0; i < 3000; ++i) {
      if (PQping(ping.c_str()) == PQPING_OK) return "";
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "postgres exited: " + slurp(log);
      }
      std::this_thread::sleep_for(10ms);
    }
    return "postgres did not accept connections within 30 s: " + slurp(log);
  }

  // Fast shutdown (SIGINT), by PID.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    wait_for(pid_, 30s);
    pid_ = -1;
  }

  std::string url(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  std::string password_url(const std::string& password) const {
    return std::string("postgresql://") + kPasswordUser + ":" + password +
           "@127.0.0.1:" + std::to_string(port_) + "/pwdb";
  }
  uint16_t port() const { return port_; }

  // Runs one statement as postgres on `db`; "" or the error.
  std::string exec(const std::string& db, const std::string& sql) const {
    PGconn* c = PQconnectdb(url(db).c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        err = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    PQfinish(c);
    return err;
  }

  // A new empty database named `prefix`_N; returns its URL.
  std::string create_db(const std::string& prefix) {
    const std::string name = prefix + "_" + std::to_string(++databases_);
    std::string err = exec("postgres", "CREATE DATABASE " + name);
    EXPECT_EQ(err, "");
    return url(name);
  }

 private:
  fs::path bin_;
  fs::path dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

// One cluster per test process, started on first use, stopped at exit.
std::unique_ptr<PgCluster>& pg_instance() {
  static std::unique_ptr<PgCluster> cluster;
  return cluster;
}

PgCluster* pg_cluster(std::string& skip) {
  static std::string why;
  static bool tried = false;
  if (!tried) {
    tried = true;
    pg_instance() = std::make_unique<PgCluster>();
    why = pg_instance()->start();
    if (!why.empty()) pg_instance().reset();
  }
  skip = why;
  return pg_instance().get();
}

class PgEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { pg_instance().reset(); }  // stops postgres, removes its files
};
[[maybe_unused]] ::testing::Environment* const kPgEnv =
    ::testing::AddGlobalTestEnvironment(new PgEnvironment);

#define REQUIRE_PG(var)                  \
  std::string pg_skip_;                  \
  PgCluster* var = pg_cluster(pg_skip_); \
  if (var == nullptr) {                  \
    GTEST_SKIP() << pg_skip_;            \
  }

// ---------------------------------------------------------------------------------------------
// What a database holds, in a canonical text form (rows sorted by primary key).

struct DbDump {
  std::vector<std::string> orders;  // order_id|seq|user_id|idem_key|created_at_ms|committed_at_ms
  std::vector<std::string> lines;   // order_id|sku|qty
  std::vector<std::string> codes;   // code|sku|order_id
  std::vector<std::string> events;  // seq|kind|hold_id|user_id|at_ms|lines
  uint64_t cursor = 0;
  bool operator==(const DbDump&) const = default;
};

// For failure messages: sizes, cursor and the first rows of each table.
void PrintTo(const DbDump& d, std::ostream* os) {
  *os << "{cursor " << d.cursor;
  const std::pair<const char*, const std::vector<std::string>*> tables[] = {
      {"orders", &d.orders}, {"lines", &d.lines}, {"codes", &d.codes}, {"events", &d.events}};
  for (const auto& [name, rows] : tables) {
    *os << ", " << rows->size() << " " << name << " [";
    for (size_t i = 0; i < rows->size() && i < 3; ++i) *os << (i ? "; " : "") << (*rows)[i];
    *os << (rows->size() > 3 ? "; ...]" : "]");
  }
  *os << "}";
}

const char* const kDumpQueries[] = {
    "SELECT order_id, seq, user_id, idem_key, created_at_ms, committed_at_ms FROM orders "
    "ORDER BY order_id",
    "SELECT order_id, sku, qty FROM order_lines ORDER BY order_id, sku",
    "SELECT code, sku, order_id FROM order_codes ORDER BY sku, code",
    "SELECT seq, kind, hold_id, user_id, at_ms, lines FROM hold_events ORDER BY seq",
    "SELECT seq FROM stockd_outbox_cursor WHERE id = 1"};

std::vector<std::string>* dump_table(DbDump& d, int i) {
  std::vector<std::string>* t[] = {&d.orders, &d.lines, &d.codes, &d.events};
  return i < 4 ? t[i] : nullptr;
}

DbDump dump_sqlite(const std::string& path) {
  DbDump d;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);  // one snapshot for all tables
  for (int i = 0; i < 5; ++i) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, kDumpQueries[i], -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* v = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
        row += (c > 0 ? "|" : "") + std::string(v != nullptr ? v : "\\N");
      }
      if (auto* t = dump_table(d, i)) {
        t->push_back(row);
      } else {
        d.cursor = std::stoull(row);
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return d;
}

DbDump dump_pg(const std::string& url) {
  DbDump d;
  PGconn* c = PQconnectdb(url.c_str());
  EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ"));  // one snapshot for all tables
  for (int i = 0; i < 5; ++i) {
    PGresult* r = PQexec(c, kDumpQueries[i]);
    EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
    for (int row = 0; row < PQntuples(r); ++row) {
      std::string s;
      for (int col = 0; col < PQnfields(r); ++col) {
        s += (col > 0 ? "|" : "") +
             std::string(PQgetisnull(r, row, col) ? "\\N" : PQgetvalue(r, row, col));
      }
      if (auto* t = dump_table(d, i)) {
        t->push_back(s);
      } else {
        d.cursor = std::stoull(s);
      }
    }
    PQclear(r);
  }
  PQfinish(c);
  return d;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, '|')) out.push_back(part);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Processes

struct SidecarRun {
  int code = -1;
  std::string log;
};

class SidecarProcess {
 public:
  SidecarProcess(const StockdProcess& server, std::string sql, std::vector<std::string> extra = {})
      : sql_(std::move(sql)), extra_(std::move(extra)) {
    port_ = server.port();
    log_ = make_temp_dir("outbox-log") / "sidecar.log";
  }
  ~SidecarProcess() {
    kill9();
    fs::remove_all(log_.parent_path());
  }
  void set_token(std::string token) { token_ = std::move(token); }

  void start() {
    std::vector<std::string> args = {STOCKD_OUTBOX_BIN,
                                     "--server",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "--token",
                                     token_,
                                     "--sql",
                                     sql_,
                                     "--log-level",
                                     "info"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = spawn(args, log_.string());
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int term() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int code = wait_for(pid_, 30s);
    pid_ = -1;
    return code;
  }
  bool running() {
    int status = 0;
    return pid_ > 0 && waitpid(pid_, &status, WNOHANG) == 0;
  }
  // Runs with --once (plus `more`) to completion.
  SidecarRun once(std::vector<std::string> more = {}) {
    std::vector<std::string> saved = extra_;
    extra_.push_back("--once");
    extra_.insert(extra_.end(), more.begin(), more.end());
    fs::remove(log_);
    start();
    SidecarRun r;
    r.code = wait_for(pid_, 90s);
    pid_ = -1;
    r.log = slurp(log_);
    extra_ = saved;
    return r;
  }
  std::string log() const { return slurp(log_); }

 private:
  std::string sql_;
  std::vector<std::string> extra_;
  std::string token_ = StockdProcess::kOutboxToken;
  int port_ = 0;
  fs::path log_;
  pid_t pid_ = -1;
};

// A fresh stockd with SKUs for the load: kSkus plain SKUs and one code-pool SKU.
constexpr int kPlainSkus = 4;
constexpr const char* kCodeSku = "CODES";
constexpr int kCodes = 3000;

std::string plain_sku(int i) { return "SKU-" + std::to_string(i); }

void seed(const StockdProcess& server) {
  Client admin = server.admin();
  for (int i = 0; i < kPlainSkus; ++i) {
    proto::SkuSetReq req;
    req.sku = plain_sku(i);
    req.mask = proto::kSetTotal;
    req.total = 1000000;
    ASSERT_TRUE(admin.sku_set(req).ok());
  }
  proto::SkuSetReq pool;
  pool.sku = kCodeSku;
  pool.mask = proto::kSetTotal;
  ASSERT_TRUE(admin.sku_set(pool).ok());
  for (int from = 0; from < kCodes; from += 1000) {
    proto::CodesLoadReq req;
    req.sku = kCodeSku;
    for (int i = from; i < from + 1000; ++i) req.codes.push_back("C" + std::to_string(100000 + i));
    auto r = admin.codes_load(req);
    ASSERT_TRUE(r.ok()) << proto::status_name(r.status) << " " << r.error;
  }
}

// ---------------------------------------------------------------------------------------------
// The load: concurrent buyers, and what their OK answers promise SQL will hold.

struct Promised {
  std::mutex mu;
  std::map<uint64_t, std::string> orders;  // order_id -> "user|key"
  std::set<std::string> lines;             // order_id|sku|qty
  std::set<std::string> codes;             // code|sku|order_id
  std::set<uint64_t> released;             // hold ids
  std::set<uint64_t> expiring;             // hold ids left to expire
  std::atomic<int> failures{0};            // transport failures: outcome unknown
  std::atomic<int> ok_answers{0};

  void add_order(uint64_t id, const std::string& user, const std::string& key,
                 const std::vector<proto::Line>& lines_in, const std::vector<proto::SkuCode>& c) {
    std::lock_guard lock(mu);
    EXPECT_TRUE(orders.emplace(id, user + "|" + (key.empty() ? "\\N" : key)).second) << id;
    for (const auto& l : lines_in)
      lines.insert(std::to_string(id) + "|" + l.sku + "|" + std::to_string(l.qty));
    for (const auto& x : c) codes.insert(x.code + "|" + x.sku + "|" + std::to_string(id));
    ++ok_answers;
  }
};

void buyer(const StockdProcess& server, int thread, const std::atomic<bool>& stop, int ops_max,
           bool with_expiry, Promised& p) {
  ClientOptions o = server.options(proto::Role::kBuyer);
  Client c(o);
  std::mt19937 rng(static_cast<uint32_t>(thread * 7919 + 1));
  for (int i = 0; i < ops_max && !stop.load(); ++i) {
    const std::string user = "u" + std::to_string(rng() % 500);
    const std::string key = "t" + std::to_string(thread) + "-" + std::to_string(i);
    const int op = static_cast<int>(rng() % 10);
    proto::ReserveReq req{
        user,
        key,
        0,
        {{plain_sku(static_cast<int>(rng() % kPlainSkus)), static_cast<uint32_t>(1 + rng() % 3)}}};
    if (op == 1) req.lines.push_back({kCodeSku, 1});
    if (op == 2) req.key.clear();  // orders without an idempotency key too
    if (op <= 2) {                 // buy now
      auto r = c.reserve(req);
      if (!r.transport_ok()) ++p.failures;
      if (r.ok()) p.add_order(r.body.hold_id, user, req.key, req.lines, r.body.codes);
      continue;
    }
    if (op == 3 || op == 4) {  // claim a code
      auto r = c.claim({kCodeSku, user, key});
      if (!r.transport_ok()) ++p.failures;
      if (r.ok())
        p.add_order(r.body.order_id, user, key, {{kCodeSku, 1}}, {{kCodeSku, r.body.code}});
      continue;
    }
    req.ttl_ms = op == 9 && with_expiry ? 300 : 60000;
    if (op == 5) req.lines.push_back({kCodeSku, 2});
    auto held = c.reserve(req);
    if (!held.transport_ok()) ++p.failures;
    if (!held.ok()) continue;
    const uint64_t id = held.body.hold_id;
    if (op == 9 && with_expiry) {
      std::lock_guard lock(p.mu);
      p.expiring.insert(id);
      continue;
    }
    auto done = op == 8 || op == 9 ? c.release(id) : c.commit(id);
    if (!done.transport_ok()) ++p.failures;
    if (!done.ok()) continue;
    if (op == 8 || op == 9) {
      std::lock_guard lock(p.mu);
      p.released.insert(id);
    } else {
      p.add_order(id, user, req.key, done.body.lines, done.body.codes);
    }
  }
}

class Load {
 public:
  Load(const StockdProcess& server, int threads, int ops_per_thread, bool with_expiry = false) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &server, t, ops_per_thread, with_expiry] {
        buyer(server, t, stop_, ops_per_thread, with_expiry, promised);
      });
    }
  }
  ~Load() { finish(); }
  void stop() { stop_ = true; }
  void finish() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  Promised promised;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------
// The exact match: SQL holds what the buyers were told, once, and what stockd says it sold.

void expect_exact(const DbDump& d, const StockdProcess& server, Promised& p) {
  ASSERT_EQ(p.failures.load(), 0) << "some answers were lost: the expected state is unknown";
  Client outbox(server.options(proto::Role::kOutbox));
  auto st = outbox.outbox_status();
  ASSERT_TRUE(st.ok()) << st.error;
  EXPECT_EQ(d.cursor, st.body.head_seq);

  std::map<uint64_t, std::string> orders;
  std::set<uint64_t> seqs;
  for (const auto& row : d.orders) {
    auto f = split(row);
    ASSERT_EQ(f.size(), 6u) << row;
    orders[std::stoull(f[0])] = f[2] + "|" + f[3];
    EXPECT_TRUE(seqs.insert(std::stoull(f[1])).second) << row;
  }
  std::set<uint64_t> released, expired;
  for (const auto& row : d.events) {
    auto f = split(row);
    EXPECT_TRUE(seqs.insert(std::stoull(f[0])).second) << row;
    (f[1] == "released" ? released : expired).insert(std::stoull(f[2]));
  }
  // Every sequence number 1..cursor once: nothing lost, nothing twice.
  ASSERT_EQ(seqs.size(), d.cursor);
  if (!seqs.empty()) {
    EXPECT_EQ(*seqs.rbegin(), d.cursor);
  }

  std::lock_guard lock(p.mu);
  EXPECT_EQ(orders, p.orders);
  EXPECT_EQ(std::set<std::string>(d.lines.begin(), d.lines.end()), p.lines);
  EXPECT_EQ(d.lines.size(), p.lines.size());
  EXPECT_EQ(std::set<std::string>(d.codes.begin(), d.codes.end()), p.codes);
  EXPECT_EQ(d.codes.size(), p.codes.size());
  EXPECT_EQ(released, p.released);
  EXPECT_EQ(expired, p.expiring);

  // Per SKU, the units in SQL are what stockd says it sold.
  std::map<std::string, uint64_t> units;
  for (const auto& row : d.lines) {
    auto f = split(row);
    units[f[1]] += std::stoull(f[2]);
  }
  Client admin = server.admin();
  for (int i = 0; i <= kPlainSkus; ++i) {
    const std::string sku = i < kPlainSkus ? plain_sku(i) : kCodeSku;
    auto v = admin.sku_get(sku);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(units[sku], v.body.sold) << sku;
  }
  EXPECT_GT(p.ok_answers.load(), 0);
}

// Waits until stockd's live holds are gone (the short-TTL ones expire).
void wait_no_live_holds(const StockdProcess& server, Promised& p) {
  if (p.expiring.empty()) return;
  std::this_thread::sleep_for(400ms);
  Client buyer = server.buyer();
  for (int i = 0; i < 300; ++i) {
    bool all = true;
    for (uint64_t id : p.expiring) {
      auto h = buyer.hold_get(id);
      all = all && h.ok() && h.body.state == proto::HoldState::kExpired;
      if (!all) break;
    }
    if (all) return;
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "short holds did not expire";
}

std::unique_ptr<StockdProcess> start_stockd(std::vector<std::string> args = {}) {
  auto s = std::make_unique<StockdProcess>(std::move(args));
  EXPECT_TRUE(s->start()) << "stockd did not start";
  return s;
}

std::string sqlite_url(const fs::path& dir, const std::string& name) {
  return "sqlite:" + (dir / name).string();
}

// ---------------------------------------------------------------------------------------------
// Sink tests, without stockd

proto::OutboxRecord record(uint64_t seq, proto::OutboxKind kind = proto::OutboxKind::kOrder) {
  proto::OutboxRecord r;
  r.seq = seq;
  r.kind = kind;
  r.order_id = 100 + seq;
  r.user = "user" + std::to_string(seq % 7);
  r.key = seq % 2 ? "k" + std::to_string(seq) : "";
  r.created_at_ms = 1700000000000 + static_cast<int64_t>(seq);
  r.at_ms = r.created_at_ms + 5;
  r.lines = {{"A", 1 + static_cast<uint32_t>(seq % 3)}};
  if (seq % 3 == 0) r.lines.push_back({"B\t\\x", 2});  // COPY escapes
  if (seq % 4 == 0) r.codes.push_back({"A", "code-" + std::to_string(seq)});
  return r;
}

std::vector<proto::OutboxRecord> records(uint64_t from, uint64_t to) {
  std::vector<proto::OutboxRecord> v;
  for (uint64_t s = from; s <= to; ++s) {
    v.push_back(record(s, s % 5 == 0    ? proto::OutboxKind::kReleased
                          : s % 11 == 0 ? proto::OutboxKind::kExpired
                                        : proto::OutboxKind::kOrder));
  }
  return v;
}

class SinkTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("sink");
    if (GetParam() == "sqlite") {
      url_ = sqlite_url(dir_, "t.db");
    } else {
      REQUIRE_PG(pg);
      url_ = pg->create_db("sink");
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<outbox::Sink> sink() {
    std::string err;
    auto s = outbox::make_sink(url_, err);
    EXPECT_NE(s, nullptr) << err;
    return s;
  }
  DbDump dump() const {
    return GetParam() == "sqlite" ? dump_sqlite(url_.substr(7)) : dump_pg(url_);
  }
  fs::path dir_;
  std::string url_;
};

TEST_P(SinkTest, WritesRowsAndCursorTogether) {
  auto s = sink();
  uint64_t cursor = 99;
  ASSERT_TRUE(s->read_cursor(cursor).ok());
  EXPECT_EQ(cursor, 0u);
  auto batch = records(1, 30);
  ASSERT_TRUE(s->write_batch(0, batch, 1234).ok());
  ASSERT_TRUE(s->read_cursor(cursor).ok());
  EXPECT_EQ(cursor, 30u);
  DbDump d = dump();
  EXPECT_EQ(d.cursor, 30u);
  size_t orders = 0, lines = 0, codes = 0;
  for (const auto& r : batch) {
    if (r.kind != proto::OutboxKind::kOrder) continue;
    ++orders;
    lines += r.lines.size();
    codes += r.codes.size();
  }
  EXPECT_EQ(d.orders.size(), orders);
  EXPECT_EQ(d.lines.size(), lines);
  EXPECT_EQ(d.codes.size(), codes);
  EXPECT_EQ(d.events.size(), batch.size() - orders);
  EXPECT_EQ(d.orders[0], "101|1|user1|k1|1700000000001|1700000000006");
  EXPECT_EQ(d.orders[1], "102|2|user2|\\N|1700000000002|1700000000007");
  EXPECT_EQ(d.events[0], "5|released|105|user5|1700000000010|[{\"sku\":\"A\",\"qty\":3}]");
  EXPECT_NE(std::find(d.lines.begin(), d.lines.end(), "103|B\t\\x|2"), d.lines.end());
}

TEST_P(SinkTest, CursorIsCompareAndSet) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 10), 1).ok());
  outbox::SinkStatus st = s->write_batch(5, records(6, 20), 2);
  EXPECT_EQ(st.code, outbox::SinkStatus::Code::kCursorMoved) << st.message;
  DbDump d = dump();
  EXPECT_EQ(d.cursor, 10u);
  EXPECT_EQ(d.orders.size() + d.events.size(), 10u);  // nothing of the refused batch
}

TEST_P(SinkTest, ReapplyingABatchIsIdempotent) {
  auto s = sink();
  ASSERT_TRUE(s->write_batch(0, records(1, 50), 1).ok());
  DbDump before = dump();
  ASSERT_TRUE(s->reset_cursor(0, 2).ok());  // a replay over the same rows
  ASSERT_TRUE(s->write_batch(0, records(1, 20), 3).ok());
  ASSERT_TRUE(s->write_batch(20, records(21, 50), 3).ok());
  EXPECT_EQ(dump(), before);
  ASSERT_TRUE(s->write_batch(50, records(51, 60), 4).ok());  // and then new rows again
  EXPECT_EQ(dump().cursor, 60u);
  EXPECT_EQ(dump().orders.size() + dump().events.size(), 60u);
}

TEST_P(SinkTest, OddBytesAreStoredAsEscapes) {
  auto s = sink();
  auto r = record(1);
  r.user = std::string("bad\xff\0x", 6);
  r.key = "caf\xc3\xa9";  // valid UTF-8 stays as is
  ASSERT_TRUE(s->write_batch(0, std::vector{r}, 1).ok());
  EXPECT_EQ(split(dump().orders[0])[2], "bad\\xFF\\x00x");
  EXPECT_EQ(split(dump().orders[0])[3], "caf\xc3\xa9");
}

// A writer killed at random points never leaves a batch half written or the cursor astray.
TEST_P(SinkTest, KilledWriterLeavesWholeBatchesOnly) {
  std::mt19937 rng(42);
  {  // the tables exist before the first kill (on a loaded machine a writer killed within 30 ms
     // may not have created them yet, and then there is nothing to dump)
    std::string err;
    auto s = outbox::make_sink(url_, err);
    ASSERT_TRUE(s) << err;
    uint64_t cursor = 0;
    ASSERT_TRUE(s->read_cursor(cursor).ok());
  }
  for (int round = 0; round < 10; ++round) {
    pid_t pid = fork();
    if (pid == 0) {
      std::string err;
      auto s = outbox::make_sink(url_, err);
      uint64_t cursor = 0;
      if (!s || !s->read_cursor(cursor).ok()) _exit(1);
      for (;;) {
        if (!s->write_batch(cursor, records(cursor + 1, cursor + 1000), 1).ok()) _exit(2);
        cursor += 1000;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng() % 150));
    ::kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer failed: exit " << exit_code(status);
    DbDump d = dump();
    EXPECT_EQ(d.cursor % 1000, 0u);
    EXPECT_EQ(d.orders.size() + d.events.size(), d.cursor) << "round " << round;
  }
  EXPECT_GT(dump().cursor, 0u);
}

INSTANTIATE_TEST_SUITE_P(Sinks, SinkTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(OutboxRecords, BatchesMustBeContiguousAndValid) {
  auto v = records(5, 8);
  EXPECT_EQ(outbox::check_batch(4, v), "");
  EXPECT_NE(outbox::check_batch(3, v), "");
  v[2].seq = 9;
  EXPECT_NE(outbox::check_batch(4, v), "");
  auto r = record(1);
  r.lines.push_back(r.lines[0]);
  EXPECT_NE(outbox::check_record(r), "");
  r = record(4);
  r.codes[0].sku = "Z";
  EXPECT_NE(outbox::check_record(r), "");
  std::string scratch;
  EXPECT_EQ(outbox::sql_text("ok", scratch), "ok");
  EXPECT_EQ(outbox::sql_text("\xed\xa0\x80", scratch), "\\xED\\xA0\\x80");  // a surrogate
}

// ---------------------------------------------------------------------------------------------
// End to end

class OutboxSql : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("outbox-sql"); }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// (a) + (d): concurrent buyers; --once into SQLite and PostgreSQL gives exactly what the
// buyers were told, the same rows in both; replays into fresh databases and over the same
// database give the same rows again.
TEST_F(OutboxSql, OrdersReachSqliteAndPostgresExactlyOnce) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 6, 400, /*with_expiry=*/true);
  load.finish();
  wait_no_live_holds(*server, load.promised);

  const std::string lite = sqlite_url(dir_, "orders.db");
  SidecarRun r = SidecarProcess(*server, lite).once();
  ASSERT_EQ(r.code, 0) << r.log;
  EXPECT_NE(r.log.find("caught up at cursor"), std::string::npos) << r.log;
  DbDump d = dump_sqlite(lite.substr(7));
  expect_exact(d, *server, load.promised);

  // A second run finds nothing to do and changes nothing.
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)), d);

  // (d) Replay into a fresh SQLite file, and over the same file after a cursor reset.
  const std::string lite2 = sqlite_url(dir_, "replay.db");
  ASSERT_EQ(SidecarProcess(*server, lite2).once({"--batch", "97"}).code, 0);
  EXPECT_EQ(dump_sqlite(lite2.substr(7)), d);
  ASSERT_EQ(SidecarProcess(*server, lite).once({"--reset-cursor", "0"}).code, 0);
  ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  EXPECT_EQ(dump_sqlite(lite.substr(7)), d);

  REQUIRE_PG(pg);
  const std::string url = pg->create_db("orders_a");
  r = SidecarProcess(*server, url).once();
  ASSERT_EQ(r.code, 0) << r.log;
  DbDump p = dump_pg(url);
  expect_exact(p, *server, load.promised);
  EXPECT_EQ(p, d) << "SQLite and PostgreSQL hold different rows";

  const std::string url2 = pg->create_db("orders_a_replay");
  ASSERT_EQ(SidecarProcess(*server, url2).once({"--batch", "333"}).code, 0);
  EXPECT_EQ(dump_pg(url2), d);
  ASSERT_EQ(SidecarProcess(*server, url).once({"--reset-cursor", "0"}).code, 0);
  r = SidecarProcess(*server, url).once();
  ASSERT_EQ(r.code, 0) << r.log;
  EXPECT_EQ(dump_pg(url), d);
}

// (b) kill -9 the sidecar at random points during a load, 20+ times; at the end an exact match.
void kill_nine_during_load(const std::string& sql) {
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  Load load(*server, 4, 1000000);
  SidecarProcess sidecar(*server, sql, {"--batch", "50"});
  std::mt19937 rng(7);
  for (int i = 0; i < 22; ++i) {
    sidecar.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(40 + rng() % 160));
    sidecar.kill9();
  }
  load.stop();
  load.finish();
  const bool lite = sql.rfind("sqlite:", 0) == 0;
  EXPECT_GT((lite ? dump_sqlite(sql.substr(7)) : dump_pg(sql)).cursor, 0u)
      << "the killed sidecars never committed anything";
  SidecarRun r = sidecar.once();
  ASSERT_EQ(r.code, 0) << r.log;
  DbDump d = lite ? dump_sqlite(sql.substr(7)) : dump_pg(sql);
  expect_exact(d, *server, load.promised);
  EXPECT_GT(d.orders.size(), 200u) << "the load was too small to mean much";
}

TEST_F(OutboxSql, SidecarKilledRepeatedlyIntoSqlite) {
  kill_nine_during_load(sqlite_url(dir_, "orders.db"));
}

TEST_F(OutboxSql, SidecarKilledRepeatedlyIntoPostgres) {
  REQUIRE_PG(pg);
  kill_nine_during_load(pg->create_db("orders_b"));
}

uint64_t status_field(const fs::path& file, const std::string& name) {
  std::string s = slurp(file);
  auto at = s.find("\"" + name + "\":");
  if (at == std::string::npos) return 0;
  return std::stoull(s.substr(at + name.size() + 3));
}

// (c) PostgreSQL stops during a load: stockd keeps selling, the sidecar retries; when
// PostgreSQL is back it drains to an exact match.
TEST_F(OutboxSql, PostgresOutageDuringLoad) {
  REQUIRE_PG(pg);
  auto server = start_stockd();
  ASSERT_NO_FATAL_FAILURE(seed(*server));
  const std::string url = pg->create_db("orders_c");
  const fs::path status = dir_ / "status.json";
  SidecarProcess sidecar(*server, url, {"--batch", "200", "--status-file", status.string()});
  sidecar.start();
  Load load(*server, 4, 1000000);
  std::this_thread::sleep_for(700ms);
  pg->stop();
  Client outbox(server->options(proto::Role::kOutbox));
  const int sold_before = load.promised.ok_answers.load();
  std::this_thread::sleep_for(200ms);
  const auto during = outbox.outbox_status().body;
  std::this_thread::sleep_for(1300ms);
  EXPECT_GT(load.promised.ok_answers.load(), sold_before + 100) << "stockd stopped selling";
  // Nothing is acknowledged while SQL cannot commit.
  EXPECT_EQ(outbox.outbox_status().body.acked_seq, during.acked_seq);
  EXPECT_GT(outbox.outbox_status().body.head_seq, during.head_seq);
  EXPECT_TRUE(sidecar.running());
  EXPECT_NE(slurp(status).find("\"sql_up\":false"), std::string::npos) << slurp(status);
  ASSERT_EQ(pg->start_server(), "");
  std::this_thread::sleep_for(500ms);
  load.stop();
  load.finish();
  const uint64_t head = outbox.outbox_status().body.head_seq;
  for (int i = 0; i < 600 && status_field(status, "cursor") < head; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(sidecar.term(), 0) << sidecar.log();
  EXPECT_NE(sidecar.log().find("SQL write of records"), std::string::npos);
  expect_exact(dump_pg(url), *server, load.promised);
}

// (e) A database whose cursor is ahead of stockd's outbox (stockd restored from an empty data
// dir) is refused, exit 3; so are records trimmed before this database copied them.
TEST_F(OutboxSql, RefusesAnOutboxBehindTheCursor) {
  const std::string lite = sqlite_url(dir_, "orders.db");
  {
    auto server = start_stockd();
    ASSERT_NO_FATAL_FAILURE(seed(*server));
    Load load(*server, 2, 50);
    load.finish();
    ASSERT_EQ(SidecarProcess(*server, lite).once().code, 0);
  }
  ASSERT_GT(dump_sqlite(lite.substr(7)).cursor, 0u);
  auto fresh = start_stockd();
  SidecarRun r = SidecarProcess(*fresh, lite).once();
  EXPECT_EQ(r.code, 3) << r.log;
  EXPECT_NE(r.log.find("is behind this database's cursor"), std::string::npos) << r.log;
}

// (e) Records stockd trimmed before this database copied them: refused (exit 3) unless the
// operator passes --accept-gap.
TEST_F(OutboxSql, RefusesTrimmedRecordsUnlessAccepted) {
  // stockd keeps acknowledged records 0 ms: what the first database acked is trimmed.
  auto trimming = start_stockd({"--outbox-retention-ms", "0"});
  ASSERT_NO_FATAL_FAILURE(seed(*trimming));
  Load load(*trimming, 2, 50);
  load.finish();
  ASSERT_EQ(SidecarProcess(*trimming, sqlite_url(dir_, "first.db")).once().code, 0);
  Client outbox(trimming->options(proto::Role::kOutbox));
  const uint64_t head = outbox.outbox_status().body.head_seq;
  ASSERT_GT(head, 0u);
  for (int i = 0; i < 100 && outbox.outbox_status().body.first_seq != 0; ++i) {
    std::this_thread::sleep_for(50ms);  // stockd trims once a second
  }
  ASSERT_EQ(outbox.outbox_status().body.first_seq, 0u) << "stockd did not trim everything";

  // Everything trimmed: refused; accepted, the cursor jumps to the head.
  const std::string all_gone = sqlite_url(dir_, "all-gone.db");
  SidecarRun r = SidecarProcess(*trimming, all_gone).once();
  EXPECT_EQ(r.code, 3) << r.log;
  EXPECT_NE(r.log.find("no longer has outbox records 1.." + std::to_string(head)),
            std::string::npos)
      << r.log;
  r = SidecarProcess(*trimming, all_gone).once({"--accept-gap"});
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_EQ(dump_sqlite(all_gone.substr(7)).cursor, head);

  // New orders after the trimmed ones: refused; accepted, exactly the new orders are copied.
  Client buyer = trimming->buyer();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(buyer.reserve({"late", "late-" + std::to_string(i), 0, {{plain_sku(0), 1}}}).ok());
  }
  const std::string partly = sqlite_url(dir_, "partly.db");
  r = SidecarProcess(*trimming, partly).once();
  EXPECT_EQ(r.code, 3) << r.log;
  r = SidecarProcess(*trimming, partly).once({"--accept-gap"});
  EXPECT_EQ(r.code, 0) << r.log;
  DbDump d = dump_sqlite(partly.substr(7));
  EXPECT_EQ(d.cursor, head + 5);
  EXPECT_EQ(d.orders.size(), 5u);
  // The database that copied everything goes on normally.
  ASSERT_EQ(SidecarProcess(*trimming, sqlite_url(dir_, "first.db")).once().code, 0);
  EXPECT_EQ(dump_sqlite((dir_ / "first.db").string()).cursor, head + 5);
}

// (f) Configuration the sidecar cannot work with: exit 2 and one clear line.
TEST_F(OutboxSql, BadConfigurationExitsTwo) {
  auto server = start_stockd();
  const fs::path file = dir_ / "a-file";
  std::ofstream(file) << "x";
  SidecarRun r = SidecarProcess(*server, "sqlite:" + (file / "orders.db").string()).once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("cannot create directory"), std::string::npos) << r.log;

  r = SidecarProcess(*server, "mysql://localhost/x").once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("expected sqlite:PATH"), std::string::npos) << r.log;

  SidecarProcess wrong_token(*server, sqlite_url(dir_, "t.db"));
  wrong_token.set_token("nope");
  r = wrong_token.once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("refuses the outbox reader"), std::string::npos) << r.log;

  REQUIRE_PG(pg);
  r = SidecarProcess(*server, pg->password_url("wrong-password")).once();
  EXPECT_EQ(r.code, 2) << r.log;
  EXPECT_NE(r.log.find("password authentication failed"), std::string::npos) << r.log;
  r = SidecarProcess(*server, pg->password_url(PgCluster::kPassword)).once();
  EXPECT_EQ(r.code, 0) << r.log;
}

}  // namespace
}  // namespace stockd::test
